"""Generated textures for the defect-detection tests (both tiers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def textures(n: int, size: int = 32, defect: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Striped noisy texture; defective ones carry a dark 6x6 spot at a random place.
    Returns uint8 images (n, size, size, 1) and the spots' centres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    base = 128 + 40 * np.sin(xx / 2.0)
    imgs, centres = [], []
    for _ in range(n):
        im = base + rng.normal(0, 8, (size, size))
        c = rng.integers(6, size - 6, 2)
        if defect:
            im[c[0] - 3:c[0] + 3, c[1] - 3:c[1] + 3] = 10
        imgs.append(im)
        centres.append(c)
    return np.clip(imgs, 0, 255).astype(np.uint8)[..., None], np.asarray(centres)


def write_tiles_npz(path: Path) -> Path:
    """160 good tiles and 40 with a spot, labelled as two defect classes (20 each): good, spot, spot2."""
    good, _ = textures(160, seed=1)
    bad, _ = textures(40, defect=True, seed=2)
    x = np.concatenate([good, bad])
    y = np.r_[np.zeros(160, np.int64), np.ones(20, np.int64), 2 * np.ones(20, np.int64)]
    np.savez(path, images=x, labels=y, class_names=np.array(["good", "spot", "spot2"]))
    return path

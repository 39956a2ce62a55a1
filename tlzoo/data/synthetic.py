"""Small generated image data sets, for the demo and the tests (no download needed).

``opacity_scans``: grayscale "scans" of a noisy, smoothly shaded field with rib-like stripes;
positives carry one or two faint, soft-edged opacities somewhere in the field, the way a
consolidation shows on a chest film. Hard enough that a linear model on raw pixels fails,
easy enough for pretrained features to learn from a few hundred labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def opacity_scans(n: int, size: int = 64, seed: int = 0, positive_fraction: float = 0.5,
                  contrast: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (n, size, size, 1), labels int64 (n,))``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    labels = (rng.random(n) < positive_fraction).astype(np.int64)
    images = np.empty((n, size, size, 1), np.uint8)
    for i in range(n):
        tilt = rng.uniform(-0.5, 0.5, 2)
        base = 110 + 40 * (tilt[0] * (xx - 0.5) + tilt[1] * (yy - 0.5))
        freq = rng.uniform(5, 9)
        ribs = 12 * np.sin(2 * np.pi * (freq * yy + 0.3 * np.sin(2 * np.pi * xx) + rng.random()))
        field = base + ribs + rng.normal(0, 10, (size, size))
        if labels[i]:
            for _ in range(rng.integers(1, 3)):
                cx, cy = rng.uniform(0.2, 0.8, 2)
                r = rng.uniform(0.08, 0.18)
                blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
                field = field + contrast * rng.uniform(0.7, 1.2) * blob
        images[i, ..., 0] = np.clip(field, 0, 255).astype(np.uint8)
    return images, labels


def write_opacity_npz(path: str | Path, n_train: int = 400, n_val: int = 100, n_test: int = 200,
                      size: int = 64, seed: int = 0, contrast: float = 40.0) -> Path:
    """An .npz in the MedMNIST layout (train/val/test images and labels)."""
    path = Path(path)
    arrays = {}
    for offset, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        x, y = opacity_scans(n, size, seed * 1000 + offset, contrast=contrast)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    arrays["class_names"] = np.array(["clear", "opacity"])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path

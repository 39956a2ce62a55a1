"""Data laid out the way people keep it, generated for tests: images of many sizes, modes and formats
in class folders, split folders with inconsistent case, ``images/`` + ``labels.csv``, DICOM studies.

Class 1 images carry a bright disc on a darker textured background, class 0 none: learnable in a
few steps by a tiny model, in any mode or size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

# (Pillow mode, suffix): every mode and format the readers promise
MODES = [("RGB", ".jpg"), ("L", ".png"), ("RGBA", ".png"), ("P", ".gif"), ("CMYK", ".jpg"), ("LA", ".png"),
         ("I;16", ".png"), ("RGB", ".bmp"), ("RGB", ".tif"), ("RGB", ".webp"), ("1", ".png"), ("L", ".jpg")]


def scan_pixels(label: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (h, w) gray image: texture, plus a bright disc for class 1."""
    yy, xx = np.mgrid[:h, :w]
    img = 70 + 30 * rng.random((h, w))
    if label:
        cy, cx, r = h * rng.uniform(0.35, 0.65), w * rng.uniform(0.35, 0.65), min(h, w) * 0.25
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] += 140
    return img.clip(0, 255).astype(np.uint8)


def save_image(path: Path, gray: np.ndarray, mode: str) -> Path:
    """Write ``gray`` in ``mode`` (colour modes get a tint), format from the suffix."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        Image.fromarray(gray.astype(np.uint16) * 257).save(path)  # the full 16-bit range
        return path
    rgb = np.stack([gray, (gray * 0.9).astype(np.uint8), (gray * 0.8).astype(np.uint8)], -1)
    im = Image.fromarray(rgb, "RGB")
    im = im.convert("L").convert(mode) if mode in ("L", "LA", "1") else im.convert(mode)
    im.save(path)
    return path


def mixed_class_folders(root: Path, n_per_class: int = 24, seed: int = 0,
                        classes: Sequence[str] = ("normal", "pneumonia")) -> Path:
    """``root/<class>/`` with images of 20-160 px, non-square, in every mode and format of MODES."""
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(classes):
        for i in range(n_per_class):
            h, w = (int(v) for v in rng.integers(20, 160, 2))
            mode, suffix = MODES[(i + label) % len(MODES)]
            save_image(root / cls / f"{cls}_{i:03d}{suffix}", scan_pixels(label, h, w, rng), mode)
    return root


def split_folders(root: Path, counts: dict[str, int], names: dict[str, tuple[str, str]], seed: int = 0) -> Path:
    """``root/<split folder>/<class folder>/`` with the given folder spellings per split."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for label, cls in enumerate(names[split]):
            for i in range(n):
                h, w = (int(v) for v in rng.integers(30, 90, 2))
                save_image(root / split / cls / f"{i:03d}.png", scan_pixels(label, h, w, rng), "L")
    return root


def image_table(root: Path, n: int = 60, seed: int = 0, split: bool = False) -> Path:
    """``root/images/*.jpg`` + ``root/labels.csv`` (filename, diagnosis, sex, site[, split])."""
    rng = np.random.default_rng(seed)
    lines = ["filename,diagnosis,sex,site" + (",split" if split else "")]
    for i in range(n):
        label = i % 2
        name = f"case_{i:04d}.jpg"
        save_image(root / "images" / name, scan_pixels(label, *(int(v) for v in rng.integers(40, 120, 2)), rng), "RGB")
        sex, site = ("F", "M")[(i // 2) % 2], ("north", "south")[(i // 4) % 2]
        part = "test" if i % 5 == 0 else "val" if i % 5 == 1 else "train"
        lines.append(f"{name},{('benign', 'malignant')[label]},{sex},{site}" + (f",{part}" if split else ""))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def dicom_folders(root: Path, n_per_class: int = 16, seed: int = 0) -> Path:
    """``root/<class>/*.dcm``: 12-bit CR images with a window, half MONOCHROME1, with header attributes."""
    from dicom_support import write_dicom

    rng = np.random.default_rng(seed)
    for label, cls in enumerate(("normal", "effusion")):
        for i in range(n_per_class):
            gray = scan_pixels(label, 48, 40, rng).astype(np.uint16) * 16  # 12-bit values
            mono1 = i % 2 == 1
            pixels = (4095 - gray) if mono1 else gray
            (root / cls).mkdir(parents=True, exist_ok=True)
            write_dicom(root / cls / f"{i:03d}.dcm", pixels, photometric="MONOCHROME1" if mono1 else "MONOCHROME2",
                        bits_stored=12, window=(2048, 4096), PatientSex=("F", "M")[i % 4 // 2],
                        Manufacturer=("Acme", "Globex")[i % 2], ViewPosition="PA")
    return root

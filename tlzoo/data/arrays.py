"""Arrays as sources: ``.npz`` files (MedMNIST layout, or ``images`` / ``labels``) and in-memory arrays."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.data.images import is_lazy
from tlzoo.data.splits import SPLITS, DataSplits, Split, split_note, split_three
from tlzoo.errors import DataError


def as_images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, H, W, C), got {x.shape}")
    return x


def as_labels(y: np.ndarray, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # MedMNIST stores (N, 1)
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise DataError(f"{where}: labels must have shape (N,) or (N, K), got {y.shape}")
    if y.ndim == 1 and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{where}: class labels must be integers, got values like {y[:5].tolist()}")
    return y.astype(np.int64)


def _per_sample(arrays: dict[str, np.ndarray], prefix: str, n: int, where: str) -> dict[str, Any]:
    """``groups`` and the other 1-D arrays with one value per sample stored as ``{prefix}NAME``."""
    groups = arrays.get(f"{prefix}groups")
    if groups is not None and (groups.ndim != 1 or len(groups) != n):
        raise DataError(f"{where}: {prefix}groups has shape {groups.shape}; it needs one value per sample ({n},)")
    attributes = {k[len(prefix):]: v for k, v in arrays.items()
                  if k.startswith(prefix) and k[len(prefix):] not in ("images", "labels", "groups", "class_names")
                  and v.ndim == 1 and len(v) == n}
    return {"groups": groups, "attributes": attributes}


def read_npz(
    path: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> DataSplits:
    """MedMNIST layout (``train_images``, ``train_labels``, ``val_*``, ``test_*``) or
    ``images`` / ``labels`` (split here, stratified and seeded). Optional ``class_names``, and
    ``groups`` (or ``train_groups`` ...) with a group attribute per sample; other 1-D per-sample
    arrays (``filenames``, ``site`` ...) travel with the samples as ``Split.attributes``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"data file {str(path)!r} does not exist") from None
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r} as .npz: {exc}") from None
    return read_arrays(arrays, str(path), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def read_arrays(arrays: dict[str, Any], path: str = "arrays", *, seed: int = 0, val_fraction: float = 0.1,
                test_fraction: float = 0.2) -> DataSplits:
    """In-memory arrays under the keys an .npz has (see ``read_npz``)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    notes: list[str] = []
    if all(f"{s}_images" in arrays and f"{s}_labels" in arrays for s in ("train", "test")):
        split = {}
        for s in SPLITS:
            if f"{s}_images" in arrays:
                y = as_labels(arrays[f"{s}_labels"], f"{path}:{s}_labels")
                split[s] = Split(as_images(arrays[f"{s}_images"], f"{path}:{s}_images"), y,
                                 **_per_sample(arrays, f"{s}_", len(y), str(path)))
        if "val" not in split:
            train, val, _ = split_three(split["train"], seed, val_fraction, 0.0)
            split["train"], split["val"] = train, val
            notes.append(f"val split: {val_fraction:.0%} of train, stratified, seed {seed}")
        else:
            notes.append("official train/val/test splits")
        train, val, test = split["train"], split["val"], split["test"]
    elif "images" in arrays and "labels" in arrays:
        x = as_images(arrays["images"], f"{path}:images")
        y = as_labels(arrays["labels"], f"{path}:labels")
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
        train, val, test = split_three(Split(x, y, **_per_sample(arrays, "", len(y), str(path))), seed,
                                         val_fraction, test_fraction)
        notes.append(split_note(val_fraction, test_fraction, seed))
    else:
        raise DataError(
            f"{path}: expected keys train_images/train_labels/test_images/test_labels (MedMNIST "
            f"layout) or images/labels, found {sorted(arrays)}"
        )
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else []
    has_groups = any(s.groups is not None for s in (train, val, test))
    return DataSplits(train, val, test, names, path, notes, group_by="groups" if has_groups else None)


def array_fingerprint(x: Any) -> str:
    """sha256 over an array's dtype, shape and bytes; for lazy images (files, records), over what
    ``DataSplits.fingerprint`` hashes of them (paths and file bytes), without decoding."""
    if is_lazy(x):
        digest = hashlib.sha256()
        x.digest(digest)
        return digest.hexdigest()
    digest = hashlib.sha256(f"{x.dtype}{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()

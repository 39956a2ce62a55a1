"""Train / val / test splits: one row per sample (its pixels or file, label(s), attributes), and the
index operations on them (stratified splitting, seeded label subsampling, fingerprints)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tlzoo.data.images import LazyImages, is_lazy
from tlzoo.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    x: Any  # np.ndarray, or ImageFiles (an index of files, decoded in the stream)
    y: np.ndarray
    groups: np.ndarray | None = None  # one group value per sample (site, device, ...): subgroup metrics
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # other per-sample arrays, e.g. filenames

    def __len__(self) -> int:
        return int(len(self.y))

    def take(self, idx: np.ndarray) -> "Split":
        """The samples at ``idx``; every per-sample array is indexed alike, so groups stay aligned."""
        return Split(self.x[idx], self.y[idx], None if self.groups is None else self.groups[idx],
                     {k: v[idx] for k, v in self.attributes.items()})


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    source: str
    notes: list[str] = field(default_factory=list)  # how the splits were made
    group_by: str | None = None  # the attribute the splits' ``groups`` hold (tlzoo.extensions.subgroup_attributes)
    report: dict[str, Any] = field(default_factory=dict)  # what the reader found and skipped (config.yaml)

    def split(self, name: str) -> Split:
        return getattr(self, name)

    @property
    def streamed(self) -> bool:
        return is_lazy(self.train.x)

    def set_input_size(self, size: int) -> "DataSplits":
        """Stream file-backed images at the model's input size (arrays are unchanged)."""
        for name in SPLITS:
            s = self.split(name)
            if isinstance(s.x, LazyImages):
                s.x = s.x.with_size(size)
        return self

    def fingerprint(self) -> str:
        """sha256 identifying the exact data a run saw. Arrays: every array's dtype, shape and bytes.
        Files: per split, per sample in index order, the path relative to the source folder, a NUL
        and the sha256 of the file's bytes; then the labels' dtype, shape and bytes (and groups').
        A receiver with the source alone can recompute it (README, "Your data")."""
        digest = hashlib.sha256()
        for name in SPLITS:
            s = self.split(name)
            if isinstance(s.x, LazyImages):
                digest.update(f"{name}files{len(s.x)}".encode())
                s.x.digest(digest)
                arrays: tuple[Any, ...] = (s.y,) if s.groups is None else (s.y, s.groups)
            else:
                arrays = (s.x, s.y) if s.groups is None else (s.x, s.y, s.groups)
            for arr in arrays:
                arr = np.ascontiguousarray(arr)
                digest.update(f"{name}{arr.dtype}{arr.shape}".encode())
                digest.update(arr.tobytes())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "classes": self.class_names, "notes": self.notes}
        for name in SPLITS:
            s = self.split(name)
            if s.y.ndim == 1:
                counts = np.bincount(s.y.astype(int).ravel(), minlength=len(self.class_names))
            else:  # multilabel 0/1: positives per label; multi-task (-1 = no label): labelled samples per task
                counts = (s.y >= 0).sum(0) if (s.y < 0).any() else s.y.sum(0)
            out[name] = {"n": len(s), "per_class": [int(c) for c in counts], "shape": list(s.x.shape[1:])}
            if s.groups is not None:
                values, n = np.unique(s.groups, return_counts=True)
                out[name]["groups"] = {str(v): int(c) for v, c in zip(values, n)}
        if self.group_by:
            out["group_by"] = self.group_by
        if self.report:
            out["reader"] = self.report
        return out


def stratified_split(
    y: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Index arrays for consecutive parts of sizes ``fractions`` (the rest is the first part),
    each class divided in the same proportions. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        start = 0
        bounds = []
        for f in fractions:
            k = int(round(f * len(idx)))
            bounds.append((start, start + k))
            start += k
        parts[0].append(idx[start:])
        for i, (a, b) in enumerate(bounds, start=1):
            parts[i].append(idx[a:b])
    return [np.sort(np.concatenate(p)) if p else np.array([], dtype=int) for p in parts]


def subsample_labels(
    split: Split, *, fraction: float | None = None, per_class: int | None = None, seed: int = 0,
    strata: np.ndarray | None = None,
) -> Split:
    """Keep a stratified, seeded subset of a split's labels (few-label experiments). ``strata``: one
    stratum per sample (default: the class; "per class" then means per stratum)."""
    if fraction is None and per_class is None:
        return split
    if fraction is not None and per_class is not None:
        raise DataError("give either a label fraction or labels per class, not both")
    y = strata if strata is not None else split.y if split.y.ndim == 1 else split.y.argmax(-1)
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise DataError(f"label fraction must be in (0, 1], got {fraction}")
            k = max(1, int(round(fraction * len(idx))))
        else:
            if per_class is None or per_class < 1:
                raise DataError(f"labels per class must be >= 1, got {per_class}")
            k = min(per_class, len(idx))
        keep.append(idx[:k])
    sel = np.sort(np.concatenate(keep))
    return split.take(sel)


def split_three(
    full: Split, seed: int, val_fraction: float, test_fraction: float
) -> tuple[Split, Split, Split]:
    """train / val / test parts of one split, stratified by class (by the first label when multilabel)."""
    strat = full.y if full.y.ndim == 1 else full.y.argmax(-1)
    train, val, test = stratified_split(strat, [val_fraction, test_fraction], seed)
    return full.take(train), full.take(val), full.take(test)


def split_note(val_fraction: float, test_fraction: float, seed: int) -> str:
    return (f"split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%}, "
            f"stratified, seed {seed}")

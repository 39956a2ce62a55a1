"""Data readers (npz, class folders, TensorFlow Datasets) -> in-memory splits -> tf.data.

Domain data sets in transfer learning are small, so splits are held as numpy arrays:
that makes stratified label subsampling, fingerprints and validation simple and exact.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tlzoo.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    x: np.ndarray
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
    group_by: str | None = None  # the attribute the splits' ``groups`` hold (tlzoo.groups)

    def split(self, name: str) -> Split:
        return getattr(self, name)

    def fingerprint(self) -> str:
        """sha256 over every array of every split (groups too, when there are any): identifies the
        exact data a run saw."""
        digest = hashlib.sha256()
        for name in SPLITS:
            s = self.split(name)
            for arr in (s.x, s.y) if s.groups is None else (s.x, s.y, s.groups):
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
        return out


# ---------------------------------------------------------------- splitting and subsampling


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


def _split_arrays(
    full: Split, seed: int, val_fraction: float, test_fraction: float
) -> tuple[Split, Split, Split]:
    strat = full.y if full.y.ndim == 1 else full.y.argmax(-1)
    train, val, test = stratified_split(strat, [val_fraction, test_fraction], seed)
    return full.take(train), full.take(val), full.take(test)


# ---------------------------------------------------------------- readers


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must have shape (N, H, W) or (N, H, W, C), got {x.shape}")
    return x


def _as_labels(y: np.ndarray, where: str) -> np.ndarray:
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
    notes: list[str] = []
    if all(f"{s}_images" in arrays and f"{s}_labels" in arrays for s in ("train", "test")):
        split = {}
        for s in SPLITS:
            if f"{s}_images" in arrays:
                y = _as_labels(arrays[f"{s}_labels"], f"{path}:{s}_labels")
                split[s] = Split(_as_images(arrays[f"{s}_images"], f"{path}:{s}_images"), y,
                                 **_per_sample(arrays, f"{s}_", len(y), str(path)))
        if "val" not in split:
            train, val, _ = _split_arrays(split["train"], seed, val_fraction, 0.0)
            split["train"], split["val"] = train, val
            notes.append(f"val split: {val_fraction:.0%} of train, stratified, seed {seed}")
        else:
            notes.append("official train/val/test splits")
        train, val, test = split["train"], split["val"], split["test"]
    elif "images" in arrays and "labels" in arrays:
        x = _as_images(arrays["images"], f"{path}:images")
        y = _as_labels(arrays["labels"], f"{path}:labels")
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
        train, val, test = _split_arrays(Split(x, y, **_per_sample(arrays, "", len(y), str(path))), seed,
                                         val_fraction, test_fraction)
        notes.append(f"split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%}, stratified, seed {seed}")
    else:
        raise DataError(
            f"{path}: expected keys train_images/train_labels/test_images/test_labels (MedMNIST "
            f"layout) or images/labels, found {sorted(arrays)}"
        )
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else []
    has_groups = any(s.groups is not None for s in (train, val, test))
    return DataSplits(train, val, test, names, str(path), notes, group_by="groups" if has_groups else None)


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB")
            return np.asarray(im)
    except Exception as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from None


def _read_class_folders(root: Path, class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    names = class_names or sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{root}: no class sub-folders found (expected {root}/<class>/<image>)")
    images, labels = [], []
    for label, name in enumerate(names):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if (root / name).is_dir() else []
        for f in files:
            images.append(_load_image(f))
            labels.append(label)
    if not images:
        raise DataError(f"{root}: class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{root}: images differ in size {sorted(shapes)[:4]}; resize them to one size first")
    return _as_images(np.stack(images), str(root)), np.asarray(labels, np.int64), names


def read_folder(
    path: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> DataSplits:
    """``root/<class>/<image>`` (split here), or ``root/{train,val,test}/<class>/<image>``."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data folder {str(path)!r} does not exist")
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, names = _read_class_folders(root / "train")
        train = Split(x, y)
        test = Split(*_read_class_folders(root / "test", names)[:2])
        if (root / "val").is_dir():
            val = Split(*_read_class_folders(root / "val", names)[:2])
            notes = ["train/val/test folders"]
        else:
            train, val, _ = _split_arrays(train, seed, val_fraction, 0.0)
            notes = [f"val split: {val_fraction:.0%} of train, stratified, seed {seed}"]
        return DataSplits(train, val, test, names, str(root), notes)
    x, y, names = _read_class_folders(root)
    train, val, test = _split_arrays(Split(x, y), seed, val_fraction, test_fraction)
    return DataSplits(train, val, test, names, str(root),
                      [f"split {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/{test_fraction:.0%}, stratified, seed {seed}"])


def read_tfds(
    name: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
    data_dir: str | None = None, download: bool | None = None,
) -> DataSplits:
    """A TensorFlow Datasets name (``"tfds:beans"``), via ``tfds.load``. Uses the data set's
    own train / validation / test splits where it has them. ``$TFDS_DATA_DIR`` is honoured."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:
        raise DataError(f"unknown TensorFlow Datasets name {name!r}: {exc}") from None
    if download is None:
        download = not os.environ.get("TLZOO_OFFLINE")
    if download:
        builder.download_and_prepare()
    elif not builder.is_prepared():  # type: ignore[attr-defined]
        raise DataError(f"TFDS data set {name!r} is not prepared in {builder.data_dir} and downloads are off")
    info = builder.info
    keys = info.supervised_keys
    if not keys or len(keys) != 2:
        raise DataError(f"TFDS data set {name!r} has no (image, label) supervised keys")
    available = set(info.splits.keys())

    def load(split: str) -> Split:
        ds = builder.as_dataset(split=split, as_supervised=True)
        xs, ys = zip(*tfds.as_numpy(ds)) if len(info.splits[split].filenames) else ((), ())
        if not xs:
            raise DataError(f"TFDS data set {name!r} split {split!r} is empty")
        return Split(_as_images(np.stack(xs), f"tfds:{name}"), _as_labels(np.asarray(ys), f"tfds:{name}"))

    label_feature = info.features[keys[1]]
    names = list(getattr(label_feature, "names", []) or [])
    notes = []
    if "train" not in available:
        raise DataError(f"TFDS data set {name!r} has no train split (splits: {sorted(available)})")
    full = load("train")
    val_name = next((s for s in ("validation", "val") if s in available), None)
    if "test" in available:
        test = load("test")
        if val_name:
            train, val = full, load(val_name)
            notes.append("TFDS train/validation/test splits")
        else:
            train, val, _ = _split_arrays(full, seed, val_fraction, 0.0)
            notes.append(f"TFDS train/test; val {val_fraction:.0%} of train, stratified, seed {seed}")
    else:
        train, val, test = _split_arrays(full, seed, val_fraction, test_fraction)
        notes.append(f"TFDS train split divided, stratified, seed {seed}")
    return DataSplits(train, val, test, names, f"tfds:{name}", notes)


def resolve_path(source: str) -> Path:
    """``source`` as a path; a relative path that does not exist is looked up under ``$TLZOO_DATA_DIR``."""
    path = Path(source).expanduser()
    if not path.exists() and not path.is_absolute() and os.environ.get("TLZOO_DATA_DIR"):
        alt = Path(os.environ["TLZOO_DATA_DIR"]) / source
        if alt.exists():
            return alt
    return path


def array_fingerprint(x: np.ndarray) -> str:
    """sha256 over an array's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{x.dtype}{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


def read_source(source: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> DataSplits:
    """Dispatch on the source: ``tfds:NAME``, a ``.npz`` file, or a folder. Relative paths
    that do not exist are also looked up under ``$TLZOO_DATA_DIR``."""
    kw = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if source.startswith("tfds:"):
        return read_tfds(source[5:], **kw)  # type: ignore[arg-type]
    path = resolve_path(source)
    if path.suffix == ".npz":
        return read_npz(path, **kw)  # type: ignore[arg-type]
    if path.is_dir():
        return read_folder(path, **kw)  # type: ignore[arg-type]
    if not path.exists():
        raise DataError(f"data source {source!r} does not exist (a .npz file, a folder, or tfds:NAME)")
    raise DataError(f"data source {source!r} is not a .npz file, a folder of class folders, or tfds:NAME")


# ---------------------------------------------------------------- tf.data


def make_dataset(
    split: Split,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: Callable[[Any], Any] | None = None,
    label_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    sample_weight: np.ndarray | None = None,
) -> Any:
    """A cached, prefetched pipeline; shuffled and augmented only when ``training``."""
    import tensorflow as tf

    y = label_fn(split.y) if label_fn else split.y
    parts: tuple[Any, ...] = (split.x, y) if sample_weight is None else (split.x, y, sample_weight)
    ds = tf.data.Dataset.from_tensor_slices(parts).cache()
    if training:
        ds = ds.shuffle(min(len(split), 10_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment is not None:
        def _augment(x: Any, *rest: Any) -> Any:
            return (augment(tf.cast(x, tf.float32)), *rest)

        ds = ds.map(_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

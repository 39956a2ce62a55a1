"""Data for anomaly mode: labelled images (npz, class folders, MVTec layout) split by the usual
protocol: fit on a seeded part of the normal images, hold some of those out to set the
threshold, test on the remaining normals plus every defective image."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlzoo.anomaly.patchcore import images_to_batch
from tlzoo.data import (
    IMAGE_SUFFIXES,
    DataSplits,
    Split,
    as_images,
    as_labels,
    load_image,
    resolve_path,
)
from tlzoo.errors import ConfigError, DataError

NORMAL_NAMES = ("good", "ok", "normal", "free", "defect_free", "mt_free", "nominal")


@dataclass
class Labelled:
    """Every image of a source with its original class label (before the anomaly split)."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    source: str
    notes: list[str]
    official_test: np.ndarray | None = None  # MVTec layout: which images come from test/
    filenames: np.ndarray | None = None  # one name per image, where the source has them (``split_file``)


def _resolve(source: str) -> Path:
    path = resolve_path(source)
    if not path.exists():
        raise DataError(f"data source {source!r} does not exist (a .npz file with images/labels, or an image folder)")
    return path


def _read_folder_classes(root: Path, notes: list[str],
                         names: list[str] | None = None) -> tuple[list[np.ndarray], list[int], list[str]]:
    names = names or sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                images.append(load_image(f))
                labels.append(label)
    return images, labels, names


def read_labelled(source: str) -> Labelled:
    """``images``/``labels`` (+ ``class_names``) .npz; ``root/good/`` + ``root/<defect>/`` folders; or the
    MVTec AD layout ``root/train/good/`` + ``root/test/{good,<defect>}/`` (``ground_truth/`` is ignored).
    Images of mixed sizes are resized to the most common size, and a note says so."""
    path = _resolve(source)
    notes: list[str] = []
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as exc:
            raise DataError(f"cannot read {str(path)!r} as .npz: {exc}") from None
        if "images" not in arrays or "labels" not in arrays:
            raise DataError(f"{path}: anomaly mode needs keys images and labels, found {sorted(arrays)}")
        x, y = as_images(arrays["images"], f"{path}:images"), as_labels(arrays["labels"], f"{path}:labels")
        if y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images but labels of shape {y.shape}")
        names = ([str(n) for n in arrays["class_names"]] if "class_names" in arrays
                 else [str(i) for i in range(int(y.max()) + 1)])
        files = np.array([str(f) for f in arrays["filenames"]]) if "filenames" in arrays else None
        return Labelled(x, y, names, str(path), notes, filenames=files)
    if not path.is_dir():
        raise DataError(f"data source {source!r} is not a .npz file or an image folder")
    if (path / "train").is_dir() and (path / "test").is_dir():
        train_classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
        test_classes = sorted(p.name for p in (path / "test").iterdir() if p.is_dir())
        names = sorted(set(train_classes) | set(test_classes), key=lambda n: (n.lower() not in NORMAL_NAMES, n))
        tr_x, tr_y, _ = _read_folder_classes(path / "train", notes, names)
        te_x, te_y, _ = _read_folder_classes(path / "test", notes, names)
        x, note = images_to_batch(tr_x + te_x, str(path))
        if note:
            notes.append(note)
        official = np.r_[np.zeros(len(tr_x), bool), np.ones(len(te_x), bool)]
        notes.append("MVTec layout: official train (defect-free) / test folders")
        return Labelled(as_images(x, str(path)), np.asarray(tr_y + te_y, np.int64), names, str(path), notes, official)
    images, labels, names = _read_folder_classes(path, notes)
    if not images:
        raise DataError(f"{path}: no images in class sub-folders (expected {path}/good/ and {path}/<defect>/)")
    x, note = images_to_batch(images, str(path))
    if note:
        notes.append(note)
    return Labelled(as_images(x, str(path)), np.asarray(labels, np.int64), names, str(path), notes)


def normal_label(data: Labelled, normal_class: str | int = "auto") -> int:
    """The label of the normal (defect-free) class: given by name or number, or found by name."""
    names = data.class_names
    if isinstance(normal_class, int) and not isinstance(normal_class, bool):
        if not 0 <= normal_class < len(names):
            raise ConfigError(f"normal_class {normal_class} is not a class index of {data.source} "
                              f"(0..{len(names) - 1})")
        return normal_class
    if normal_class != "auto":
        if normal_class not in names:
            raise ConfigError(f"normal_class {normal_class!r} is not a class of {data.source}; classes: {names}")
        return names.index(normal_class)
    found = [i for i, n in enumerate(names) if n.lower() in NORMAL_NAMES or n.lower().endswith("_free")]
    if len(found) != 1:
        raise ConfigError(f"cannot tell which class of {data.source} is defect-free (classes {names}); "
                          f"set normal_class=NAME")
    return found[0]


def anomaly_splits(data: Labelled, normal: int, *, seed: int = 0, train_fraction: float = 0.5,
                   threshold_fraction: float = 0.25,
                   split_file: str | None = None) -> tuple[DataSplits, np.ndarray]:
    """train: normal images the bank is fitted on; val: held-out normals that set the threshold;
    test: the other normals and all defective images, labelled 0 (normal) / 1 (defective).
    ``split_file``: a text file naming the training images, one file name per line (a published protocol's
    list, e.g. DifferNet's for magnetic tiles); every other image is test.
    Also returns the test images' original class labels (for per-defect-type results)."""
    if not 0 < train_fraction < 1 or not 0 < threshold_fraction < 1:
        raise ConfigError(f"train_fraction and threshold_fraction must be in (0, 1), "
                          f"got {train_fraction}, {threshold_fraction}")
    is_normal = data.y == normal
    rng = np.random.default_rng(seed)
    if split_file:
        pool, test_idx, note = _listed_split(data, is_normal, split_file)
        rng.shuffle(pool)
    elif data.official_test is not None:
        bad = np.flatnonzero(~data.official_test & ~is_normal)
        if bad.size:
            raise DataError(f"{data.source}: {bad.size} image(s) in train/ are not in the normal class "
                            f"{data.class_names[normal]!r}; the anomaly memory bank takes defect-free images only")
        pool = np.flatnonzero(~data.official_test)
        rng.shuffle(pool)
        test_idx = np.flatnonzero(data.official_test)
        note = "train: the train/ folder; test: the test/ folder"
    else:
        normals = np.flatnonzero(is_normal)
        rng.shuffle(normals)
        k = int(round(train_fraction * len(normals)))
        pool, rest = normals[:k], normals[k:]
        test_idx = np.sort(np.concatenate([rest, np.flatnonzero(~is_normal)]))
        note = (f"train: a seeded {train_fraction:.0%} of the {len(normals)} defect-free images (seed {seed}); "
                f"test: the other defect-free images and all {int((~is_normal).sum())} defective ones")
    if len(pool) < 2:
        raise DataError(f"{data.source}: only {len(pool)} defect-free image(s) to fit on; anomaly mode needs many")
    n_val = int(round(threshold_fraction * len(pool)))
    val_idx, fit_idx = np.sort(pool[:n_val]), np.sort(pool[n_val:])
    y_test = (~is_normal[test_idx]).astype(np.int64)
    if y_test.min() == y_test.max():
        raise DataError(f"{data.source}: the test set has only {'defective' if y_test[0] else 'defect-free'} images; "
                        f"image ROC-AUC needs both")
    splits = DataSplits(
        Split(data.x[fit_idx], np.zeros(len(fit_idx), np.int64)),
        Split(data.x[val_idx], np.zeros(len(val_idx), np.int64)),
        Split(data.x[test_idx], y_test),
        ["normal", "defective"], data.source,
        data.notes + [note, f"threshold set on {len(val_idx)} held-out defect-free images "
                            f"({threshold_fraction:.0%} of the training normals); "
                            f"the bank is fitted on the other {len(fit_idx)}"])
    return splits, data.y[test_idx]


def _listed_split(data: Labelled, is_normal: np.ndarray, split_file: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(training pool, test indices, note) from a list of training file names."""
    path = resolve_path(split_file)  # as data sources: as given, else under $TLZOO_DATA_DIR
    if not path.is_file():
        raise DataError(f"split_file {split_file!r} does not exist")
    if data.filenames is None:
        raise DataError(f"{data.source} records no file names (a 'filenames' array), so split_file {split_file!r} "
                        f"cannot name its images")
    listed = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    where = {Path(f).name: i for i, f in enumerate(data.filenames)}
    unknown = [n for n in listed if Path(n).name not in where]
    if unknown:
        raise DataError(f"split_file {path.name}: {len(unknown)} of its {len(listed)} names are not images of "
                        f"{data.source}, e.g. {unknown[:3]}")
    pool = np.array(sorted({where[Path(n).name] for n in listed}), dtype=np.int64)
    defective = pool[~is_normal[pool]]
    if defective.size:
        raise DataError(f"split_file {path.name} lists {defective.size} defective image(s) for training, e.g. "
                        f"{[str(data.filenames[i]) for i in defective[:3]]}; the memory bank takes defect-free ones")
    test_idx = np.setdiff1d(np.arange(len(data.y)), pool)
    return pool, test_idx, (f"train: the {len(pool)} defect-free images listed in {path.name}; test: the other "
                            f"{int(is_normal[test_idx].sum())} defect-free and {int((~is_normal).sum())} defective")

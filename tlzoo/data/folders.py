"""Class folders: ``root/<class>/...`` or ``root/{train,val|valid|validation,test}/<class>/...``.

Split and class names are matched case-insensitively (``val/normal`` is ``train/NORMAL``); files are
found recursively inside each class folder; hidden and system files are skipped and counted, and so
are files that are not images. A class found in one split only stops the read with its name, except
a class found only under ``test/``: the model cannot predict it, so its files are left out of the
test split with a warning (printed and recorded in the run's config).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tlzoo.data.dicom_files import DICOM_SUFFIXES, is_dicom
from tlzoo.data.images import IMAGE_SUFFIXES, SYSTEM_FILES
from tlzoo.data.index import DataOptions, Rows, build_splits
from tlzoo.data.splits import DataSplits
from tlzoo.errors import DataError

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}


def list_files(folder: Path) -> tuple[list[str], list[str], int]:
    """Image and DICOM files under ``folder`` (recursive, sorted), other files, and the hidden count."""
    images, other, hidden = [], [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        hidden += sum(d.startswith(".") for d in dirnames)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if name.startswith(".") or name.lower() in SYSTEM_FILES:
                hidden += 1
                continue
            path = os.path.join(dirpath, name)
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or (not suffix and is_dicom(Path(path))):
                images.append(path)
            else:
                other.append(path)
    return images, other, hidden


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def split_folders(root: Path) -> dict[str, Path]:
    """The split sub-folders of ``root`` (by case-insensitive name), if it is laid out by split."""
    found: dict[str, Path] = {}
    for d in _subdirs(root):
        split = SPLIT_NAMES.get(d.name.lower())
        if split:
            if split in found:
                raise DataError(f"{root}: two folders name the {split} split: {found[split].name!r} and {d.name!r}")
            found[split] = d
    # train/ alone is a split layout too (val and test are cut from it); a test/ without train/ is a class
    return found if "train" in found else {}


def read_folder(path: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                options: DataOptions | None = None) -> DataSplits:
    """Class folders, optionally under split folders, of images of any size, mode and format."""
    options = options or DataOptions()
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data folder {str(path)!r} does not exist")
    splits = split_folders(root)
    layout = splits or {"": root}
    by_split: dict[str, dict[str, list[str]]] = {}  # split -> class key (lower case) -> files
    spelling: dict[str, str] = {}  # class key -> the name as first seen (train's spelling first)
    other, hidden = 0, 0
    for split in sorted(layout, key=lambda s: ("train", "val", "test", "").index(s)):
        folder = layout[split]
        classes = _subdirs(folder)
        loose = loose_images(folder)
        if not classes:
            hint = " (a flat folder: give a label table with a path and a label column, or class sub-folders)" \
                if loose else ""
            raise DataError(f"{folder}: no class sub-folders found (expected {folder}/<class>/<image>){hint}")
        by_split[split] = {}
        for d in classes:
            key = d.name.lower()
            spelling.setdefault(key, d.name)
            files, rest, n_hidden = list_files(d)
            other, hidden = other + len(rest), hidden + n_hidden
            by_split[split].setdefault(key, []).extend(files)
    report: dict[str, object] = {"layout": "split folders" if splits else "class folders",
                                 "skipped_other_files": other, "skipped_hidden_files": hidden, "warnings": []}
    keys = _class_keys(by_split, root, report, options)
    names = [spelling[k] for k in keys]
    index = {k: i for i, k in enumerate(keys)}
    paths, labels, split_of = [], [], []
    for split, classes in by_split.items():
        for key, files in classes.items():
            if key not in index:
                continue  # a test-only class, warned about above
            paths += files
            labels += [index[key]] * len(files)
            split_of += [split] * len(files)
    if not paths:
        raise DataError(f"{root}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES + DICOM_SUFFIXES)})")
    rows = Rows(paths, np.asarray(labels, np.int64), split_of if splits else None)
    return build_splits(rows, names, source=str(root), root=str(root), options=options, seed=seed,
                        val_fraction=val_fraction, test_fraction=test_fraction,
                        notes=[f"{report['layout']} under {root}"], report=report)


def loose_images(folder: Path) -> list[str]:
    """Image files directly in ``folder`` (not in sub-folders)."""
    return [str(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
            and p.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES]


def _class_keys(by_split: dict[str, dict[str, list[str]]], root: Path, report: dict, options: DataOptions) -> list[str]:
    """The classes, in order; stops on a class that only one split has (test-only: left out, warned)."""
    if options.classes:
        keys = [c.lower() for c in options.classes]
        unknown = sorted({k for cl in by_split.values() for k in cl} - set(keys))
        if unknown:
            raise DataError(f"{root}: folders {unknown} are not among the given classes {options.classes}")
        return keys
    if "" in by_split:
        return sorted(by_split[""])
    train = set(by_split.get("train", {}))
    problems = []
    for split, classes in by_split.items():
        if split == "train":
            continue
        for key in sorted(set(classes) - train):
            if split == "test":
                n = len(classes[key])
                report["warnings"].append(f"class folder {key!r} exists only under test/ ({n} files); the model "
                                          f"cannot predict it, so these files are left out of the test split")
            else:
                problems.append(f"{key!r} is in {split}/ but not in train/")
    for key in sorted(train):
        if len(by_split) > 1 and not any(key in c for s, c in by_split.items() if s != "train"):
            problems.append(f"{key!r} is in train/ only (no val/ or test/ images to evaluate it on)")
    if problems:
        raise DataError(f"{root}: classes differ between splits: " + "; ".join(problems)
                        + " (class names are matched case-insensitively)")
    return sorted(train)

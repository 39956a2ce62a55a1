"""One entry point for every data source: ``read_source``.

``tfds:NAME``; a ``.npz``; a label table (``.csv`` / ``.tsv``); a folder of class folders (optionally
under train/val/test folders); a folder holding one label table beside its ``images/``. Relative
paths that do not exist here are looked up under ``$TLZOO_DATA_DIR``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.data.arrays import as_labels, read_arrays, read_npz
from tlzoo.data.folders import read_folder
from tlzoo.data.index import DataOptions
from tlzoo.data.records import RecordImages, scan_records
from tlzoo.data.splits import DataSplits, Split, split_note, split_three
from tlzoo.data.tables import TABLE_SUFFIXES, frame_rows, read_table, table_splits
from tlzoo.data.tfds_source import read_tfds
from tlzoo.errors import DataError
from tlzoo.paths import resolve_path

TABLE_STEMS = ("labels", "label", "metadata", "annotations", "train", "data", "dataset")


def folder_table(root: Path) -> Path | None:
    """The label table a folder is described by: its one top-level table, when it sits beside an
    ``images/`` folder or is named like one (labels.csv, metadata.csv ...)."""
    tables = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES[:3]]
    if len(tables) != 1:
        return None
    table = tables[0]
    return table if (root / "images").is_dir() or table.stem.lower() in TABLE_STEMS else None


def read_source(source: Any, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                options: DataOptions | dict[str, Any] | None = None) -> DataSplits:
    """Dispatch on the source (see the module's docstring)."""
    opts = options if isinstance(options, DataOptions) else DataOptions.from_dict(options)
    kw: dict[str, Any] = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if not isinstance(source, (str, os.PathLike)):
        return read_object(source, opts, **kw)
    source = str(source)
    if source.startswith("tfds:"):
        return read_tfds(source[5:], **kw)
    path = resolve_path(source)
    if path.suffix == ".npz":
        return read_npz(path, **kw)
    if path.suffix.lower() in TABLE_SUFFIXES and path.is_file():
        return read_table(path, options=opts, **kw)
    if path.is_dir():
        table = folder_table(path)
        if table is not None:
            return read_table(table, options=opts, **kw)
        return read_folder(path, options=opts, **kw)
    if not path.exists():
        raise DataError(f"data source {source!r} does not exist (a .npz file, a folder, a label table, or tfds:NAME)")
    raise DataError(f"data source {source!r} is not a .npz file, a label table (.csv/.tsv), a folder of class folders, "
                    "or tfds:NAME")


def read_object(obj: Any, options: DataOptions, **kw: Any) -> DataSplits:
    """Data from Python: ``(images, labels)`` arrays or a dict of .npz-style arrays; a table of paths
    and labels, as a DataFrame or a dict of columns (paths relative to the working directory); a
    ``tf.data.Dataset`` of
    ``(image, label)`` or ``{"image", "label"}`` elements (streamed, like TFDS)."""
    if isinstance(obj, tuple) and len(obj) == 2:
        return read_arrays({"images": obj[0], "labels": obj[1]}, "arrays (images, labels)", **kw)
    if isinstance(obj, dict) and any(k == "images" or k.endswith("_images") for k in obj):
        return read_arrays(obj, "arrays", **kw)
    if isinstance(obj, dict) or (hasattr(obj, "columns") and hasattr(obj, "to_dict")):
        header, rows = frame_rows(obj)
        return table_splits(header, rows, Path.cwd(), Path(f"<{type(obj).__name__} of paths>"), options=options, **kw)
    if type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec"):
        return read_dataset(obj, options, **kw)
    raise DataError(f"cannot read a {type(obj).__name__} as data: give a path, tfds:NAME, (images, labels) arrays, "
                    "a DataFrame of paths and labels, or a tf.data.Dataset of (image, label)")


def read_dataset(ds: Any, options: DataOptions, *, seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.2) -> DataSplits:
    """A ``tf.data.Dataset`` of (image, label) or {"image", "label"}: labels read in one pass, images streamed."""
    spec = ds.element_spec
    if isinstance(spec, dict) and {"image", "label"} <= set(spec):
        image_of, label_of, image_spec = (lambda ex: ex["image"]), (lambda ex: ex["label"]), spec["image"]
    elif isinstance(spec, tuple) and len(spec) == 2:
        image_of, label_of, image_spec = (lambda ex: ex[0]), (lambda ex: ex[1]), spec[0]
    else:
        raise DataError(f"a tf.data.Dataset source needs (image, label) or {{'image', 'label'}} elements, got {spec}")
    if image_spec.shape.rank == 4:
        raise DataError(f"the tf.data.Dataset is batched (images {image_spec.shape}); pass it unbatched (ds.unbatch())")
    if image_spec.shape.rank not in (2, 3):
        raise DataError(f"tf.data.Dataset images must be (H, W) or (H, W, C), got {image_spec.shape}")
    ys, digests = scan_records(ds, image_of, label_of)
    channels = options.channel_count() or (1 if image_spec.shape.rank == 2 or image_spec.shape[-1] == 1 else 3)
    images = RecordImages(lambda: ds, image_of, image_spec.dtype == "string", np.arange(len(ys)), channels, digests,
                          "tf.data.Dataset")
    full = Split(images, as_labels(ys, "tf.data.Dataset"))
    train, val, test = split_three(full, seed, val_fraction, test_fraction)
    names = list(options.classes or [])
    return DataSplits(train, val, test, names, "<tf.data.Dataset>", [split_note(val_fraction, test_fraction, seed)])

"""One entry point for every data source: ``read_source``.

``tfds:NAME``; a ``.npz``; a label table (``.csv`` / ``.tsv``); a folder of class folders (optionally
under train/val/test folders); a folder holding one label table beside its ``images/``. Relative
paths that do not exist here are looked up under ``$TLZOO_DATA_DIR``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tlzoo.data.arrays import read_npz
from tlzoo.data.folders import read_folder
from tlzoo.data.index import DataOptions
from tlzoo.data.splits import DataSplits
from tlzoo.data.tables import TABLE_SUFFIXES, read_table
from tlzoo.data.tfds_source import read_tfds
from tlzoo.errors import DataError

TABLE_STEMS = ("labels", "label", "metadata", "annotations", "train", "data", "dataset")


def resolve_path(source: str) -> Path:
    """``source`` as a path; a relative path that does not exist is looked up under ``$TLZOO_DATA_DIR``."""
    path = Path(source).expanduser()
    if not path.exists() and not path.is_absolute() and os.environ.get("TLZOO_DATA_DIR"):
        alt = Path(os.environ["TLZOO_DATA_DIR"]) / source
        if alt.exists():
            return alt
    return path


def folder_table(root: Path) -> Path | None:
    """The label table a folder is described by: its one top-level table, when it sits beside an
    ``images/`` folder or is named like one (labels.csv, metadata.csv ...)."""
    tables = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES[:3]]
    if len(tables) != 1:
        return None
    table = tables[0]
    return table if (root / "images").is_dir() or table.stem.lower() in TABLE_STEMS else None


def read_source(source: str, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                options: DataOptions | dict[str, Any] | None = None) -> DataSplits:
    """Dispatch on the source (see the module's docstring)."""
    opts = options if isinstance(options, DataOptions) else DataOptions.from_dict(options)
    kw: dict[str, Any] = dict(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
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

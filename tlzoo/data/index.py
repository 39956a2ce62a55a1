"""From rows (one per file: path, label(s), split, attributes) to scanned, streamed splits.

Every file reader (class folders, label tables, DICOM folders) ends here, so all of them scan the
same way, list bad files the same way, apply one channel rule and print one summary.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from tlzoo.data.images import DICOM_DECODE, ImageFiles, index_files
from tlzoo.data.splits import SPLITS, DataSplits, Split, split_note, split_three
from tlzoo.errors import ConfigError, DataError

CHANNEL_RULES = ("auto", "gray", "rgb")


@dataclass
class DataOptions:
    """How file sources are read; recorded in the run's config so evaluate / export / predict read alike."""

    path_column: str | None = None  # label tables: the file column (default: path, file, filename, image ...)
    label_column: str | None = None  # the label column, or several 0/1 columns "a,b,c" (multilabel)
    split_column: str | None = None  # default: a column named split / subset / set, if any
    label_sep: str | None = None  # one column holding several labels, e.g. "|" (multilabel)
    classes: list[str] | None = None  # class order (default: sorted names, as Keras does)
    skip_bad_files: bool = False  # leave unreadable files out (recorded) instead of stopping
    channels: str = "auto"  # auto: 1 if every file is gray, else 3 | gray | rgb
    cache_dir: str | None = None  # on-disk cache of decoded, resized samples (default: $TLZOO_DATA_CACHE)
    # DICOM header fields kept as attributes (default: dicom_files.DEFAULT_FIELDS)
    dicom_fields: list[str] | None = None
    verbose: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DataOptions":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown data option(s) {unknown}; known: {sorted(known)}")
        opts = cls(**d)
        if opts.channels not in CHANNEL_RULES:
            raise ConfigError(f"channels must be one of {CHANNEL_RULES}, got {opts.channels!r}")
        return opts

    def channel_count(self) -> int | None:
        return {"gray": 1, "rgb": 3}.get(self.channels)

    def cache(self) -> str | None:
        return self.cache_dir or os.environ.get("TLZOO_DATA_CACHE") or None


@dataclass
class Rows:
    """A file source before scanning: one entry per sample."""

    paths: list[str]
    labels: np.ndarray  # (N,) class indices or (N, K) 0/1
    split: list[str] | None = None  # "train" / "val" / "test" per sample, when the source says
    attributes: dict[str, list[str]] = field(default_factory=dict)


def build_splits(rows: Rows, class_names: list[str], *, source: str, root: str, options: DataOptions,
                 seed: int, val_fraction: float, test_fraction: float, notes: list[str],
                 report: dict[str, Any] | None = None) -> DataSplits:
    """Scan every file (all bad files listed), keep the good ones, make the splits and the summary."""
    report = dict(report or {})
    good, infos, bad, channels = index_files(rows.paths, where=source, skip_bad=options.skip_bad_files,
                                             verbose=options.verbose, channels=options.channel_count(),
                                             dicom_fields=options.dicom_fields)
    if len(good) == 0:
        raise DataError(f"{source}: none of the {len(rows.paths)} files can be read")
    paths = np.asarray(rows.paths, dtype=str)[good]
    files = ImageFiles(paths, [i.route for i in infos], channels, root=root, cache_dir=options.cache())
    attributes = {k: np.asarray(v, dtype=str)[good] for k, v in rows.attributes.items()}
    attributes["filenames"] = np.asarray([os.path.relpath(p, root) for p in paths], dtype=str)
    dicom = [i.attributes for i in infos if i.route == DICOM_DECODE]
    if dicom:  # header fields as attributes ("" for the non-DICOM files of a mixed source)
        for key in dicom[0]:
            attributes.setdefault(key, np.asarray([(i.attributes or {}).get(key, "") for i in infos], dtype=str))
    report["attribute_columns"] = sorted(k for k in attributes if k != "filenames")  # for --group-by, the card
    full = Split(files, rows.labels[good], attributes=attributes)
    if bad:
        report["skipped_bad_files"] = [{"path": os.path.relpath(p, root), "reason": r} for p, r in bad]
        notes.append(f"{len(bad)} unreadable file(s) skipped (--skip-bad-files); listed under reader.skipped_bad_files")
    report["channels"] = {"rule": options.channels, "count": channels,
                          "gray_files": int(sum(i.gray for i in infos)), "files": len(infos)}
    if rows.split is None:
        train, val, test = split_three(full, seed, val_fraction, test_fraction)
        notes.append(split_note(val_fraction, test_fraction, seed))
    else:
        where = np.asarray(rows.split, dtype=str)[good]
        parts = {s: full.take(np.flatnonzero(where == s)) for s in SPLITS}
        train, val, test = parts["train"], parts["val"], parts["test"]
        if len(test) == 0 and len(val) == 0:
            train, val, test = split_three(train, seed, val_fraction, test_fraction)
            notes.append("the source names only a train split: " + split_note(val_fraction, test_fraction, seed))
        elif len(val) == 0:
            train, val, _ = split_three(train, seed, val_fraction, 0.0)
            notes.append(f"val split: {val_fraction:.0%} of train, stratified, seed {seed}")
        elif len(test) == 0:
            train, test, _ = split_three(train, seed, test_fraction, 0.0)
            notes.append(f"test split: {test_fraction:.0%} of train, stratified, seed {seed}")
        else:
            notes.append("train/val/test splits as the source gives them")
    data = DataSplits(train, val, test, class_names, source, notes, report=report)
    _print_summary(data, options.verbose)
    return data


def _print_summary(data: DataSplits, verbose: bool) -> None:
    """Keras-style "Found N files belonging to K classes", per split, and what was left out."""
    k = len(data.class_names)
    lines = [f"{name}: found {len(data.split(name))} files belonging to {k} classes" for name in SPLITS]
    for key, what in (("skipped_other_files", "non-image files"), ("skipped_hidden_files", "hidden/system files")):
        if data.report.get(key):
            lines.append(f"skipped {data.report[key]} {what}")
    if data.report.get("skipped_bad_files"):
        lines.append(f"skipped {len(data.report['skipped_bad_files'])} unreadable files")
    for w in data.report.get("warnings", []):
        lines.append(f"warning: {w}")
    data.report["summary"] = lines
    if verbose:
        print(f"{data.source}:\n  " + "\n  ".join(lines), flush=True)

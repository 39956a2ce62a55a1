"""Label tables: a CSV / TSV with a path column and a label column (``images/`` + ``labels.csv``).

- path column: ``--path-column``, else the first of ``path``, ``filepath``, ``file``, ``filename``,
  ``image``, ``image_path``, ``image_id``, ``id`` ...; paths are relative to the table's folder (or its
  ``images/`` sub-folder); a name without a suffix is looked up with each image suffix (``ISIC_0001``).
- labels: ``--label-column`` (default ``label``, ``class``, ``target`` ...): one class per row; or one
  column of several labels joined by ``--label-sep`` (``|`` is recognised by itself); or several 0/1
  columns, ``--label-column a,b,c`` (both multilabel).
- an optional split column (``split``, ``subset``, ``set``) with train / val / test (any case, and
  the usual synonyms); without it the rows are split here, stratified and seeded.
- every other column is a per-sample attribute: usable by ``--group-by``, summarised in the model card.

Before anything is decoded, the table is checked as a whole: missing files, empty label cells,
duplicate paths and paths outside the table's folder are each listed in one error.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlzoo.data.dicom_files import DICOM_SUFFIXES
from tlzoo.data.folders import SPLIT_NAMES
from tlzoo.data.images import IMAGE_SUFFIXES
from tlzoo.data.index import DataOptions, Rows, build_splits
from tlzoo.data.splits import DataSplits
from tlzoo.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "file_name", "image", "image_path",
                "image_name", "img", "image_id", "imageid", "id")
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "classname", "target", "category", "diagnosis", "y")
SPLIT_COLUMNS = ("split", "subset", "set", "partition")


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV / TSV (delimiter sniffed among , ; tab), cells stripped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"label table {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"label table {str(path)!r} is not UTF-8 text: {exc}") from None
    if path.suffix.lower() in (".tsv", ".tab"):
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    lines = [r for r in reader if any(c.strip() for c in r)]
    if len(lines) < 2:
        raise DataError(f"label table {str(path)!r} has no rows (a header line and one row per file are needed)")
    header = [h.strip() for h in lines[0]]
    rows = []
    for n, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(header):
            raise DataError(f"{path}:{n}: {len(cells)} cells, but the header has {len(header)} columns")
        rows.append({h: c.strip() for h, c in zip(header, cells)})
    return header, rows


def pick_column(header: Sequence[str], given: str | None, defaults: Sequence[str], what: str, path: Path,
          required: bool = True) -> str | None:
    lower = {h.lower(): h for h in header}
    if given:
        if given not in header and given.lower() not in lower:
            raise DataError(f"{path}: no {what} column {given!r}; the columns are {list(header)}")
        return given if given in header else lower[given.lower()]
    for name in defaults:
        if name in lower:
            return lower[name]
    if required:
        flag = "--path-column" if what == "path" else "--label-column"
        raise DataError(f"{path}: no {what} column found among {list(header)} (looked for {list(defaults)}); "
                        f"name it with {flag}")
    return None


def resolve_file(base: Path, cell: str) -> Path | None:
    """The file a path cell names, trying ``images/`` and the image suffixes; None if none exists."""
    candidates = [base / cell, base / "images" / cell]
    if not os.path.splitext(cell)[1]:
        candidates += [d / f"{cell}{ext}" for d in (base, base / "images") for ext in IMAGE_SUFFIXES + DICOM_SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


def _listed(problem: str, items: list[str], path: Path, fix: str) -> DataError:
    shown = "\n".join(f"  {i}" for i in items[:50]) + (f"\n  ... and {len(items) - 50} more" if len(items) > 50 else "")
    return DataError(f"{path}: {len(items)} {problem}:\n{shown}\n{fix}")


def read_table(path: str | os.PathLike[str], *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
               options: DataOptions | None = None) -> DataSplits:
    """A label table and the files it names."""
    path = Path(path)
    header, rows = read_rows(path)
    return table_splits(header, rows, path.parent.resolve(), path, seed=seed, val_fraction=val_fraction,
                        test_fraction=test_fraction, options=options)


def table_splits(header: list[str], rows: list[dict[str, str]], base: Path, path: Path, *, seed: int = 0,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, options: DataOptions | None = None
                 ) -> DataSplits:
    """The rows of a table (from a file, or a DataFrame) whose paths are relative to ``base``."""
    options = options or DataOptions()
    path_col = pick_column(header, options.path_column, PATH_COLUMNS, "path", path)
    label_cols = [c.strip() for c in options.label_column.split(",")] if options.label_column and "," in \
        options.label_column else [pick_column(header, options.label_column, LABEL_COLUMNS, "label", path)]
    label_cols = [pick_column(header, c, (), "label", path) for c in label_cols]
    split_col = pick_column(header, options.split_column, SPLIT_COLUMNS, "split", path, required=False)

    files, missing, escaping, seen, dupes = [], [], [], {}, []
    for n, row in enumerate(rows, start=2):
        cell = row[path_col]
        found = resolve_file(base, cell) if cell else None
        if not cell or found is None:
            missing.append(f"line {n}: {cell!r}")
            continue
        real = found.resolve()
        if not real.is_relative_to(base):
            escaping.append(f"line {n}: {cell!r} -> {real}")
        if str(real) in seen:
            dupes.append(f"line {n}: {cell!r} (also line {seen[str(real)]})")
        seen.setdefault(str(real), n)
        files.append(str(found))
    if missing:
        raise _listed("path(s) name no file", missing, path,
                      f"paths are relative to {base} (or its images/ folder); fix the {path_col!r} column")
    if escaping:
        raise _listed("path(s) lead outside the table's folder", escaping, path,
                      "keep the files under the table's folder (links are followed and checked too)")
    if dupes:
        raise _listed("duplicate path(s)", dupes, path, "each file may appear once; remove the repeated rows")

    labels, names, multilabel = _labels(rows, label_cols, options, path)
    split = None
    if split_col:
        split, bad = [], []
        for n, row in enumerate(rows, start=2):
            s = SPLIT_NAMES.get(row[split_col].lower())
            split.append(s or "")
            if s is None:
                bad.append(f"line {n}: {row[split_col]!r}")
        if bad:
            raise _listed(f"unknown value(s) in the split column {split_col!r}", bad, path,
                          f"use one of {sorted(set(SPLIT_NAMES))}")
    used = {path_col, split_col, *label_cols}
    attributes = {h: [row[h] for row in rows] for h in header if h not in used}
    report: dict[str, Any] = {"layout": "label table", "path_column": path_col, "label_columns": label_cols,
                              "split_column": split_col, "attribute_columns": sorted(attributes),
                              "multilabel": multilabel, "warnings": []}
    if split is not None and not multilabel:
        labels, split, files, attributes, names = _drop_test_only(labels, split, files, attributes, names, report, path)
    return build_splits(Rows(files, labels, split, attributes), names, source=str(path), root=str(base),
                        options=options, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                        notes=[f"label table {path.name}: {len(files)} rows"], report=report)


def frame_rows(frame: Any) -> tuple[list[str], list[dict[str, str]]]:
    """A pandas DataFrame (anything with ``columns`` and ``to_dict("records")``), or a dict of
    equally long columns, as table rows."""
    if isinstance(frame, dict):
        lengths = {k: len(v) for k, v in frame.items()}
        if len(set(lengths.values())) != 1:
            raise DataError(f"the columns of a table differ in length: {lengths}")
        records = [dict(zip(frame, values)) for values in zip(*frame.values())]
    else:
        records = frame.to_dict("records")
    header = [str(c) for c in frame]

    def cell(v: Any) -> str:  # pandas holds empty cells as NaN
        return "" if v is None or (isinstance(v, float) and v != v) else str(v).strip()

    return header, [{str(k): cell(v) for k, v in r.items()} for r in records]


def _labels(rows: list[dict[str, str]], cols: list[str], options: DataOptions, path: Path
            ) -> tuple[np.ndarray, list[str], bool]:
    """(labels, class names, multilabel) from one class column, one delimited column or 0/1 columns."""
    empty = [f"line {n}" for n, r in enumerate(rows, start=2) if any(not r[c] for c in cols)]
    if empty:
        raise _listed(f"empty label cell(s) in {cols}", empty, path, "every row needs a label")
    if len(cols) > 1:  # several 0/1 columns
        bad = sorted({r[c] for r in rows for c in cols} - {"0", "1", "0.0", "1.0"})
        if bad:
            raise DataError(f"{path}: multilabel columns {cols} must hold 0/1, found {bad[:5]}")
        return np.array([[int(float(r[c])) for c in cols] for r in rows], np.int64), list(cols), True
    col = cols[0]
    sep = options.label_sep or ("|" if any("|" in r[col] for r in rows) else None)
    if sep:
        sets = [[t.strip() for t in r[col].split(sep) if t.strip()] for r in rows]
        names = options.classes or sorted({t for s in sets for t in s})
        y = np.zeros((len(rows), len(names)), np.int64)
        for i, s in enumerate(sets):
            for t in s:
                if t not in names:
                    raise DataError(f"{path}: label {t!r} is not among the given classes {names}")
                y[i, names.index(t)] = 1
        return y, list(names), True
    values = [r[col] for r in rows]
    names = list(options.classes or _sorted_names(set(values)))
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise DataError(f"{path}: labels {unknown[:5]} are not among the given classes {names}")
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in values], np.int64), names, False


def _sorted_names(values: set[str]) -> list[str]:
    """Numeric labels in numeric order (0, 1, 2, 10), others alphabetically."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _drop_test_only(labels: np.ndarray, split: list[str], files: list[str], attributes: dict[str, list[str]],
                    names: list[str], report: dict[str, Any], path: Path) -> tuple[Any, ...]:
    """A class only the test rows have is left out with a warning; one only val or train has stops the read."""
    split_arr = np.asarray(split)
    present = {s: set(labels[split_arr == s].tolist()) for s in ("train", "val", "test")}
    named = [s for s in ("train", "val", "test") if (split_arr == s).any()]
    test_only = sorted(present["test"] - present["train"] - present["val"])
    problems = [f"{names[c]!r} only in {s}" for s in ("val", "train") if s in named and len(named) > 1
                for c in sorted(present[s] - set().union(*(present[o] for o in named if o != s)))]
    if problems:
        raise DataError(f"{path}: classes present in one split only: {'; '.join(problems)}; every class needs "
                        "training and evaluation rows")
    if not test_only:
        return labels, split, files, attributes, names
    drop = np.isin(labels, test_only) & (split_arr == "test")
    report["warnings"].append(f"classes {[names[c] for c in test_only]} appear only in test rows ({int(drop.sum())} "
                              f"rows); the model cannot predict them, so these rows are left out")
    keep = np.flatnonzero(~drop)
    kept_classes = [c for c in range(len(names)) if c not in test_only]
    remap = np.full(len(names), -1, np.int64)
    remap[kept_classes] = np.arange(len(kept_classes))
    return (remap[labels[keep]], [split[i] for i in keep], [files[i] for i in keep],
            {k: [v[i] for i in keep] for k, v in attributes.items()}, [names[c] for c in kept_classes])

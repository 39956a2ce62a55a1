"""Time-series classification files as the UCR / UEA archives keep them.

- ``.ts`` (sktime / aeon): ``@`` header lines (``@univariate``, ``@dimensions``, ``@equalLength``, ``@seriesLength``,
  ``@classLabel true A B C``), then ``@data``: one series per line, dimensions separated by ``:``, values by ``,``,
  the class label last; ``?`` or ``NaN`` is a missing value.
- ``.arff`` (Weka, univariate): ``@attribute`` lines, the last the class, then ``@data`` rows ``v1,...,vT,label``.
- UCR text (``.tsv`` / ``.txt``): one series per line, the label first, values separated by tabs or spaces; a
  shorter series is padded with ``NaN`` at its end.

Each reader returns the series (``[time, channels]`` float32 arrays, lengths may differ) and their labels (as
text). Every file error names the file and the line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.errors import DataError

SERIES_SUFFIXES = (".ts", ".arff", ".tsv", ".txt")


@dataclass
class SeriesFile:
    """The series of one file, its labels, and what its header declared."""

    series: list[np.ndarray]  # each [time, channels]
    labels: list[str]
    path: str
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.series[0].shape[1]) if self.series else 0

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.series])


def read_series_file(path: str | Path) -> SeriesFile:
    """The series and labels of a ``.ts``, ``.arff``, ``.tsv`` or ``.txt`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"series file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    readers = {".ts": _read_ts, ".arff": _read_arff, ".tsv": _read_ucr_text, ".txt": _read_ucr_text}
    if suffix not in readers:
        raise DataError(f"{str(path)!r}: series files are {', '.join(SERIES_SUFFIXES)}, not {suffix or 'no suffix'}")
    found = readers[suffix](path)
    if not found.series:
        raise DataError(f"{str(path)!r} holds no series")
    return found


def _floats(text: str, path: Path, line: int) -> np.ndarray:
    try:
        return np.array([np.nan if v.strip() in ("?", "") else float(v) for v in text.split(",")], np.float32)
    except ValueError as exc:
        raise DataError(f"{path}:{line}: not a number in the series ({exc})") from None


def _read_ts(path: Path) -> SeriesFile:
    header: dict[str, Any] = {}
    series, labels = [], []
    in_data = False
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{path}:{number}: expected a @header line or @data, got {line[:40]!r}")
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
            elif key == "classlabel":
                words = value.split()
                header["class_label"] = bool(words) and words[0].lower() == "true"
                header["classes"] = words[1:]
            else:
                header[key] = value.strip()
            continue
        parts = line.split(":")
        label = None
        if header.get("class_label", True):
            label = parts.pop().strip()
            if header.get("classes") and label not in header["classes"]:
                raise DataError(f"{path}:{number}: class {label!r} is not among the header's @classLabel "
                                f"{header['classes']}")
        dims = [_floats(p, path, number) for p in parts]
        want = int(header.get("dimensions", 1 if header.get("univariate", "true").lower() == "true" else 0) or 0)
        if want and len(dims) != want:
            raise DataError(f"{path}:{number}: {len(dims)} dimension(s), the header says {want}")
        if len({len(d) for d in dims}) != 1:
            raise DataError(f"{path}:{number}: the dimensions of one series differ in length "
                            f"({sorted({len(d) for d in dims})})")
        x = np.stack(dims, axis=1)
        if header.get("equallength", "").lower() == "true" and header.get("serieslength") \
                and len(x) != int(header["serieslength"]):
            raise DataError(f"{path}:{number}: a series of length {len(x)}; the header says every series has "
                            f"length {header['serieslength']}")
        series.append(x)
        labels.append(label if label is not None else "")
    if not in_data:
        raise DataError(f"{path}: no @data line: not a .ts file")
    return SeriesFile(series, labels, str(path), header)


def _read_arff(path: Path) -> SeriesFile:
    attributes: list[str] = []
    series, labels = [], []
    in_data = False
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        lowered = line.lower()
        if not in_data:
            if lowered.startswith("@attribute"):
                if "relational" in lowered:
                    raise DataError(f"{path}:{number}: multivariate (relational) .arff is not read; use the .ts file")
                attributes.append(line)
            elif lowered.startswith("@data"):
                in_data = True
            continue
        values = line.split(",")
        if len(values) != len(attributes):
            raise DataError(f"{path}:{number}: {len(values)} values, the header declares {len(attributes)} "
                            f"attributes (the series and its class)")
        series.append(_floats(",".join(values[:-1]), path, number)[:, None])
        labels.append(values[-1].strip().strip("'\""))
    if not in_data:
        raise DataError(f"{path}: no @data line: not an .arff file")
    return SeriesFile(series, labels, str(path), {"attributes": len(attributes)})


def _read_ucr_text(path: Path) -> SeriesFile:
    series, labels = [], []
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = [f for f in re.split(r"[\t ,]+", raw.strip()) if f]
        if not fields:
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: a label and no values (UCR text: the label first, then the series)")
        values = _floats(",".join(fields[1:]), path, number)
        if not np.isfinite(values).any():
            raise DataError(f"{path}:{number}: a series with no value (every value missing)")
        last = len(values) - int(np.argmax(~np.isnan(values[::-1])))
        series.append(values[:last, None])  # NaN padding at the end of a shorter series dropped
        labels.append(_label_text(fields[0]))
    return SeriesFile(series, labels, str(path), {})


def _label_text(label: str) -> str:
    """UCR text files write class 1 as "1", "1.0" or "1.0000000e+00": the same class, "1"."""
    try:
        value = float(label)
    except ValueError:
        return label
    return str(int(value)) if np.isfinite(value) and value == int(value) else label

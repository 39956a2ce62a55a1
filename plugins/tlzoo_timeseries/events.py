"""Event tables -> checked, split, imputed windows of consecutive events.

An event table is an ``.npz`` with ``features`` (N, F) (or ``x``), ``labels`` (N,) (or ``y``),
optional ``time`` (N,) used only to order events (never as a feature), optional ``account`` (N,)
(windows are built per account), optional ``feature_names``. An NAB file (keys
``S__timestamp``, ``S__value``, ``S__in_anomaly_window``) is read as one stream per series.

A window ending at event i holds events i-window+1 .. i of the same account (or stream): only the
current and past events, never later ones. Its label is the label of its last event. Accounts
with fewer past events are left-padded by repeating their first event (so every event gets a
window and nothing is dropped silently). ``window=1`` is the tabular mode: one event, no context.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlzoo.data import DataSplits, Split, stratified_split
from tlzoo.errors import ConfigError, DataError

IMPUTATIONS = ("none", "median", "zero")


@dataclass
class EventTable:
    features: np.ndarray  # (N, F) float
    labels: np.ndarray  # (N,) int
    feature_names: list[str]
    time: np.ndarray | None = None
    account: np.ndarray | None = None  # stream id per event (accounts, or NAB series)
    source: str = ""
    notes: list[str] = field(default_factory=list)


def read_table(path: str | Path) -> EventTable:
    p = Path(path)
    if p.suffix != ".npz" or not p.is_file():
        raise DataError(f"timeseries-fraud reads an .npz event table; {str(path)!r} is not one")
    with np.load(p, allow_pickle=False) as z:
        keys = set(z.files)
        if any(k.endswith("__value") for k in keys):
            return _read_nab(z, str(p))
        fkey = "features" if "features" in keys else "x" if "x" in keys else None
        lkey = "labels" if "labels" in keys else "y" if "y" in keys else None
        if fkey is None or lkey is None:
            raise DataError(f"{str(path)!r} needs 'features' (or 'x') and 'labels' (or 'y'); it has {sorted(keys)}")
        x = np.asarray(z[fkey], dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise DataError(f"{fkey} must be (events, features), got shape {x.shape}")
        names = ([str(n) for n in z["feature_names"]] if "feature_names" in keys
                 else [f"f{i}" for i in range(x.shape[1])])
        if len(names) != x.shape[1]:
            raise DataError(f"{len(names)} feature_names for {x.shape[1]} feature columns")
        y = np.asarray(z[lkey])
        if y.shape != (len(x),):
            raise DataError(f"labels must be one per event ({len(x)}), got shape {y.shape}")
        return EventTable(x, y.astype(np.int64), names, z["time"] if "time" in keys else None,
                          z["account"] if "account" in keys else None, str(p))


def _read_nab(z: Any, source: str) -> EventTable:
    series = sorted({k.rsplit("__", 1)[0] for k in z.files if k.endswith("__value")})
    xs, ys, ts, ids = [], [], [], []
    for i, s in enumerate(series):
        v = np.asarray(z[f"{s}__value"], dtype=np.float64)
        # each series on its own scale: NAB mixes CPU percentages with request counts
        med, iqr = np.nanmedian(v), np.subtract(*np.nanpercentile(v, [75, 25]))
        xs.append((v - med) / (iqr if iqr > 0 else (np.nanstd(v) or 1.0)))
        ys.append(np.asarray(z[f"{s}__in_anomaly_window"], dtype=np.int64))
        ts.append(np.asarray(z[f"{s}__timestamp"], dtype=np.float64))
        ids.append(np.full(len(v), i))
    table = EventTable(np.concatenate(xs)[:, None], np.concatenate(ys), ["value"], np.concatenate(ts),
                       np.concatenate(ids), source)
    table.notes.append(f"NAB: {len(series)} series, each value robust-scaled within its series (median / IQR)")
    return table


def check_finite(table: EventTable, impute: str) -> None:
    """NaN / inf stop the run, naming rows and columns, unless an imputation is chosen."""
    if impute not in IMPUTATIONS:
        raise ConfigError(f"impute must be one of {IMPUTATIONS}, got {impute!r}")
    bad = ~np.isfinite(table.features)
    if bad.any() and impute == "none":
        rows, cols = np.nonzero(bad)
        cells = ", ".join(f"row {r} column {table.feature_names[c]!r}" for r, c in zip(rows[:8], cols[:8]))
        raise DataError(
            f"{source_name(table)}: {int(bad.sum())} NaN or infinite value(s) in {len(np.unique(rows))} row(s), "
            f"columns {sorted({table.feature_names[c] for c in cols})}: {cells}{' ...' if bad.sum() > 8 else ''}; "
            f"fix the data or pass impute=median (training-split column medians) or impute=zero"
        )


def source_name(table: EventTable) -> str:
    return Path(table.source).name or "data"


def check_order(table: EventTable, sort_by_time: bool) -> EventTable:
    """Events must be in time order within each stream; ``sort_by_time`` sorts them (stably)."""
    if table.time is None:
        return table
    t = np.asarray(table.time, dtype=np.float64)
    acc = table.account if table.account is not None else np.zeros(len(t), dtype=np.int64)
    order = np.lexsort((np.arange(len(t)), t, acc))  # by account, then time, then position
    in_file_order = np.argsort(acc, kind="stable")
    back = np.flatnonzero((acc[in_file_order][1:] == acc[in_file_order][:-1]) & (np.diff(t[in_file_order]) < 0))
    if back.size == 0:
        return table
    if not sort_by_time:
        i, j = in_file_order[back[0]], in_file_order[back[0] + 1]
        raise DataError(
            f"{source_name(table)}: timestamps out of order: row {j} (time {t[j]:.10g}) comes after row {i} "
            f"(time {t[i]:.10g}){' of the same stream (account / series)' if table.account is not None else ''}; "
            f"{back.size} such step(s). "
            f"Windows would mix future into past; sort the data or pass sort_by_time=true"
        )
    table.notes.append(f"{back.size} out-of-order timestamps: events sorted by time (sort_by_time=true)")
    return EventTable(table.features[order], table.labels[order], table.feature_names, t[order],
                      None if table.account is None else table.account[order], table.source, table.notes)


def window_index(table: EventTable, window: int) -> np.ndarray:
    """(N, window) row indices: row i's window is its own stream's events up to and including i."""
    if window < 1:
        raise ConfigError(f"window must be >= 1 event, got {window}")
    n = len(table.labels)
    acc = table.account if table.account is not None else np.zeros(n, dtype=np.int64)
    # position of each row within its stream (streams may interleave in the file)
    idx = np.empty((n, window), dtype=np.int64)
    for a in np.unique(acc):
        rows = np.flatnonzero(acc == a)  # in file order, which check_order made time order
        pos = np.arange(len(rows))[:, None] - np.arange(window - 1, -1, -1)[None, :]
        idx[rows] = rows[np.clip(pos, 0, None)]  # before the stream starts: repeat its first event
    return idx


def make_splits(table: EventTable, *, window: int, seed: int, val_fraction: float, test_fraction: float,
                impute: str, stride: int = 1) -> tuple[DataSplits, np.ndarray]:
    """Windows, split stratified by the last event's label (seeded); imputed with training medians.
    Returns the splits and the training rows the imputation and scaler may look at."""
    idx = window_index(table, window)[:: max(1, int(stride))]
    y = table.labels[idx[:, -1]]
    if np.unique(y).size < 2:
        raise DataError(f"{source_name(table)}: the label column has a single class ({int(y[0])}); "
                        f"fraud detection needs both normal and fraudulent events")
    parts = stratified_split(y, [val_fraction, test_fraction], seed)
    x = table.features
    if impute != "none":
        train_rows = np.unique(idx[parts[0]])
        fill = np.zeros(x.shape[1]) if impute == "zero" else np.nanmedian(
            np.where(np.isfinite(x[train_rows]), x[train_rows], np.nan), axis=0)
        fill = np.nan_to_num(fill)  # a column with no finite training value at all
        bad = ~np.isfinite(x)
        if bad.any():
            x = np.where(bad, fill[None, :], x)
            table.notes.append(f"imputed {int(bad.sum())} NaN/inf value(s) with training-split column "
                               f"{'medians' if impute == 'median' else 'zeros'}")
    xw = x[idx].astype(np.float32)  # (N, window, F)
    s = [Split(xw[p], y[p]) for p in parts]
    splits = DataSplits(s[0], s[1], s[2], ["normal", "fraud"], table.source, list(table.notes))
    splits.notes.append(f"windows of {window} event(s) per {'account' if table.account is not None else 'stream'}"
                        f" (label of the last event), stratified split val {val_fraction} / test {test_fraction}, "
                        f"seed {seed}")
    return splits, idx[parts[0]]


def select_features(table: EventTable, wanted: Sequence[str] | None, exclude: Sequence[str]) -> EventTable:
    """Keep ``wanted`` columns (in that order) minus ``exclude``; a wanted one missing is an error."""
    names = list(table.feature_names)
    if wanted:
        missing = [f for f in wanted if f not in names]
        if missing:
            raise DataError(f"{source_name(table)}: feature(s) {missing} used in training are missing; "
                            f"it has {names}")
        keep = [names.index(f) for f in wanted]
    else:
        unknown = [f for f in exclude if f not in names]
        if unknown:
            raise ConfigError(f"exclude_features names unknown column(s) {unknown}; columns: {names}")
        keep = [i for i, f in enumerate(names) if f not in set(exclude)]
    if not keep:
        raise ConfigError("no feature columns left to learn from")
    return EventTable(table.features[:, keep], table.labels, [names[i] for i in keep], table.time,
                      table.account, table.source, table.notes)


def keep_positives(split: Split, k: int, seed: int) -> Split:
    """The split with only ``k`` (seeded) of its positives; every negative stays."""
    pos = np.flatnonzero(split.y == 1)
    if not 1 <= k <= len(pos):
        raise ConfigError(f"train_positives must be between 1 and the {len(pos)} training positives, got {k}")
    keep = np.sort(np.concatenate([np.flatnonzero(split.y != 1), np.random.default_rng(seed).permutation(pos)[:k]]))
    return split.take(keep)

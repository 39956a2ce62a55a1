"""Time-series classification: UCR / UEA style series -> one class per series.

Registered through the ``tlzoo.plugins`` entry point as ``timeseries-classification``.

Data (``--data``):
- a TRAIN file (``GunPoint_TRAIN.ts``, ``.arff``, ``.tsv`` or ``.txt``; see ``tlzoo.data.series_files``): its
  ``_TEST`` sibling is the test split;
- a folder holding one ``*_TRAIN.*`` and one ``*_TEST.*`` file;
- an ``.npz`` with ``X`` ``[N, time, channels]`` (or ``[N, time]``) and ``y``, and optionally ``X_test`` /
  ``y_test`` (else a stratified ``test_fraction`` is held out).

The validation split is a stratified ``val_fraction`` of the training series with at least one series of each
class (the best epoch is kept by validation loss, finer-grained than accuracy on a handful of series). Tiny
training sets therefore lose some of their few series to validation: with ``val_fraction`` 0.2, GunPoint keeps 40
of its 50. Each series is z-normalised per channel (the UCR convention; ``znorm`` false keeps the values), and
an exported model expects z-normalised series too. Series of different lengths are padded at the end with zeros
(after normalisation: the series' mean) to the longest (``length: pad``), or refused (``length: equal``); the
model itself takes any length. Missing values stop the run naming the series (``missing: refuse``) or become 0
after normalisation (``missing: zero``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tlzoo.errors import ConfigError, DataError
from tlzoo.plugin import DomainPlugin
from tlzoo.train.schedule import FreezeSchedule, Stage

if TYPE_CHECKING:
    from tlzoo.data import DataSplits


class TimeSeriesClassificationPlugin(DomainPlugin):
    """Multiclass (or two-class) classification of univariate or multivariate series."""

    name: ClassVar[str] = "timeseries-classification"
    modality: ClassVar[str] = "timeseries"
    task: ClassVar[str] = "multiclass"
    default_backbone: ClassVar[str] = "ts_fcn"
    monitor: ClassVar[str] = "loss"
    monitor_mode: ClassVar[str] = "min"
    description: ClassVar[str] = "series classification (UCR / UEA .ts, .arff, .tsv, .npz), accuracy and macro-F1"
    intended_use: ClassVar[str] = ("classifying sensor, ECG, gesture or similar series of the kind it was trained on, "
                                   "z-normalised per channel as in training")
    limitations: ClassVar[tuple[str, ...]] = (
        "series must be z-normalised per channel before scoring, as the training series were",
        "series much shorter than the training ones change the pooled features; pad them as in training",
    )
    default_options: ClassVar[dict[str, Any]] = {
        "val_fraction": 0.2,
        "test_fraction": 0.3,  # .npz without X_test only
        "znorm": True,
        "length": "pad",
        "missing": "refuse",
        "epochs": 300,
        "patience": 50,
        "lr": 1e-3,
        "dropout": 0.0,
    }

    # ------------------------------------------------------------------ data
    def read_data(self, source: str, *, seed: int = 0) -> DataSplits:
        from tlzoo.data import DataSplits, Split

        o = self.options
        if o["length"] not in ("pad", "equal") or o["missing"] not in ("refuse", "zero"):
            raise ConfigError(f"length must be 'pad' or 'equal' and missing 'refuse' or 'zero'; got "
                              f"{o['length']!r}, {o['missing']!r}")
        (train, train_y), (test, test_y), where = self.read_series(source, seed=seed)
        classes = sorted(set(train_y), key=_class_order)
        lengths = sorted({len(s) for s in train + test})
        if len(lengths) > 1 and o["length"] == "equal":
            raise DataError(f"series lengths differ ({lengths[0]} to {lengths[-1]}); pad them (length: pad) or "
                            f"resample them to one length first")
        longest = lengths[-1]
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[c] for c in train_y])
        full = Split(_pad(train, longest), y)
        from tlzoo.data.splits import stratified_split

        fit_idx, val_idx = stratified_split(y, [float(o["val_fraction"])], seed)
        missing = [c for c in range(len(classes)) if c not in set(y[val_idx])]
        if missing:  # at least one validation series per class
            take = [int(np.flatnonzero(y[fit_idx] == c)[0]) for c in missing if (y[fit_idx] == c).sum() > 1]
            val_idx = np.sort(np.concatenate([val_idx, fit_idx[take]]))
            fit_idx = np.setdiff1d(fit_idx, fit_idx[take])
        notes = [f"{where}; validation: {len(val_idx)} of the {len(y)} training series (stratified, seed {seed})",
                 f"series z-normalised per channel: {bool(o['znorm'])}; lengths {lengths[0]}-{longest}"
                 + (", padded at the end with zeros to the longest" if len(lengths) > 1 else "")]
        return DataSplits(full.take(fit_idx), full.take(val_idx),
                          Split(_pad(test, longest), np.array([index[c] for c in test_y])),
                          [str(c) for c in classes], source, notes)

    def read_series(self, source: str, *, seed: int = 0) -> tuple[Any, Any, str]:
        """((training series, labels), (test series, labels), where they came from): each series checked and
        prepared as the model sees it (z-normalised, missing values handled) at its own length, unpadded."""
        (train_x, train_y), (test_x, test_y), where = _read_pair(Path(source), seed,
                                                                 float(self.options["test_fraction"]))
        classes = sorted(set(train_y), key=_class_order)
        unknown = sorted(set(test_y) - set(classes), key=_class_order)
        if unknown:
            raise DataError(f"class(es) {unknown} appear in the test series only; the training series have "
                            f"{classes}")
        channels = {s.shape[1] for s in train_x}
        if len(channels) != 1 or {s.shape[1] for s in test_x} != channels:
            raise DataError(f"every series needs the same channels: training series have {sorted(channels)}, test "
                            f"series {sorted({s.shape[1] for s in test_x})}")
        train = [self._prepare(s, "train", i) for i, s in enumerate(train_x)]
        test = [self._prepare(s, "test", i) for i, s in enumerate(test_x)]
        return (train, train_y), (test, test_y), where

    def _prepare(self, s: np.ndarray, split: str, i: int) -> np.ndarray:
        s = np.asarray(s, np.float32)
        bad = ~np.isfinite(s)
        if bad.any() and self.options["missing"] == "refuse":
            raise DataError(f"{split} series {i} has {int(bad.sum())} missing or infinite value(s) (first at time "
                            f"{int(np.argwhere(bad)[0][0])}); fill them first, or set missing: zero")
        if self.options["znorm"]:
            mean = np.nanmean(np.where(bad, np.nan, s), axis=0)
            std = np.nanstd(np.where(bad, np.nan, s), axis=0)
            s = (s - mean) / np.where(std > 1e-8, std, 1.0)
        return np.where(bad, 0.0, s).astype(np.float32)

    def check_data(self, data: DataSplits) -> None:
        super().check_data(data)
        for name in ("train", "val", "test"):
            x = data.split(name).x
            if x.ndim != 3:
                raise DataError(f"{name}: series must be [N, time, channels], got shape {x.shape}")

    # ------------------------------------------------------------------ model
    def build_head(self, features: Any, num_classes: int) -> Any:
        import keras

        pooled = keras.layers.GlobalAveragePooling1D(name="head_pool")(features)  # any length in, one vector out
        return super().build_head(pooled, num_classes)

    def metrics(self, num_classes: int) -> list[Any]:
        import keras

        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        """The whole network trains with its BatchNormalization (small encoders, often from scratch), for up to
        ``epochs`` with early stopping on validation loss; a short head-only stage first for pretrained ones."""
        o = self.options
        return FreezeSchedule([Stage("head", 5, 0, float(o["lr"])),
                               Stage("all", int(o["epochs"]), "all", float(o["lr"]), train_batchnorm=True,
                                     patience=int(o["patience"]))])


def _class_order(c: str) -> tuple[int, Any]:
    try:
        return (0, float(c))
    except ValueError:
        return (1, c)


def _pad(series: list[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(series), length, series[0].shape[1]), np.float32)
    for i, s in enumerate(series):
        out[i, :len(s)] = s
    return out


def _read_pair(source: Path, seed: int, test_fraction: float) -> tuple[Any, Any, str]:
    """((train series, labels), (test series, labels), a note on where they came from)."""
    from tlzoo.data.series_files import SERIES_SUFFIXES, read_series_file

    if source.suffix.lower() == ".npz":
        return _read_npz(source, seed, test_fraction)
    if source.is_dir():
        # the UEA archive keeps each set as .ts, .arff and .txt side by side: the first suffix with both parts
        pairs = []
        for suffix in SERIES_SUFFIXES:
            found = {part: sorted(p for p in source.iterdir() if p.suffix.lower() == suffix
                                  and p.stem.upper().endswith(f"_{part}")) for part in ("TRAIN", "TEST")}
            if len(found["TRAIN"]) > 1 or len(found["TEST"]) > 1:
                raise DataError(f"{source} holds several *_TRAIN or *_TEST {suffix} files "
                                f"({[p.name for p in found['TRAIN'] + found['TEST']]}); name the TRAIN file")
            if found["TRAIN"] and found["TEST"]:
                pairs.append((found["TRAIN"][0], found["TEST"][0]))
        if not pairs:
            raise DataError(f"{source} holds no *_TRAIN / *_TEST pair of series files ({', '.join(SERIES_SUFFIXES)})")
        train_path, test_path = pairs[0]
    else:
        stem = source.stem
        if not stem.upper().endswith("_TRAIN"):
            raise DataError(f"{source.name}: name the TRAIN file (X_TRAIN{source.suffix}); its X_TEST sibling is read "
                            f"as the test split")
        siblings = [source.with_name(stem[:-5] + part + suffix) for part in ("TEST", "test")
                    for suffix in dict.fromkeys((source.suffix, *SERIES_SUFFIXES))]
        test_path = next((p for p in siblings if p.is_file()), None)
        if test_path is None:
            raise DataError(f"{source.name} has no test sibling ({stem[:-5]}TEST{source.suffix}) beside it")
        train_path = source
    train, test = read_series_file(train_path), read_series_file(test_path)
    return (train.series, train.labels), (test.series, test.labels), \
        f"official split: {train_path.name} ({len(train.series)}), {test_path.name} ({len(test.series)})"


def _read_npz(path: Path, seed: int, test_fraction: float) -> tuple[Any, Any, str]:
    from tlzoo.data.splits import stratified_split

    with np.load(path, allow_pickle=False) as z:
        if "X" not in z or "y" not in z:
            raise DataError(f"{path.name} needs arrays X [N, time, channels] and y; it has {sorted(z.files)}")
        x, y = z["X"], [str(v) for v in z["y"]]
        x = x[..., None] if x.ndim == 2 else x
        if "X_test" in z:
            if "y_test" not in z:
                raise DataError(f"{path.name} has X_test but no y_test (the test series' labels)")
            xt, yt = z["X_test"], [str(v) for v in z["y_test"]]
            xt = xt[..., None] if xt.ndim == 2 else xt
            return (list(x), list(y)), (list(xt), list(yt)), f"{path.name}: X / y and X_test / y_test"
    fit, test = stratified_split(np.array(y), [test_fraction], seed)
    return (list(x[fit]), [y[i] for i in fit]), (list(x[test]), [y[i] for i in test]), \
        f"{path.name}: {test_fraction:.0%} of X held out for test (stratified, seed {seed})"


__all__ = ["TimeSeriesClassificationPlugin"]

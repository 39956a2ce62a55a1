"""Time-series fraud plugin: windows of consecutive events (or single events) -> fraud score.

Registered through the ``tlzoo.plugins`` entry point as ``timeseries-fraud``.

Data (``.npz``, see ``events.py``): ``features`` (N, F), ``labels`` (N,), optional ``time`` (used
only to order events, never as a feature), optional ``account`` (windows per account), optional
``feature_names``; or an NAB file (one stream per series). Options:

- ``window``: events per window (1 = tabular mode, the default); ``stride`` between windows.
- ``impute``: ``none`` (default: NaN / inf stop the run naming rows and columns), ``median``
  (training-split column medians) or ``zero``.
- ``sort_by_time``: sort events by time instead of stopping on out-of-order timestamps.
- ``exclude_features`` / ``features``: columns to drop / the exact columns (recorded after
  training, so inference on data missing one of them stops with its name).
- ``loss``: ``bce`` or ``focal`` (``focal_gamma``); ``class_weight`` ``balanced`` or ``none``.
- ``augment``: training-only series augmentations (jitter, scaling, magnitude_warp, time_warp,
  window_slice), ``augment_strength``.
- ``fp_budget``: the decision threshold is the lowest one whose false-positive rate on the
  validation split stays within this budget (``threshold`` as a number overrides it).
- ``train_positives``: keep only this many labelled frauds in the training split (few-label studies).
- ``report_fpr`` / ``top_k``: recall at that FPR and precision in the top-k alerts.
- ``baseline``: also fit scikit-learn's HistGradientBoostingClassifier on the same split and
  (flattened) features; both go into metrics.json and ``pr_curve.png``.

creditcard_subset.npz: the subset is all 492 frauds plus the first 6917 normal transactions, so
``time`` gives the label away (every transaction after 9188 s is a fraud) and, in time order, the
frauds cluster at the end: a window of consecutive transactions would read the label off its
neighbours. There is no account id. Use it in tabular mode (``window=1``, the default), where
each transaction is scored on its own 29 features; ``time`` is never a feature.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tlzoo.errors import DataError
from tlzoo.plugin import DomainPlugin
from tlzoo.train.schedule import FreezeSchedule, Stage
from tlzoo_timeseries.augment import AUGMENTATIONS, SeriesAugmenter

# Keras, scikit-learn and the data readers are imported where they are used: listing plugins
# should not pay for them.
if TYPE_CHECKING:
    import keras

    from tlzoo.data import DataSplits


class TimeSeriesFraudPlugin(DomainPlugin):
    """Fraud / anomaly scoring on event windows or single events, with a GBM baseline beside it."""

    name: ClassVar[str] = "timeseries-fraud"
    modality: ClassVar[str] = "timeseries"
    task: ClassVar[str] = "binary"
    default_backbone: ClassVar[str] = "ts_fcn"
    monitor: ClassVar[str] = "pr_auc"
    description: ClassVar[str] = "fraud on event windows or single events (PR-AUC, recall at FPR, GBM baseline)"
    default_options: ClassVar[dict[str, Any]] = {
        "window": 1,
        "stride": 1,
        "impute": "none",
        "sort_by_time": False,
        "features": None,
        "exclude_features": [],
        "train_positives": None,  # keep only this many labelled frauds in training (seeded; few-label studies)
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "loss": "bce",
        "focal_gamma": 2.0,
        "augment": ["jitter", "scaling"],
        "augment_strength": 1.0,
        "threshold": "fp_budget",
        "fp_budget": 0.01,
        "report_fpr": 0.01,
        "top_k": 50,
        "baseline": True,
        "dropout": 0.1,
    }
    augmentation_options: ClassVar[tuple[str, ...]] = ("augment_strength",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._center: np.ndarray | None = None
        self._scale: np.ndarray | None = None
        self._seed = 0

    # ------------------------------------------------------------------ data
    def read_data(self, source: str, *, seed: int = 0) -> DataSplits:
        from tlzoo_timeseries import events

        o = self.options
        table = events.read_table(source)
        table = events.select_features(table, o["features"], list(o["exclude_features"] or []))
        events.check_finite(table, str(o["impute"]))
        table = events.check_order(table, bool(o["sort_by_time"]))
        splits, train_rows = events.make_splits(
            table, window=int(o["window"]), seed=seed, val_fraction=float(o["val_fraction"]),
            test_fraction=float(o["test_fraction"]), impute=str(o["impute"]), stride=int(o["stride"]))
        flat = splits.train.x.reshape(-1, splits.train.x.shape[-1])  # before dropping labels: features only
        if o["train_positives"] is not None:
            splits.train = events.keep_positives(splits.train, int(o["train_positives"]), seed)
            splits.notes.append(f"training keeps {int(o['train_positives'])} labelled frauds (seed {seed})")
        # the scaler sees training features only (no labels); it is stored in the model
        self._center = flat.mean(0)
        self._scale = np.where(flat.std(0) > 0, flat.std(0), 1.0)
        self._seed = seed
        o["features"] = list(table.feature_names)  # recorded in the run config for inference
        return splits

    def check_data(self, data: DataSplits) -> None:
        super().check_data(data)
        for name in ("train", "val", "test"):
            x = data.split(name).x
            if x.ndim != 3:
                raise DataError(f"{name}: windows must be (N, time, features), got shape {x.shape}")
            if not np.isfinite(x).all():
                raise DataError(f"{name}: windows contain NaN or infinite values")

    # ------------------------------------------------------------------ model
    def input_adapter(self, inputs: Any, input_size: int) -> Any:
        """Per-feature standardisation with the training statistics, inside the model."""
        if self._center is None:
            raise DataError("read the data (read_data) before building the model: the scaler needs it")
        from tlzoo.model.layers import FeatureScaler

        return FeatureScaler(self._center, self._scale, name="feature_scaler")(inputs)

    def build_head(self, features: Any, num_classes: int) -> Any:
        import keras

        x = keras.layers.GlobalAveragePooling1D(name="head_pool")(features)
        return super().build_head(x, num_classes)

    def augmentations(self) -> list[Any]:
        names = list(self.options["augment"] or [])
        if not names or self._scale is None:
            return []
        aug = SeriesAugmenter(names, self._scale, float(self.options["augment_strength"]))
        return [_AugmentCall(aug)]

    def loss(self, num_classes: int) -> keras.losses.Loss:
        import keras

        kind = self.options["loss"]
        if kind == "focal":
            return keras.losses.BinaryFocalCrossentropy(gamma=float(self.options["focal_gamma"]))
        if kind != "bce":
            from tlzoo.errors import ConfigError

            raise ConfigError(f"loss must be 'bce' or 'focal', got {kind!r}")
        return super().loss(num_classes)

    def metrics(self, num_classes: int) -> list[Any]:
        import keras

        return [keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="auc")]

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        # Time-series backbones are small and often from scratch: BN trains with the rest (the
        # data the head sees is the data the statistics come from).
        return FreezeSchedule([Stage("head", 2, 0, 1e-3),
                               Stage("all", 15, "all", 1e-3, train_batchnorm=True, patience=5)])

    # ------------------------------------------------------------------ evaluation
    def choose_threshold(self, y_val: np.ndarray, p_val: np.ndarray) -> float:
        if self.options["threshold"] == "fp_budget":
            from tlzoo.evaluation.metrics import threshold_for_max_fpr

            return threshold_for_max_fpr(y_val, p_val, float(self.options["fp_budget"]))
        return super().choose_threshold(y_val, p_val)

    def evaluate(self, y_true: np.ndarray, probs: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
        from tlzoo_timeseries.fraud_metrics import fraud_metrics

        return fraud_metrics(y_true, probs.reshape(-1), threshold=threshold,
                             fpr=float(self.options["report_fpr"]), top_k=int(self.options["top_k"]))

    def extra_reports(self, run_dir: Any, data: DataSplits, p_val: np.ndarray, p_test: np.ndarray,
                      threshold: float) -> dict[str, Any]:
        if not self.options["baseline"]:
            return {}
        from tlzoo_timeseries.baseline import gbm_baseline, pr_curves

        base = gbm_baseline(data, seed=self._seed, choose_threshold=self.choose_threshold, evaluate=self.evaluate)
        pr_curves(data.test.y, {"model": p_test.reshape(-1), "GBM baseline": base.pop("test_probs")},
                  Path(run_dir) / "pr_curve.png")
        return {"baseline": base}


class _AugmentCall:
    """adapt calls augmentation layers as ``layer(x, training=True)``."""

    def __init__(self, fn: SeriesAugmenter) -> None:
        self.fn = fn

    def __call__(self, x: Any, training: bool = False) -> Any:
        return self.fn(x) if training else x


__all__ = ["AUGMENTATIONS", "TimeSeriesFraudPlugin"]

"""Multi-task learning: one backbone, several named heads, each with its own labels, loss, loss
weight, metrics and label mask (a sample may lack some task's label).

A task reads its labels from a per-sample array of the data (``labels``, or any other 1-D array of
an .npz such as ``site`` or ``type``), optionally mapping the source classes onto its own:

.. code-block:: yaml

    tasks:
      - {name: defect, kind: binary, classes: {MT_Free: ok, "*": defect}}     # every image
      - {name: type, kind: multiclass,                                        # defective images only
         classes: [MT_Blowhole, MT_Break, MT_Crack, MT_Fray, MT_Uneven]}

``classes`` is a list (these source classes, in order, become the task's classes; the others have
no label for this task) or a mapping source class -> task class (``"*"``: every other class;
task classes are numbered in order of first appearance). Missing labels are stored as -1 and
ignored by the task's loss and metrics.

``MultiTask`` wraps a domain plugin (it keeps the plugin's input adapter, augmentations, backbone,
freeze schedule and optimizer) and replaces what one head per task changes: the labels, the head,
the losses, the metrics and the evaluation. The adapted model returns a dict, one output per task,
and exports carry one named output per task (``tlzoo.deploy.export``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from tlzoo.data import DataSplits, Split
from tlzoo.errors import ConfigError, DataError
from tlzoo.evaluation import metrics as metrics_lib
from tlzoo.evaluation import plots
from tlzoo.extensions import calibration as calib

KINDS = ("binary", "multiclass")
MISSING = -1
WILDCARD = "*"


@dataclass
class TaskSpec:
    """One task of a multi-task run."""

    name: str
    kind: str  # binary | multiclass
    labels: str = "labels"  # the per-sample array holding this task's labels
    classes: list[str] | dict[str, str] | None = None  # source classes -> the task's (see module doc)
    loss_weight: float = 1.0
    # binary: a number or a rule chosen on validation (tlzoo.evaluation.metrics.choose_threshold)
    threshold: Any = "youden"
    class_names: list[str] = field(default_factory=list)  # filled in from the data

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"task name must be an identifier (it names the model output), got {self.name!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.loss_weight, (int, float)) and self.loss_weight > 0):
            raise ConfigError(f"task {self.name!r}: loss_weight must be > 0, got {self.loss_weight!r}")
        if self.classes is not None and not isinstance(self.classes, (list, dict)):
            raise ConfigError(f"task {self.name!r}: classes must be a list or a mapping, got {self.classes!r}")

    @classmethod
    def parse(cls, entry: "TaskSpec | dict[str, Any]") -> "TaskSpec":
        if isinstance(entry, TaskSpec):
            return entry
        if not isinstance(entry, dict) or "name" not in entry or "kind" not in entry:
            raise ConfigError(f"a task needs at least `name` and `kind` (binary | multiclass), got {entry!r}")
        known = set(cls.__dataclass_fields__) - {"class_names"}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"task {entry.get('name')!r}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**entry)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_tasks(tasks: Sequence[Any] | None) -> list[TaskSpec]:
    """Task entries (dicts from a config file, or ``TaskSpec``) -> checked specs; names unique."""
    specs = [TaskSpec.parse(t) for t in (tasks or [])]
    names = [t.name for t in specs]
    if len(specs) < 2:
        raise ConfigError(f"multi-task learning needs at least two tasks, got {names}")
    if len(set(names)) != len(names):
        raise ConfigError(f"task names must be unique, got {names}")
    return specs


# ---------------------------------------------------------------- labels


def _source_values(split: Split, key: str, class_names: list[str], task: str, where: str) -> np.ndarray:
    """The per-sample source class names of ``key`` in ``split`` (strings; "" where missing)."""
    if key == "labels":
        if split.y.ndim != 1:
            raise DataError(f"task {task!r}: {where} labels have shape {split.y.shape}; "
                            f"a task reads one label per sample")
        names = class_names or [str(i) for i in range(int(split.y.max()) + 1)]
        return np.asarray([names[int(v)] if v >= 0 else "" for v in split.y])
    if key not in split.attributes:
        available = ["labels", *sorted(split.attributes)]
        raise DataError(f"task {task!r} reads labels from {key!r}, which the {where} data lacks; "
                        f"per-sample arrays there: {available}")
    values = split.attributes[key]
    if np.issubdtype(values.dtype, np.integer):
        return np.asarray(["" if v < 0 else str(int(v)) for v in values])
    return values.astype(str)


def _task_mapping(spec: TaskSpec, observed: list[str]) -> tuple[dict[str, int], list[str]]:
    """source class -> task class index, and the task's class names."""
    if spec.classes is None:
        names = sorted(observed, key=lambda s: (len(s), s) if s.isdigit() else (0, s))
        return {n: i for i, n in enumerate(names)}, names
    if isinstance(spec.classes, list):
        names = [str(c) for c in spec.classes]
        unknown = sorted(set(names) - set(observed))
        if unknown:
            raise DataError(f"task {spec.name!r} names source class(es) {unknown} that the data's {spec.labels!r} "
                            f"does not have; it has {sorted(observed)}")
        return {n: i for i, n in enumerate(names)}, names
    names, mapping = [], {}
    for source, target in spec.classes.items():
        target = str(target)
        if target not in names:
            names.append(target)
        if source != WILDCARD and source not in observed:
            raise DataError(f"task {spec.name!r} maps source class {source!r}, which the data's {spec.labels!r} "
                            f"does not have; it has {sorted(observed)}")
        mapping[str(source)] = names.index(target)
    if WILDCARD in mapping:
        for source in observed:
            mapping.setdefault(source, mapping[WILDCARD])
        del mapping[WILDCARD]
    return mapping, names


def task_labels(data: DataSplits, tasks: list[TaskSpec]) -> DataSplits:
    """``data`` with each split's ``y`` replaced by an (N, tasks) int array, -1 where a sample has no
    label for a task; fills in each task's ``class_names``."""
    splits = {name: data.split(name) for name in ("train", "val", "test")}
    columns: dict[str, list[np.ndarray]] = {name: [] for name in splits}
    for spec in tasks:
        values = {name: _source_values(s, spec.labels, data.class_names, spec.name, name) for name, s in splits.items()}
        observed = sorted({v for vals in values.values() for v in vals if v != ""})
        mapping, spec.class_names = _task_mapping(spec, observed)
        if spec.kind == "binary" and len(spec.class_names) != 2:
            raise DataError(f"task {spec.name!r} is binary but has {len(spec.class_names)} classes "
                            f"{spec.class_names}; map the source classes onto two (classes: {{A: neg, '*': pos}})")
        for name, vals in values.items():
            columns[name].append(np.asarray([mapping.get(v, MISSING) for v in vals], np.int64))
    for name, split in splits.items():
        split.y = np.stack(columns[name], axis=1)
    data.notes.append("multi-task labels: " + "; ".join(
        f"{t.name} ({t.kind}, from {t.labels!r}: {t.class_names})" for t in tasks))
    return data


# ---------------------------------------------------------------- losses and metrics


class MaskedTaskLoss(keras.losses.Loss):
    """A task's cross-entropy averaged over the samples that have its label (y >= 0), times its
    loss weight; samples without a label add nothing, to the loss or its gradient."""

    def __init__(self, kind: str, class_weights: Sequence[float] | None = None, weight: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__(name=name or f"masked_{kind}_crossentropy")
        self.kind, self.weight = kind, float(weight)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float32)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        ops = keras.ops
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        mask = ops.cast(y_true >= 0, "float32")
        y = ops.where(y_true >= 0, y_true, 0)
        if self.kind == "binary":
            per = keras.losses.binary_crossentropy(ops.cast(ops.expand_dims(y, -1), "float32"),
                                                   ops.reshape(y_pred, (-1, 1)))
        else:
            per = keras.losses.sparse_categorical_crossentropy(y, y_pred)
        weights = mask if self.class_weights is None else mask * ops.take(self.class_weights, y)
        return self.weight * ops.sum(per * weights) / ops.maximum(ops.sum(mask), 1.0)


def _masked(metric_cls: type) -> type:
    """``metric_cls`` updated only on samples that have a label (y >= 0)."""

    class Masked(metric_cls):  # type: ignore[misc, valid-type]
        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
            ops = keras.ops
            y_true = ops.reshape(y_true, (-1,))
            mask = ops.cast(y_true >= 0, "float32")
            y = ops.where(y_true >= 0, y_true, ops.zeros_like(y_true))
            return super().update_state(y, y_pred, sample_weight=mask)

    Masked.__name__ = Masked.__qualname__ = f"Masked{metric_cls.__name__}"
    return Masked


MaskedAUC = _masked(keras.metrics.AUC)
MaskedBinaryAccuracy = _masked(keras.metrics.BinaryAccuracy)
MaskedSparseCategoricalAccuracy = _masked(keras.metrics.SparseCategoricalAccuracy)


def _balanced_weights(y: np.ndarray, k: int) -> list[float]:
    y = y[y >= 0]
    counts = np.bincount(y, minlength=k).astype(float)
    counts[counts == 0] = 1
    return (len(y) / (k * counts)).tolist()


# ---------------------------------------------------------------- the plugin wrapper


class MultiTask:
    """A domain plugin with one head per task. Everything not defined here is the plugin's."""

    task = "multitask"
    monitor = "loss"  # the weighted sum of the tasks' losses on validation
    monitor_mode = "min"

    def __init__(self, plugin: Any, tasks: Sequence[Any]) -> None:
        if plugin.custom_recipe() is not None:
            raise ConfigError(f"plugin {plugin.name!r} in its current mode has its own recipe (no gradient training); "
                              f"multi-task heads need the standard recipe")
        if plugin.modality != "image":
            raise ConfigError(f"multi-task heads are built for image plugins; {plugin.name!r} is {plugin.modality}")
        self.plugin = plugin
        self.tasks = parse_tasks(tasks)
        self._class_weights: dict[str, list[float] | None] = {}

    def __getattr__(self, name: str) -> Any:  # the plugin's adapter, augmentations, schedule, options ...
        return getattr(self.plugin, name)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def curve_metrics(self) -> list[str]:
        """The per-task metric plotted beside the loss in learning_curves.png."""
        return [f"{t.name}_auc" if t.kind == "binary" else f"{t.name}_accuracy" for t in self.tasks]

    def describe(self) -> dict[str, Any]:
        return {**self.plugin.describe(), "task": self.task, "tasks": [t.to_dict() for t in self.tasks]}

    # ------------------------------------------------------------ data
    def read_data(self, source: str, *, seed: int = 0, **kw: Any) -> DataSplits:
        return task_labels(self.plugin.read_data(source, seed=seed, **kw), self.tasks)

    def num_classes(self, data: DataSplits) -> int:
        return len(self.tasks)

    def check_data(self, data: DataSplits) -> None:
        for split_name in ("train", "val", "test"):
            s = data.split(split_name)
            if len(s) == 0:
                raise DataError(f"the {split_name} split of {data.source} is empty")
            for i, spec in enumerate(self.tasks):
                present = np.unique(s.y[:, i][s.y[:, i] >= 0])
                if present.size < 2:
                    raise DataError(f"task {spec.name!r}: the {split_name} split has labels of "
                                    f"{present.size} class(es) "
                                    f"{[spec.class_names[int(c)] for c in present]}; training and evaluation need two")
        self.plugin.check_images(data)

    def strata(self, y: np.ndarray) -> np.ndarray:
        """One stratum per combination of task labels (stratified label subsampling)."""
        return np.unique(y, axis=0, return_inverse=True)[1].reshape(-1)

    def training_targets(self, y: np.ndarray) -> dict[str, np.ndarray]:
        return {t.name: y[:, i] for i, t in enumerate(self.tasks)}

    # ------------------------------------------------------------ model
    def build_head(self, features: Any, num_classes: int) -> dict[str, Any]:
        """Shared pooled features (and dropout) -> one Dense output per task, named after it."""
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features) if len(features.shape) == 4 else features
        if self.plugin.options["hidden_units"]:
            x = keras.layers.Dense(int(self.plugin.options["hidden_units"]), activation="relu", name="head_hidden")(x)
        if self.plugin.options["dropout"]:
            x = keras.layers.Dropout(float(self.plugin.options["dropout"]), name="head_dropout")(x)
        out = {}
        for t in self.tasks:
            units, activation = (1, "sigmoid") if t.kind == "binary" else (len(t.class_names), "softmax")
            out[t.name] = keras.layers.Dense(units, activation=activation, name=t.name, dtype="float32")(x)
        return out

    def class_weights(self, labels: np.ndarray, num_classes: int) -> None:
        """Balanced class weights per task, applied inside each task's loss (Keras' ``class_weight`` is for
        single-output models); returns None for ``fit``."""
        balanced = self.plugin.options["class_weight"] not in (None, "none")
        self._class_weights = {t.name: _balanced_weights(labels[:, i], len(t.class_names)) if balanced else None
                               for i, t in enumerate(self.tasks)}
        return None

    def loss(self, num_classes: int) -> dict[str, keras.losses.Loss]:
        return {t.name: MaskedTaskLoss(t.kind, self._class_weights.get(t.name), t.loss_weight, name=f"{t.name}_loss")
                for t in self.tasks}

    def metrics(self, num_classes: int) -> dict[str, list[Any]]:
        return {t.name: ([MaskedAUC(name="auc"), MaskedBinaryAccuracy(name="accuracy")] if t.kind == "binary"
                         else [MaskedSparseCategoricalAccuracy(name="accuracy")]) for t in self.tasks}

    # ------------------------------------------------------------ evaluation
    def evaluate(self, y_true: np.ndarray, probs: dict[str, np.ndarray], *,
                 threshold: dict[str, float] | float = 0.5) -> dict[str, Any]:
        """Per task, on the samples that have its label: the plugin's metrics for that kind of task."""
        out = {}
        for i, t in enumerate(self.tasks):
            has = y_true[:, i] >= 0
            p = np.asarray(probs[t.name])[has]
            thr = threshold.get(t.name, 0.5) if isinstance(threshold, dict) else threshold
            if t.kind == "binary":
                out[t.name] = metrics_lib.binary_metrics(y_true[has, i], p.reshape(-1), float(thr))
            else:
                out[t.name] = metrics_lib.multiclass_metrics(y_true[has, i], p)
            out[t.name]["n_labelled"] = int(has.sum())
        return out

    def score(self, run_dir: Path, model: keras.Model, data: DataSplits, calibration: str,
              batch_size: int) -> tuple[dict[str, Any], keras.Model, dict[str, np.ndarray]]:
        """Validation and test metrics per task after per-task temperature scaling (fitted on validation),
        thresholds chosen on validation; the metrics, the model to save, and the test probabilities."""
        p_val = model.predict(data.val.x, batch_size=batch_size, verbose=0)
        p_test = model.predict(data.test.x, batch_size=batch_size, verbose=0)
        temperatures, reports, thresholds = {}, {}, {}
        for i, t in enumerate(self.tasks):
            has_val, has_test = data.val.y[:, i] >= 0, data.test.y[:, i] >= 0
            if calibration != "none":
                temperatures[t.name], reports[t.name] = calib.calibration_report(
                    data.val.y[has_val, i], np.asarray(p_val[t.name])[has_val],
                    data.test.y[has_test, i], np.asarray(p_test[t.name])[has_test], t.kind, calibration)
                layer = calib.TemperatureScaling(temperatures[t.name], t.kind)
                p_val[t.name], p_test[t.name] = np.asarray(layer(p_val[t.name])), np.asarray(layer(p_test[t.name]))
            thresholds[t.name] = (metrics_lib.choose_threshold(t.threshold, data.val.y[has_val, i],
                                                               np.asarray(p_val[t.name])[has_val].reshape(-1))
                                  if t.kind == "binary" else 0.5)
        if temperatures:
            model = calibrated_multitask_model(model, temperatures, {t.name: t.kind for t in self.tasks})
        test = self.evaluate(data.test.y, p_test, threshold=thresholds)
        val = self.evaluate(data.val.y, p_val, threshold=thresholds)
        for t in self.tasks:
            has = data.test.y[:, self.names.index(t.name)] >= 0
            y, p = data.test.y[has, self.names.index(t.name)], np.asarray(p_test[t.name])[has]
            title = f"{t.name}: test" + (f", threshold {thresholds[t.name]:.3g}" if t.kind == "binary" else "")
            plots.confusion_matrix(test[t.name]["confusion_matrix"], t.class_names,
                                   run_dir / f"confusion_matrix_{t.name}.png", title=title)
            if t.kind == "binary":
                plots.roc_curve(y, p.reshape(-1), run_dir / f"roc_curve_{t.name}.png", title=f"{t.name}: test ROC")
        metrics = {"test": test, "val": val, "tasks": [t.to_dict() for t in self.tasks],
                   "threshold_policy": {t.name: t.threshold if t.kind == "binary" else "argmax" for t in self.tasks},
                   "calibration": ({"method": calibration, "per_task": reports} if temperatures else None),
                   "class_names": {t.name: t.class_names for t in self.tasks}}
        return metrics, model, {t.name: np.asarray(p_test[t.name]) for t in self.tasks}


def calibrated_multitask_model(model: keras.Model, temperatures: dict[str, float],
                               kinds: dict[str, str]) -> keras.Model:
    """``model`` with a TemperatureScaling layer on each task's output (outputs keep the task names)."""
    outputs = {name: calib.TemperatureScaling(temperatures[name], kinds[name], name=f"{name}_calibrated")(tensor)
               for name, tensor in model.output.items()}
    return keras.Model(model.inputs, outputs, name=model.name)


def is_multitask(plugin: Any) -> bool:
    return isinstance(plugin, MultiTask)

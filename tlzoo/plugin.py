"""The domain-plugin contract and plugin discovery.

A plugin is a small class: it declares its domain's task, default backbone and size, and
overrides only what its domain does differently (head, augmentations, loss, metrics,
freeze schedule, data reading, evaluation). Plugins register in-process with
``@register_plugin`` or, from an installed package, through the ``tlzoo.plugins`` entry-point
group (first-party plugins use that group too).

Importing this module (and a plugin class) does not import Keras or TensorFlow: ``tlzoo plugins``
lists plugins without them. Keras is imported in the methods that build layers, losses and metrics;
a plugin should do the same (or keep Keras-dependent code in a submodule it imports lazily).
"""
from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from tlzoo.errors import ConfigError, DataError, NotFoundError
from tlzoo.registry import Registry
from tlzoo.train.schedule import FreezeSchedule

if TYPE_CHECKING:
    import keras

    from tlzoo.data import DataSplits

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tlzoo.plugins"
TASKS = ("binary", "multiclass", "multilabel")

PLUGINS: Registry[type["DomainPlugin"]] = Registry("plugin")


class DomainPlugin:
    """Base class of domain plugins. Subclass, set the class attributes, override what differs.

    ``options`` are plugin-specific settings with defaults in ``default_options``; any key a
    user passes that is not there is an error (no silent typos).
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = "image"
    task: ClassVar[str] = "multiclass"
    default_backbone: ClassVar[str] = "mobilenet_v2"
    default_input_size: ClassVar[int | None] = None  # None: the backbone's default size
    monitor: ClassVar[str] = "auc"  # Keras metric name; "val_" is prepended for early stopping
    monitor_mode: ClassVar[str] = "max"
    description: ClassVar[str] = ""
    default_options: ClassVar[dict[str, Any]] = {
        "dropout": 0.2,
        "hidden_units": 0,  # 0: linear head on pooled features
        "class_weight": "balanced",  # "balanced" or "none"
        "threshold": 0.5,  # binary: a number, or chosen on validation: youden | sensitivity:X | fpr:X | cost:X
        "label_smoothing": 0.0,
        "optimizer": "adamw",
        "weight_decay": 1e-4,
    }

    def __init__(self, **options: Any) -> None:
        defaults = self.all_default_options()
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise ConfigError(
                f"plugin {self.name!r} has no option(s) {unknown}; options: {sorted(defaults)}"
            )
        self.options: dict[str, Any] = {**defaults, **options}
        if not isinstance(getattr(type(self), "monitor", None), property):  # a plugin may compute it
            self.monitor = self.resolved_monitor()  # type: ignore[misc]

    @classmethod
    def resolved_monitor(cls) -> str:
        """The monitor the plugin declares, or when it declares none, the task's: ``accuracy`` for a multiclass
        plugin (the default metrics have no AUC for it), else ``auc``."""
        if not isinstance(cls.monitor, str):  # a property computed per instance: the class cannot say
            return DomainPlugin.monitor
        declared = any("monitor" in k.__dict__ for k in cls.__mro__[:cls.__mro__.index(DomainPlugin)])
        return cls.monitor if declared or cls.task != "multiclass" else "accuracy"

    @classmethod
    def all_default_options(cls) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(getattr(klass, "default_options", {}) or {})
        return merged

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "modality": cls.modality,
            "task": cls.task,
            "default_backbone": cls.default_backbone,
            "default_input_size": cls.default_input_size,
            "monitor": cls.resolved_monitor(),
            "options": cls.all_default_options(),
            "description": cls.description,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            **({"source_file": _source_file(cls)} if not _is_installed(cls) else {}),
        }

    # ------------------------------------------------------------------ data
    def read_data(self, source: str, *, seed: int = 0, options: dict[str, Any] | None = None) -> DataSplits:
        """Read a data source into train / val / test splits (``options``: ``tlzoo.data.DataOptions``
        fields, for file sources)."""
        from tlzoo.data import read_source

        return read_source(source, seed=seed, options=options)

    def num_classes(self, data: DataSplits) -> int:
        if self.task == "binary":
            return 2
        if data.class_names:
            return len(data.class_names)
        if data.train.y.ndim == 2:
            return int(data.train.y.shape[1])
        return int(max(s.y.max() for s in (data.train, data.val, data.test)) + 1)

    def check_data(self, data: DataSplits) -> None:
        """Stop early, with the offending value, on data this plugin cannot learn from."""
        k = self.num_classes(data)
        for split_name in ("train", "val", "test"):
            s = data.split(split_name)
            if len(s) == 0:
                raise DataError(f"the {split_name} split of {data.source} is empty")
            if len(s.x) != len(s.y):
                raise DataError(f"{split_name}: {len(s.x)} samples but {len(s.y)} labels")
            if self.task == "multilabel":
                bad = np.setdiff1d(np.unique(s.y), [0, 1])
                if bad.size:
                    raise DataError(f"{split_name}: multilabel targets must be 0/1, found {bad[:5].tolist()}")
                continue
            if s.y.ndim != 1:
                raise DataError(f"{split_name}: expected one class label per sample, got labels of shape {s.y.shape}")
            bad = np.setdiff1d(np.unique(s.y), np.arange(k))
            if bad.size:
                raise DataError(
                    f"{split_name}: label values {bad[:5].tolist()} are outside the plugin's classes "
                    f"0..{k - 1} ({self.name} is a {self.task} plugin)"
                )
            present = np.unique(s.y)
            if present.size < 2:
                raise DataError(
                    f"the {split_name} split has only one class ({int(present[0])}); "
                    f"{self.task} training and evaluation need at least two"
                )
        if self.modality == "image":
            self.check_images(data)

    def check_images(self, data: DataSplits) -> None:
        shapes = set()
        for split_name in ("train", "val", "test"):
            x = data.split(split_name).x
            if x.ndim != 4:
                raise DataError(f"{split_name}: images must be (N, H, W, C), got shape {x.shape}")
            if x.shape[-1] not in (1, 3):
                raise DataError(f"{split_name}: images must have 1 or 3 channels, got {x.shape[-1]}")
            if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
                raise DataError(f"{split_name}: images contain NaN or infinite values")
            shapes.add(x.shape[-1])
        if len(shapes) > 1:
            raise DataError(f"splits disagree on the channel count: {sorted(shapes)}")

    # ------------------------------------------------------------------ model
    def output_units(self, num_classes: int) -> int:
        return 1 if self.task == "binary" else num_classes

    def adjust_backbone(self, backbone: keras.Model, spec: Any) -> keras.Model | None:
        """Called once with the backbone just built (pretrained weights loaded), before the head is added and
        before its layer groups are read: change it in place (a BatchNormalization momentum, a regulariser) and
        return None, or return a model to use instead. Default: unchanged."""
        return None

    def input_adapter(self, inputs: Any, input_size: int) -> Any:
        """Raw images -> what the backbone expects (float32, 3 channels, backbone size); series pass as they
        are (a time-series plugin scales its features here, e.g. with ``tlzoo.model.layers.FeatureScaler``)."""
        import keras

        from tlzoo.model.layers import CastToFloat32

        x = CastToFloat32(name="to_float32")(inputs)
        if self.modality == "timeseries":
            return x
        if inputs.shape[-1] == 1:
            x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
        return keras.layers.Resizing(input_size, input_size, name="resize")(x)

    def build_head(self, features: Any, num_classes: int) -> Any:
        """Pooled backbone features -> predictions (sigmoid for binary / multilabel, softmax)."""
        import keras

        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features) if len(features.shape) == 4 else features
        if self.options["hidden_units"]:
            x = keras.layers.Dense(int(self.options["hidden_units"]), activation="relu", name="head_hidden")(x)
        if self.options["dropout"]:
            x = keras.layers.Dropout(float(self.options["dropout"]), name="head_dropout")(x)
        activation = "softmax" if self.task == "multiclass" else "sigmoid"
        return keras.layers.Dense(self.output_units(num_classes), activation=activation, name="probabilities",
                                  dtype="float32")(x)

    def augmentations(self) -> list[keras.layers.Layer]:
        """Training-only augmentation layers, applied to raw-resolution float images."""
        return []

    def custom_recipe(self) -> Any:
        """``None`` (the standard ``adapt`` recipe), or a callable ``recipe(config) -> RunResult`` that
        ``adapt`` hands the run to instead, for a mode that is not gradient training (e.g. anomaly
        detection from a memory bank). It must write a complete run directory atomically."""
        return None

    def loss(self, num_classes: int) -> keras.losses.Loss:
        import keras

        smoothing = float(self.options["label_smoothing"])
        if self.task == "multiclass":
            if smoothing:
                raise ConfigError("label_smoothing needs one-hot labels; "
                                  "not supported for multiclass integer labels yet")
            return keras.losses.SparseCategoricalCrossentropy()
        return keras.losses.BinaryCrossentropy(label_smoothing=smoothing)

    def metrics(self, num_classes: int) -> list[Any]:
        """Keras metrics tracked while training (the monitor metric among them)."""
        import keras

        if self.task == "binary":
            return [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
        if self.task == "multilabel":
            return [keras.metrics.AUC(name="auc", multi_label=True, num_labels=num_classes)]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def class_weights(self, labels: np.ndarray, num_classes: int) -> dict[int, float] | None:
        if self.options["class_weight"] in (None, "none") or self.task == "multilabel":
            return None
        counts = np.bincount(labels.astype(int), minlength=num_classes).astype(float)
        counts[counts == 0] = 1
        weights = len(labels) / (num_classes * counts)
        return {i: float(w) for i, w in enumerate(weights)}

    def freeze_schedule(self, backbone_groups: int) -> FreezeSchedule:
        """The plugin's default schedule (given the backbone's number of layer groups)."""
        return FreezeSchedule.fine_tune(epochs=8, freeze_epochs=2, base_lr=2e-3)

    # Options that ``augment_strength`` in a search space multiplies (numeric augmentation magnitudes).
    augmentation_options: ClassVar[tuple[str, ...]] = ()

    def search_space(self) -> dict[str, dict[str, Any]]:
        """Hyperparameters a ``tlzoo tune`` search explores, one entry per name:
        ``{"choice": [...]}``, ``{"fixed": v}`` or ``{"min": a, "max": b, "sampling": "log"|"linear", "step": s}``.
        Names are plugin options or the tuner's own (backbone, unfreeze_groups, learning_rate, epochs,
        head_epochs, augment_strength). Override to change the defaults; a YAML file overrides both."""
        space: dict[str, dict[str, Any]] = {
            "backbone": {"choice": [self.default_backbone]},
            "unfreeze_groups": {"choice": [0, 1, 2]},  # 0: frozen backbone (cached-feature fast path)
            "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
            "weight_decay": {"min": 1e-6, "max": 1e-3, "sampling": "log"},
            "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
            "hidden_units": {"choice": [0, 128, 256]},
            "epochs": {"fixed": 5},
        }
        if self.task != "multiclass":
            space["label_smoothing"] = {"choice": [0.0, 0.1]}
        if self.augmentation_options:
            space["augment_strength"] = {"choice": [0.5, 1.0, 1.5]}
        return space

    # ------------------------------------------------------------------ evaluation
    def choose_threshold(self, y_val: np.ndarray, p_val: np.ndarray) -> float:
        """The binary decision threshold from the ``threshold`` option (see ``metrics.choose_threshold``)."""
        if self.task != "binary":
            return 0.5
        from tlzoo.evaluation import metrics as metrics_lib

        return metrics_lib.choose_threshold(self.options["threshold"], y_val, p_val)

    def check_threshold_option(self) -> None:
        """The threshold option, tried on a tiny made-up validation set: a bad policy (``sensitivity:1.5``)
        is refused before any data is read, not after training."""
        if self.task != "binary":
            return
        try:
            self.choose_threshold(np.array([0, 1, 0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7]))
        except ConfigError as exc:
            raise ConfigError(f"plugin {self.name!r} option threshold={self.options.get('threshold')!r}: {exc}") \
                from None

    def extra_reports(self, run_dir: Any, data: DataSplits, p_val: np.ndarray, p_test: np.ndarray,
                      threshold: float) -> dict[str, Any]:
        """After training: write extra files into the run directory and return entries added to
        ``metrics.json`` (e.g. a baseline on the same split). Default: nothing."""
        return {}

    def evaluate(self, y_true: np.ndarray, probs: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
        """Final metrics on numpy predictions (test split)."""
        from tlzoo.evaluation import metrics as metrics_lib

        if self.task == "binary":
            return metrics_lib.binary_metrics(y_true, probs.reshape(-1), threshold)
        if self.task == "multilabel":
            return metrics_lib.multilabel_metrics(y_true, probs, threshold)
        return metrics_lib.multiclass_metrics(y_true, probs)


def _is_installed(cls: type) -> bool:
    """Whether a plugin class comes from an importable package (not a script run as ``__main__``)."""
    return cls.__module__ != "__main__" and not cls.__module__.startswith("tlzoo_plugin_module_")


def _source_file(cls: type) -> str | None:
    import inspect

    try:
        found = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
    return str(Path(found).resolve()) if found else None


def register_plugin(cls: type[DomainPlugin] | None = None, *, replace: bool = False) -> Any:
    """Class decorator: ``@register_plugin`` makes a plugin available by its ``name``."""

    def wrap(klass: type[DomainPlugin]) -> type[DomainPlugin]:
        _validate_plugin_class(klass)
        PLUGINS.register(klass.name, klass, replace=replace)
        return klass

    return wrap(cls) if cls is not None else wrap


def _validate_plugin_class(klass: Any) -> None:
    if not (isinstance(klass, type) and issubclass(klass, DomainPlugin)):
        raise ConfigError(f"{klass!r} is not a DomainPlugin subclass")
    if not klass.name:
        raise ConfigError(f"plugin class {klass.__qualname__} sets no `name`")
    if klass.task not in TASKS:
        raise ConfigError(f"plugin {klass.name!r}: task must be one of {TASKS}, got {klass.task!r}")


_discovered = False
DISCOVERY_ERRORS: dict[str, str] = {}


def discover_plugins(force: bool = False) -> None:
    """Load every plugin advertised in the ``tlzoo.plugins`` entry-point group."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in PLUGINS:
            continue
        try:
            klass = ep.load()
            _validate_plugin_class(klass)
            if klass.name != ep.name:
                raise ConfigError(f"entry point {ep.name!r} loads a plugin named {klass.name!r}")
            PLUGINS.register(klass.name, klass, replace=True)
        except Exception as exc:  # one broken package must not hide the others
            DISCOVERY_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %r (%s) failed to load: %s", ep.name, ep.value, exc)


def get_plugin(name: str, **options: Any) -> DomainPlugin:
    """An instance of the plugin registered as ``name``, configured with ``options``."""
    discover_plugins()
    if name in DISCOVERY_ERRORS and name not in PLUGINS:
        raise ConfigError(f"plugin {name!r} is installed but failed to load: {DISCOVERY_ERRORS[name]}")
    return PLUGINS.get(name)(**options)


def import_plugin_module(ref: str) -> None:
    """Import a module (dotted name) or a ``.py`` file for the plugins it registers with ``@register_plugin``.
    A file is imported under its own name, not as ``__main__``: work it guards with
    ``if __name__ == "__main__":`` does not run again."""
    import hashlib
    import importlib
    import importlib.util
    import sys

    path = Path(ref).expanduser()
    if ref.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"plugin module file {ref!r} does not exist")
        path = path.resolve()
        # one module per file (two plug.py in different folders stay apart); a file imported before is not re-run
        module_name = f"tlzoo_plugin_module_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if module_name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import {ref!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.parent))  # the script's own helper modules beside it
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ConfigError(f"importing plugin module {ref!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(str(path.parent))
        return
    if "" not in sys.path and str(Path.cwd()) not in sys.path:  # `tlzoo` is a console script: add the cwd
        sys.path.append(str(Path.cwd()))
    try:
        importlib.import_module(ref)
    except ImportError as exc:
        raise ConfigError(f"cannot import plugin module {ref!r}: {exc}") from exc


def plugin_for_run(recorded_plugin: dict[str, Any], name: str, **options: Any) -> DomainPlugin:
    """``get_plugin`` for a run that was made earlier: when its plugin is not registered here, the error says
    which class (and script) made the run and how to make it available."""
    try:
        return get_plugin(name, **options)
    except NotFoundError:
        if name in PLUGINS:
            raise
        made_by = recorded_plugin.get("class") or "an unrecorded class"
        script = recorded_plugin.get("source_file")
        raise ConfigError(
            f"plugin {name!r} is not registered here; the run was made with {made_by}"
            + (f" from {script}" if script else "")
            + f". Make it available: `tlzoo --plugin-module {script or 'MODULE_OR_FILE'} ...` (for a plugin "
              f"registered with @register_plugin in a script or module), or install it as a package with a "
              f"'{ENTRY_POINT_GROUP}' entry point"
        ) from None


def list_plugins() -> list[str]:
    discover_plugins()
    return PLUGINS.names()


def plugin_classes(names: Sequence[str] | None = None) -> list[type[DomainPlugin]]:
    discover_plugins()
    return [PLUGINS.get(n) for n in (names or PLUGINS.names())]

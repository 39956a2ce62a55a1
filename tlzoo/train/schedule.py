"""Freeze schedules and layer-wise learning rates, both derived from a backbone's layer groups.

A schedule is a list of stages. Each stage says how many layer groups, counted from the top
of the backbone, are trainable (0 = head only, "all" = everything), for how many epochs,
at which learning rate, and how fast the learning rate decays per group going down
(discriminative / layer-wise learning rates: group ``k`` below the top trainable one gets
``lr * lr_decay ** (k + 1)``; the head gets ``lr``).

BatchNormalization layers of the backbone keep ``trainable = False`` unless a stage asks
otherwise: in Keras 3, ``fit`` calls the model with ``training=True``, which overrides a
nested ``training=False``; a BN layer stays in inference mode only while its own
``trainable`` is False (keras-team/keras#20285).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from tlzoo.compat import optimizer_variable_index
from tlzoo.errors import ConfigError
from tlzoo.zoo.spec import LayerGroup

if TYPE_CHECKING:  # Keras is imported where a schedule meets a model: plugins declare schedules without it
    import keras

SCHEDULE_KINDS = ("feature_extraction", "top", "full", "gradual", "fine_tune")


@dataclass
class Stage:
    """One stage of a freeze schedule."""

    name: str
    epochs: int
    trainable: int | str = 0  # top layer groups trainable: 0 = head only, "all" = all groups
    learning_rate: float = 1e-3
    lr_decay: float = 1.0  # per-group multiplier going down from the top trainable group
    schedule: str = "cosine"  # "cosine" or "constant" within the stage
    warmup_epochs: int = 0
    train_batchnorm: bool = False
    patience: int | None = None  # early stopping on the plugin's monitor metric

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"stage {self.name!r}: epochs must be >= 0, got {self.epochs}")
        if not (isinstance(self.trainable, int) and self.trainable >= 0) and self.trainable != "all":
            raise ConfigError(
                f"stage {self.name!r}: trainable must be a group count >= 0 or 'all', "
                f"got {self.trainable!r}"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"stage {self.name!r}: learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"stage {self.name!r}: lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"stage {self.name!r}: schedule must be 'cosine' or 'constant', got {self.schedule!r}")


@dataclass
class FreezeSchedule:
    """An ordered list of stages, built by the classmethods for the usual recipes."""

    stages: list[Stage] = field(default_factory=list)

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FreezeSchedule":
        if "stages" in data:
            return cls([Stage(**s) for s in data["stages"]])
        params = dict(data)
        kind = params.pop("kind", None)
        return cls.named(kind, **params)

    @classmethod
    def named(cls, kind: str | None, **params: Any) -> "FreezeSchedule":
        if kind not in SCHEDULE_KINDS:
            raise ConfigError(f"unknown freeze schedule {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
        try:
            return getattr(cls, kind)(**params)
        except TypeError as exc:
            raise ConfigError(f"bad parameters for schedule {kind!r}: {exc}") from None

    def adjusted(self, epochs: int | None = None, head_epochs: int | None = None, lr: float | None = None,
                 lr_decay: float | None = None, patience: int | None = None) -> "FreezeSchedule":
        """This schedule (a plugin's default) with the usual knobs changed, as ``--epochs`` and friends do
        without ``--schedule``. The leading head-only stage is the head; the stages after it are the
        fine-tuning: ``epochs`` is their total (spread in proportion), ``lr`` / ``lr_decay`` their learning
        rate and decay, ``patience`` the last stage's. A schedule with no fine-tuning stage (feature
        extraction) takes ``epochs`` and ``lr`` on its head stage."""
        for name, value, kind in (("epochs", epochs, int), ("head_epochs", head_epochs, int),
                                  ("patience", patience, int), ("lr", lr, float), ("lr_decay", lr_decay, float)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise ConfigError(f"schedule {name} must be {'a number' if kind is float else 'an integer'}, "
                                  f"got {value!r}")
        if epochs is not None and epochs < 1:
            raise ConfigError(f"schedule epochs must be >= 1, got {epochs}")
        if head_epochs is not None and head_epochs < 0:
            raise ConfigError(f"schedule head_epochs must be >= 0, got {head_epochs}")
        stages = list(self.stages)
        has_head = bool(stages) and stages[0].trainable == 0
        head, rest = (stages[:1], stages[1:]) if has_head else ([], stages)
        if not rest:  # feature extraction: the head stage is all there is
            rest, head = head, []
            if head_epochs is not None:
                raise ConfigError("head_epochs adjusts the head stage before fine-tuning; this schedule only trains "
                                  "the head: use epochs")
        if head_epochs is not None:
            head = ([dataclasses.replace(head[0], epochs=head_epochs)] if head else
                    [Stage("head", head_epochs, 0, 1e-3)]) if head_epochs else []
        if epochs is not None:
            total = sum(s.epochs for s in rest) or len(rest)
            shares = [max(1, round(epochs * (s.epochs or 1) / total)) for s in rest]
            shares[-1] = max(1, epochs - sum(shares[:-1]))
            rest = [dataclasses.replace(s, epochs=n, warmup_epochs=min(s.warmup_epochs, max(n - 1, 0)))
                    for s, n in zip(rest, shares)]
        changes = {k: v for k, v in (("learning_rate", lr), ("lr_decay", lr_decay)) if v is not None}
        rest = [dataclasses.replace(s, **changes) for s in rest]
        if patience is not None:
            rest[-1] = dataclasses.replace(rest[-1], patience=patience)
        return FreezeSchedule(head + rest)

    def within_budget(self, n_train: int, max_samples_seen: int | None) -> "FreezeSchedule":
        """This schedule with every stage's epochs scaled down (each kept >= 1) so that training sees
        about ``max_samples_seen`` samples at most: a fixed compute budget, as when comparing label
        budgets (more data, fewer epochs). Unchanged when already within it or without a budget."""
        if max_samples_seen is None:
            return self
        if max_samples_seen < 1:
            raise ConfigError(f"max_samples_seen must be >= 1, got {max_samples_seen}")
        factor = max_samples_seen / max(1, n_train * self.total_epochs)
        if factor >= 1:
            return self
        stages = []
        for s in self.stages:
            epochs = max(1, round(s.epochs * factor)) if s.epochs else 0
            stages.append(dataclasses.replace(s, epochs=epochs, warmup_epochs=min(s.warmup_epochs, epochs - 1)))
        return FreezeSchedule(stages)

    def with_batchnorm_training(self) -> "FreezeSchedule":
        """Every stage with ``train_batchnorm=True``: for a randomly initialised backbone, whose
        BatchNormalization layers have no pretrained statistics to keep (frozen, they would stay the
        identity with mean 0 / variance 1, and the network would train without normalisation)."""
        return FreezeSchedule([dataclasses.replace(s, train_batchnorm=True) for s in self.stages])

    @classmethod
    def feature_extraction(cls, epochs: int = 10, lr: float = 1e-3, patience: int | None = None) -> "FreezeSchedule":
        """Backbone frozen; only the head trains."""
        return cls([Stage("head", epochs, 0, lr, patience=patience)])

    @classmethod
    def top(
        cls, groups: int, epochs: int = 10, lr: float = 1e-4, head_epochs: int = 3,
        head_lr: float = 1e-3, lr_decay: float = 1.0, patience: int | None = None,
    ) -> "FreezeSchedule":
        """Train the head, then retrain the top ``groups`` layer groups with it."""
        stages = [Stage("head", head_epochs, 0, head_lr)] if head_epochs else []
        stages.append(Stage(f"top{groups}", epochs, groups, lr, lr_decay, warmup_epochs=1 if epochs > 2 else 0,
                            patience=patience))
        return cls(stages)

    @classmethod
    def full(
        cls, epochs: int = 10, lr: float = 1e-4, head_epochs: int = 3, head_lr: float = 1e-3,
        lr_decay: float = 1.0, patience: int | None = None,
    ) -> "FreezeSchedule":
        """Train the head, then fine-tune the whole network (global fine-tuning)."""
        stages = [Stage("head", head_epochs, 0, head_lr)] if head_epochs else []
        stages.append(Stage("all", epochs, "all", lr, lr_decay, warmup_epochs=1 if epochs > 2 else 0,
                            patience=patience))
        return cls(stages)

    @classmethod
    def gradual(
        cls, steps: int = 3, groups_per_step: int = 2, epochs_per_step: int = 2, lr: float = 1e-4,
        head_epochs: int = 2, head_lr: float = 1e-3, lr_decay: float = 1.0,
        final_all: bool = True, final_epochs: int = 0, patience: int | None = None,
    ) -> "FreezeSchedule":
        """Gradual unfreezing (ULMFiT): head, then ``groups_per_step`` more groups per stage."""
        stages = [Stage("head", head_epochs, 0, head_lr)] if head_epochs else []
        for i in range(1, steps + 1):
            stages.append(Stage(f"top{i * groups_per_step}", epochs_per_step, i * groups_per_step, lr, lr_decay))
        if final_all:
            stages.append(Stage("all", final_epochs or epochs_per_step, "all", lr, lr_decay, patience=patience))
        return cls(stages)

    @classmethod
    def fine_tune(
        cls, epochs: int = 10, freeze_epochs: int = 2, base_lr: float = 2e-3, lr_decay: float = 0.85,
        patience: int | None = None,
    ) -> "FreezeSchedule":
        """fastai's ``fine_tune``: head for ``freeze_epochs`` at ``base_lr``, then everything
        at ``base_lr / 2`` with layer-wise decay toward the bottom of the backbone."""
        stages = [Stage("head", freeze_epochs, 0, base_lr)] if freeze_epochs else []
        stages.append(Stage("all", epochs, "all", base_lr / 2, lr_decay, warmup_epochs=1 if epochs > 2 else 0,
                            patience=patience))
        return cls(stages)


def _is_batchnorm(layer: keras.layers.Layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def trainable_groups(groups: Sequence[LayerGroup], stage: Stage) -> list[LayerGroup]:
    """The groups a stage trains, bottom to top."""
    n = len(groups) if stage.trainable == "all" else min(int(stage.trainable), len(groups))
    return list(groups[len(groups) - n :]) if n else []


def group_multipliers(groups: Sequence[LayerGroup], stage: Stage) -> dict[str, float]:
    """Learning-rate multiplier of each trainable group: the top one gets ``lr_decay``, the next
    ``lr_decay**2``, ... (groups the stage keeps frozen are absent)."""
    active = trainable_groups(groups, stage)
    return {g.name: stage.lr_decay ** (len(active) - i) for i, g in enumerate(active)}


def apply_stage(
    backbone: keras.Model, groups: Sequence[LayerGroup], stage: Stage
) -> dict[str, float]:
    """Set ``trainable`` on the backbone's layers for ``stage``.

    Returns learning-rate multipliers by variable path for the trainable backbone variables
    (variables not listed, i.e. the head, train at the stage's full learning rate).
    """
    group_mult = group_multipliers(groups, stage)
    layer_group = {name: g.name for g in groups for name in g.layers}
    backbone.trainable = bool(group_mult)
    multipliers: dict[str, float] = {}
    for layer in backbone.layers:
        if callable(getattr(layer, "member_variables", None)):
            _apply_to_members(layer, layer_group, group_mult, stage, multipliers)
            continue
        group = layer_group.get(layer.name)
        train = group in group_mult and (stage.train_batchnorm or not _is_batchnorm(layer))
        layer.trainable = train
        if train:
            for var in layer.trainable_weights:
                multipliers[var.path] = group_mult[group]
    return multipliers


def _apply_to_members(
    layer: Any, member_group: dict[str, str], group_mult: dict[str, float], stage: Stage,
    multipliers: dict[str, float],
) -> None:
    """A layer holding a whole network (TF-Hub): freeze and scale variable by variable, since
    its groups are variable names. Batch-norm variables follow the same rule as BN layers."""
    from tlzoo.zoo.hub_catalogue import is_batchnorm_variable

    members = layer.member_variables()
    train_names = {
        name for name, var in members.items()
        if member_group.get(name) in group_mult and var.trainable_by_default
        and (stage.train_batchnorm or not is_batchnorm_variable(name))
    }
    layer.trainable = bool(train_names)  # sets every variable; then narrow down
    layer.batchnorm_training = bool(train_names) and stage.train_batchnorm
    for name, var in members.items():
        var.trainable = name in train_names
        if name in train_names:
            multipliers[var.path] = group_mult[member_group[name]]


def synchronize_batchnorm(backbone: keras.Model) -> int:
    """Batch statistics over the global batch (all replicas) in every BatchNormalization layer of
    ``backbone``, so that replicas that train BN keep identical moving statistics (SyncBN; TensorFlow
    backend). Returns how many layers it set."""
    layers = [layer for layer in backbone.layers if _is_batchnorm(layer)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


class LayerwiseLearningRate:
    """Mixin for a Keras optimizer: scales each variable's learning rate by a multiplier.

    Scaling gradients would not do it (Adam is invariant to gradient scale), so the
    learning rate handed to ``update_step`` is scaled per variable.
    """

    lr_multipliers: dict[str, float]
    initial_lr_scale: float = 1.0  # the value ``lr_scale`` starts at when the optimizer is built

    def build(self, variables: list[Any]) -> None:  # type: ignore[override]
        import keras

        super().build(variables)  # type: ignore[misc]
        table = getattr(self, "lr_multipliers", {}) or {}
        self._lr_multiplier_list = [float(table.get(v.path, 1.0)) for v in variables]
        # A global factor on every learning rate, on top of the schedule: a variable, so a callback
        # can lower it while training runs (the compiled train step reads it at every step).
        self.lr_scale = self.add_variable(shape=(), initializer=keras.initializers.Constant(self.initial_lr_scale),
                                          name="lr_scale")

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        import keras

        mult = self._lr_multiplier_list[optimizer_variable_index(self, variable)]
        if mult != 1.0:
            learning_rate = learning_rate * mult
        scale = keras.ops.cast(self.lr_scale, keras.backend.standardize_dtype(learning_rate.dtype))
        learning_rate = learning_rate * scale
        return super().update_step(gradient, variable, learning_rate)  # type: ignore[misc]


def get_lr_scale(optimizer: keras.optimizers.Optimizer) -> float:
    """The global learning-rate factor of an optimizer from ``make_optimizer`` (1.0 unless lowered)."""
    _check_layerwise(optimizer)
    return float(optimizer.lr_scale.numpy()) if optimizer.built else float(optimizer.initial_lr_scale)


def set_lr_scale(optimizer: keras.optimizers.Optimizer, value: float) -> None:
    """Set the global learning-rate factor; it takes effect at the next training step, built or not."""
    _check_layerwise(optimizer)
    if not value > 0:
        raise ConfigError(f"learning-rate scale must be > 0, got {value}")
    optimizer.initial_lr_scale = float(value)
    if optimizer.built:
        optimizer.lr_scale.assign(float(value))


def _check_layerwise(optimizer: Any) -> None:
    if not isinstance(optimizer, LayerwiseLearningRate):
        raise ConfigError(f"{type(optimizer).__name__} has no learning-rate scale; build the optimizer with "
                          "tlzoo.train.schedule.make_optimizer")


_OPTIMIZERS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}  # name -> keras.optimizers class
_LAYERWISE_CLASSES: dict[str, type] = {}


def make_optimizer(
    name: str,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    multipliers: dict[str, float] | None = None,
    **kwargs: Any,
) -> keras.optimizers.Optimizer:
    """An optimizer (``adamw``, ``adam``, ``sgd``) with per-variable learning-rate multipliers."""
    import keras

    if name not in _OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(_OPTIMIZERS)}")
    base = getattr(keras.optimizers, _OPTIMIZERS[name])
    cls = _LAYERWISE_CLASSES.setdefault(
        name, type(f"Layerwise{base.__name__}", (LayerwiseLearningRate, base), {})
    )
    optimizer = cls(learning_rate=learning_rate, **kwargs)
    optimizer.lr_multipliers = dict(multipliers or {})
    return optimizer


def stage_learning_rate(stage: Stage, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The stage's learning rate over its steps: constant, or cosine decay after a linear warm-up."""
    import keras

    total = max(1, stage.epochs * steps_per_epoch)
    if stage.schedule == "constant":
        return stage.learning_rate
    warmup = min(stage.warmup_epochs * steps_per_epoch, total - 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=stage.learning_rate / 10, decay_steps=total - warmup,
            warmup_target=stage.learning_rate, warmup_steps=warmup, alpha=0.01,
        )
    return keras.optimizers.schedules.CosineDecay(stage.learning_rate, decay_steps=total, alpha=0.01)

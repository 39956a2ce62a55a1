"""The extension protocol: one small interface through which every optional feature joins a run.

The recipe (``tlzoo.train.recipe``) calls each active extension at each hook, in registration order;
an extension overrides the hooks it needs and declares what it supports. The events follow a run:

    check_options  its own options' values, on or off (class method)
    check          the configuration, against the plugin, the backbone, the strategy and the other
                   active extensions (the declared support is checked for it, in ``check_support``)
    on_data        the splits as read, before label subsampling (e.g. attach subgroup attributes)
    prepare        the data is final; read side data, fail early (before the backbone is built)
    on_model       the model is built (inside the strategy's scope); return the model ``fit`` trains
                   (a wrapper adding loss terms) or None
    stage_data     a stage's training data and steps (e.g. mix in source-domain batches)
    callbacks      Keras callbacks for a stage (history rows are written by the recipe's own first)
    after_stage    True ends the schedule early
    after_training the best weights are loaded; write files beside the run
    on_predictions validation and test predictions; may replace them and the saved model (calibration)
    metrics        entries added to metrics.json
    record         entries added to the run's config.yaml
    finish         the run directory is in place (``ok``) or the run failed
and, at export time, ``card_section`` / ``card_markdown`` for the model card.

Learned from fastai's callback events, Keras callbacks, and anomalib's components that are callbacks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tlzoo.errors import ConfigError

if TYPE_CHECKING:
    from tlzoo.data import DataSplits
    from tlzoo.train.config import AdaptConfig
    from tlzoo.train.schedule import Stage


@dataclass
class Run:
    """What the recipe knows about the run so far; extensions read it (and may set ``model``)."""

    cfg: AdaptConfig
    plugin: Any
    spec: Any
    dist: Any
    out: Path  # the run directory
    extensions: list[Extension] = field(default_factory=list)
    data: DataSplits | None = None
    num_classes: int = 0
    class_weight: Any = None  # the plugin's, from the training labels
    input_size: int | None = None
    augment: Any = None
    backbone: Any = None
    groups: list[Any] = field(default_factory=list)
    model: Any = None  # the network that is saved and exported
    schedule: Any = None
    run_dir: Path | None = None  # the temporary directory being written
    state: dict[str, Any] = field(default_factory=dict)  # history, best epoch ...
    write_to: Path | None = None  # where this process writes it (a throw-away copy on non-chief workers)
    checkpoint_dir: Path | None = None  # per-epoch checkpoints (tlzoo.train.checkpoints), when written
    owns_checkpoints: bool = False  # the run's own (resume), not a caller's directory written every epoch
    optimizer: Any = None  # the current stage's
    multipliers: dict[str, float] = field(default_factory=dict)  # the current stage's, per variable path

    def active(self, name: str) -> bool:
        return any(e.name == name for e in self.extensions)


class Extension:
    """One optional feature. Subclass, override the hooks it needs, and register it
    (``tlzoo.extensions.register_extension``)."""

    name: ClassVar[str] = ""  # its config section
    sections: ClassVar[tuple[str, ...]] = ()  # config sections it reads (default: (name,))
    # What it supports, checked in one place (``check_support``); None = anything.
    tasks: ClassVar[tuple[str, ...] | None] = None  # plugin tasks
    modalities: ClassVar[tuple[str, ...] | None] = None
    strategies: ClassVar[tuple[str, ...] | None] = None  # distribution strategies (tlzoo.train.distribution)
    multitask: ClassVar[bool] = True  # with multi-task heads
    custom_recipe: ClassVar[bool] = False  # with a plugin's own recipe (no gradient training)
    excludes: ClassVar[tuple[str, ...]] = ()  # extensions it cannot run with

    def __init__(self, cfg: AdaptConfig) -> None:
        self.cfg = cfg

    @classmethod
    def is_active(cls, cfg: AdaptConfig) -> bool:
        """On when its config section is present."""
        from tlzoo.train.config import EXTENSION_ON

        return any(EXTENSION_ON[s](cfg) for s in (cls.sections or (cls.name,)))

    # ---------------------------------------------------------------- hooks (all optional)
    @classmethod
    def check_options(cls, cfg: AdaptConfig) -> None:
        """Its options' values, called whether it is on or not (an option given without the extension
        switched on is an error here); before anything is read."""

    def check(self, run: Run) -> None:
        """Raise ``ConfigError`` naming the value and the fix; nothing has been read yet."""

    def on_data(self, run: Run, data: DataSplits) -> DataSplits:
        return data

    def prepare(self, run: Run) -> None:
        pass

    def on_model(self, run: Run) -> Any:
        return None

    def stage_data(self, run: Run, index: int, stage: Stage, dataset: Any, steps: int) -> tuple[Any, int]:
        return dataset, steps

    def callbacks(self, run: Run, index: int, stage: Stage) -> list[Any]:
        return []

    def after_stage(self, run: Run, index: int, stage: Stage) -> bool:
        return False

    def after_training(self, run: Run) -> None:
        pass

    def on_predictions(self, run: Run, p_val: Any, p_test: Any) -> tuple[Any, Any]:
        return p_val, p_test

    def metrics(self, run: Run) -> dict[str, Any]:
        return {}

    def record(self, run: Run) -> dict[str, Any]:
        return {}

    def finish(self, run: Run, ok: bool) -> None:
        pass

    # ---------------------------------------------------------------- model card (at export)
    card_key: ClassVar[str | None] = None  # its key in model_card.json; None: no card section

    @classmethod
    def card_section(cls, config: dict[str, Any], metrics: dict[str, Any], contract: dict[str, Any]) -> Any:
        return None

    @classmethod
    def card_markdown(cls, section: Any) -> list[str]:
        return []


def check_support(ext: Extension, run: Run) -> None:
    """The extension's declared support against this run: one message naming both sides."""
    from tlzoo.model.multitask import is_multitask

    plugin, what = run.plugin, f"{ext.name.replace('_', ' ')} ({ext.name}:)"
    if ext.tasks is not None and plugin.task not in ext.tasks and not is_multitask(plugin):
        raise ConfigError(f"{what} supports {', '.join(ext.tasks)} tasks; plugin {plugin.name!r} is {plugin.task}")
    if ext.modalities is not None and plugin.modality not in ext.modalities:
        raise ConfigError(f"{what} supports {', '.join(ext.modalities)} data; plugin {plugin.name!r} is "
                          f"{plugin.modality}")
    if not ext.multitask and is_multitask(plugin):
        raise ConfigError(f"{what} supports single-task runs; drop `tasks` or this option")
    if not ext.custom_recipe and plugin.custom_recipe() is not None:
        raise ConfigError(f"plugin {plugin.name!r} runs its own recipe without gradient training "
                          f"(option mode={plugin.options.get('mode')!r}); {what} applies to gradient training only")
    if ext.strategies is not None and run.dist is not None and run.dist.kind not in ext.strategies:
        raise ConfigError(f"{what} is not supported with strategy {run.dist.kind!r}; use "
                          f"{' or '.join(ext.strategies)}")
    for other in run.extensions:
        if other.name in ext.excludes:
            raise ConfigError(f"{what} and {other.name} cannot run together; drop one")

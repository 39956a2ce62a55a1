"""Keras Tuner searches over a plugin's search space, with a cached-feature fast path.

Each trial takes one of three paths, recorded in the results table:

* ``cached``: the backbone stays frozen; its features (keyed by backbone, weights, input size,
  data fingerprint and un-augmented preprocessing; see :mod:`tlzoo.analysis.features`) are computed once
  per search and the plugin's head trains on them.
* ``naive``: the same training with the frozen backbone run over every image in every epoch
  (``cache=False``; the baseline the fast path is measured against). Head initialisation, data
  order and optimizer are identical, so both paths reach the same objective.
* ``recipe``: the trial unfreezes layer groups and runs :func:`tlzoo.train.recipe.adapt`, the same recipe
  ``tlzoo adapt`` runs, with the plugin's augmentations.

Head trials write a checkpoint (weights, optimizer state, history) after every epoch and resume
from it when the search is re-run after an interruption; Keras Tuner's oracle state makes sure
finished trials are not run again. Distributed searches use Keras Tuner's chief/worker engine
(``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from tlzoo.analysis import tune_report
from tlzoo.analysis.features import FeatureCache, build_extractor, extractor_key
from tlzoo.analysis.tune_report import TuneResult
from tlzoo.data import DataSplits, Split, make_dataset
from tlzoo.errors import ConfigError
from tlzoo.plugin import DomainPlugin, get_plugin
from tlzoo.runs.directory import read_yaml, write_json, write_text_atomic
from tlzoo.train.callbacks import EpochWatch
from tlzoo.train.checkpoints import EpochCheckpoint
from tlzoo.train.recipe import (
    AdaptConfig,
    adapt,
    optimizer_options,
    prepare_data,
)
from tlzoo.train.schedule import Stage, make_optimizer, stage_learning_rate
from tlzoo.zoo import check_input_shape, get_backbone_spec

TUNERS = ("random", "hyperband", "bayesian")
# Hyperparameters the tuner itself interprets; every other name must be a plugin option.
TUNER_PARAMS = ("backbone", "unfreeze_groups", "learning_rate", "epochs", "head_epochs", "augment_strength")
SEARCH_FILE = "search.json"
EVENTS_FILE = "events.jsonl"
TRIAL_FILE = "tlzoo_trial.json"
PROJECT = "tuner"


@dataclass
class TuneConfig:
    """A search: plugin and data, the tuner, its budget and the space (plugin defaults + overrides)."""

    plugin: str
    data: str
    out: str
    tuner: str = "random"
    max_trials: int = 10
    space: dict[str, Any] | None = None  # overrides of the plugin's search_space(); None entries remove one
    objective: str | None = None  # default: "val_" + the plugin's monitor
    weights: str | None = "imagenet"
    input_size: int | None = None
    batch_size: int = 32
    data_options: dict[str, Any] = field(default_factory=dict)  # how file sources are read (tlzoo.data.DataOptions)
    label_fraction: float | None = None
    labels_per_class: int | None = None
    seed: int = 0
    plugin_options: dict[str, Any] = field(default_factory=dict)
    cache: bool = True  # False: frozen-backbone trials recompute features every epoch (baseline)
    hyperband_factor: int = 3
    overwrite: bool = False
    chief: bool = False
    worker: str | None = None  # this worker's tuner id
    oracle: str | None = None  # "IP:PORT" of the chief oracle
    verbose: int = 1


# ---------------------------------------------------------------------------- search space
def resolve_space(plugin: DomainPlugin, overrides: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The plugin's space with ``overrides`` applied, checked: names, kinds and that a point exists."""
    space = dict(plugin.search_space())
    for name, entry in (overrides or {}).items():
        if entry is None:
            space.pop(name, None)
        elif isinstance(entry, dict):
            space[name] = entry
        elif isinstance(entry, list):
            space[name] = {"choice": entry}
        else:
            space[name] = {"fixed": entry}
    options = plugin.all_default_options()
    for name, entry in space.items():
        if name not in TUNER_PARAMS and name not in options:
            raise ConfigError(f"search space entry {name!r} is neither a tuner parameter {list(TUNER_PARAMS)} "
                              f"nor an option of plugin {plugin.name!r} ({sorted(options)})")
        _check_entry(name, entry)
    for required in ("backbone", "unfreeze_groups", "learning_rate", "epochs"):
        if required not in space:
            raise ConfigError(f"search space has no {required!r} entry (give a value or a choice)")
    for value in _values(space["unfreeze_groups"]):
        if value != "all" and not (isinstance(value, int) and value >= 0):
            raise ConfigError(f"unfreeze_groups must be group counts >= 0 or 'all', got {value!r}")
    for value in _values(space["epochs"]):
        if not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"epochs must be integers >= 1, got {value!r}")
    for value in _values(space["backbone"]):
        get_backbone_spec(value)  # unknown name -> error with did-you-mean
    return space


def _check_entry(name: str, entry: dict[str, Any]) -> None:
    kinds = [k for k in ("choice", "fixed", "min") if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"search space entry {name!r} must have exactly one of choice / fixed / min+max, "
                          f"got {entry!r}")
    unknown = set(entry) - {"choice", "fixed", "min", "max", "sampling", "step"}
    if unknown:
        raise ConfigError(f"search space entry {name!r} has unknown key(s) {sorted(unknown)}")
    if "choice" in entry and (not isinstance(entry["choice"], list) or not entry["choice"]):
        raise ConfigError(f"search space entry {name!r} has an empty choice {entry['choice']!r}: no valid point")
    if "min" in entry:
        lo, hi = entry.get("min"), entry.get("max")
        if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
            raise ConfigError(f"search space entry {name!r}: min and max must be numbers, got {entry!r}")
        if lo > hi:
            raise ConfigError(f"search space entry {name!r}: min {lo} > max {hi}, no valid point")
        if entry.get("sampling", "linear") not in ("linear", "log"):
            raise ConfigError(f"search space entry {name!r}: sampling must be 'linear' or 'log'")
        if entry.get("sampling") == "log" and lo <= 0:
            raise ConfigError(f"search space entry {name!r}: log sampling needs min > 0, got {lo}")


def _values(entry: dict[str, Any]) -> list[Any]:
    if "choice" in entry:
        return list(entry["choice"])
    if "fixed" in entry:
        return [entry["fixed"]]
    return [entry["min"], entry["max"]]


def declare(hp: Any, space: dict[str, dict[str, Any]], *, skip: tuple[str, ...] = ()) -> None:
    """Declare ``space`` on a Keras Tuner ``HyperParameters``. ``augment_strength`` only exists in
    trials that unfreeze the backbone: head trials train on un-augmented (cached) features."""
    def one(name: str, entry: dict[str, Any]) -> None:
        if "fixed" in entry:
            hp.Fixed(name, entry["fixed"])
        elif "choice" in entry:
            hp.Choice(name, entry["choice"])
        elif all(isinstance(entry[k], int) and not isinstance(entry[k], bool) for k in ("min", "max")) \
                and isinstance(entry.get("step", 1), int):
            hp.Int(name, entry["min"], entry["max"], step=entry.get("step", 1),
                   sampling=entry.get("sampling", "linear"))
        else:
            hp.Float(name, float(entry["min"]), float(entry["max"]), step=entry.get("step"),
                     sampling=entry.get("sampling", "linear"))

    for name, entry in space.items():
        if name in skip or name == "augment_strength":
            continue
        one(name, entry)
    if "augment_strength" in space and "augment_strength" not in skip:
        unfrozen = [v for v in _values(space["unfreeze_groups"]) if v != 0]
        if unfrozen:
            with hp.conditional_scope("unfreeze_groups", unfrozen):
                one("augment_strength", space["augment_strength"])


# ---------------------------------------------------------------------------- the search
@dataclass
class _Context:
    cfg: TuneConfig
    data: DataSplits
    num_classes: int
    objective: str
    mode: str
    space: dict[str, dict[str, Any]]
    out: Path
    cache: FeatureCache
    keys: dict[tuple[str, int], str] = field(default_factory=dict)


def _make_oracle(cfg: TuneConfig, objective: Any, space: dict[str, dict[str, Any]]) -> Any:
    import keras_tuner as kt

    # Keras Tuner takes seed 0 for 'no seed' (a random one): shift by one so every seed is reproducible.
    common = dict(objective=objective, seed=cfg.seed + 1, max_retries_per_trial=1)
    if cfg.tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=cfg.max_trials, **common)
    if cfg.tuner == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=cfg.max_trials,
                                                     num_initial_points=min(3, cfg.max_trials), **common)
    max_epochs = max(_values(space["epochs"]))
    return kt.oracles.HyperbandOracle(max_epochs=max_epochs, factor=cfg.hyperband_factor, **common)


def _tuner_class() -> type:
    import keras_tuner as kt

    class TlzooTuner(kt.engine.base_tuner.BaseTuner):
        """Runs each trial through :func:`_run_trial`; the oracle does the rest."""

        ctx: _Context

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            return _run_trial(self.ctx, trial, Path(self.get_trial_dir(trial.trial_id)), self.tuner_id)

    return TlzooTuner


def _space_hypermodel(space: dict[str, dict[str, Any]], skip: tuple[str, ...]) -> Any:
    """What Keras Tuner calls a hypermodel; here it only declares the space (trials build their own models)."""
    import keras_tuner as kt

    class SpaceOnly(kt.HyperModel):
        def build(self, hp: Any) -> None:
            declare(hp, space, skip=skip)

    return SpaceOnly()


def tune(config: TuneConfig | None = None, **kwargs: Any) -> TuneResult:
    """Run (or continue) a hyperparameter search.

    ``tlzoo.tune(plugin="medical-imaging", data="x.npz", out="searches/x", tuner="random", max_trials=10)``
    """
    cfg = config if config is not None else TuneConfig(**kwargs)
    if cfg.tuner not in TUNERS:
        raise ConfigError(f"unknown tuner {cfg.tuner!r}; choose one of {', '.join(TUNERS)}")
    if cfg.max_trials < 1:
        raise ConfigError(f"max_trials must be >= 1, got {cfg.max_trials}")
    if cfg.chief and cfg.worker:
        raise ConfigError("a process is either the chief (--chief) or a worker (--worker ID), not both")
    kt = _keras_tuner()
    saved_env = {k: os.environ.get(k) for k in _DIST_ENV}
    try:
        _set_distribution_env(cfg)
        return _search(cfg, kt)
    finally:  # a distributed call leaves the process's environment as it found it
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_DIST_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def _search(cfg: TuneConfig, kt: Any) -> TuneResult:
    role = _role()

    plugin = get_plugin(cfg.plugin, **cfg.plugin_options)
    if plugin.modality != "image" or plugin.custom_recipe() is not None:
        raise ConfigError(f"tlzoo tune searches image plugins trained by gradient descent; plugin {plugin.name!r} "
                          f"({plugin.modality}{', own recipe' if plugin.custom_recipe() is not None else ''}) "
                          f"is not supported yet")
    space = resolve_space(plugin, cfg.space)
    sizes = {}
    for name in _values(space["backbone"]):
        spec = get_backbone_spec(name)
        sizes[name] = int(cfg.input_size or plugin.default_input_size or spec.default_size)
        check_input_shape(spec, (sizes[name], sizes[name], spec.channels))
    data, num_classes = prepare_data(_adapt_config(cfg, plugin.default_backbone, None, {}), plugin)
    objective, mode = _objective(cfg, plugin, num_classes)

    out = Path(cfg.out)
    search = {
        "plugin": cfg.plugin, "plugin_options": cfg.plugin_options, "space": space, "tuner": cfg.tuner,
        "objective": objective, "data": {"source": cfg.data, "fingerprint": data.fingerprint()},
        "weights": cfg.weights, "input_size": sizes, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "cache": cfg.cache, "hyperband_factor": cfg.hyperband_factor if cfg.tuner == "hyperband" else None,
    }
    _claim_directory(out, search, overwrite=cfg.overwrite and role != "worker", role=role)

    ctx = _Context(cfg, data, num_classes, objective, mode, space, out, FeatureCache(out / "features"))
    skip = ("epochs",) if cfg.tuner == "hyperband" else ()
    oracle = _make_oracle(cfg, kt.Objective(objective, mode), space)
    tuner = _tuner_class()(oracle, hypermodel=_space_hypermodel(space, skip), directory=str(out), project_name=PROJECT)
    tuner.ctx = ctx
    if cfg.verbose:
        print(f"search {out} ({role}): {cfg.tuner}, objective {objective} ({mode}), "
              f"{len(data.train)} training samples; space: {json.dumps(space)}", flush=True)
    t0 = time.perf_counter()
    tuner.search(verbose=cfg.verbose)
    if role == "worker":
        if cfg.verbose:
            print(f"worker {os.environ['KERASTUNER_TUNER_ID']}: search finished, exiting", flush=True)
        return TuneResult(out, [], None, None)
    return tune_report.write(out, tuner.oracle, ctx_info(ctx), wall_s=time.perf_counter() - t0, verbose=cfg.verbose)


def _keras_tuner() -> Any:
    try:
        import keras_tuner
    except ImportError as exc:
        raise ConfigError(f"tlzoo tune needs keras-tuner: pip install 'tlzoo[tune]' ({exc})") from None
    return keras_tuner


def ctx_info(ctx: _Context) -> dict[str, Any]:
    """What the report needs to turn a trial into an ``AdaptConfig``."""
    return {"objective": ctx.objective, "mode": ctx.mode, "best_config": lambda values: _best_adapt_config(ctx, values),
            "trial_file": TRIAL_FILE, "project": PROJECT}


def _set_distribution_env(cfg: TuneConfig) -> None:
    if not (cfg.chief or cfg.worker):
        return
    address = cfg.oracle or (f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
                             if "KERASTUNER_ORACLE_IP" in os.environ and "KERASTUNER_ORACLE_PORT" in os.environ
                             else None)
    if not address or ":" not in address:
        raise ConfigError(f"a distributed search needs the chief oracle's address as IP:PORT (--oracle), "
                          f"got {address!r}")
    ip, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"oracle port must be a number, got {port!r} in {address!r}")
    os.environ.update(KERASTUNER_ORACLE_IP=ip, KERASTUNER_ORACLE_PORT=port,
                      KERASTUNER_TUNER_ID="chief" if cfg.chief else str(cfg.worker))
    if cfg.worker and "chief" in str(cfg.worker):
        raise ConfigError(f"a worker id may not contain 'chief' (Keras Tuner would take it for the chief): "
                          f"{cfg.worker!r}")


def _role() -> str:
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def _objective(cfg: TuneConfig, plugin: DomainPlugin, num_classes: int) -> tuple[str, str]:
    reported = ["loss"] + [m.name if hasattr(m, "name") else str(m) for m in plugin.metrics(num_classes)]
    objective = cfg.objective or "val_" + plugin.monitor
    name = objective[4:] if objective.startswith("val_") else None
    if name not in reported:
        raise ConfigError(f"objective {objective!r} is not reported by plugin {plugin.name!r}; it reports "
                          f"{['val_' + r for r in reported]} on the validation split")
    mode = "min" if name == "loss" else plugin.monitor_mode if name == plugin.monitor else "max"
    return objective, mode


def _claim_directory(out: Path, search: dict[str, Any], *, overwrite: bool, role: str) -> None:
    """Refuse a directory made by a different search (different space, data, ...) unless overwriting."""
    path = out / SEARCH_FILE
    plain = json.loads(json.dumps(search, sort_keys=True, default=str))
    if path.is_file() and not overwrite:
        previous = json.loads(path.read_text())
        if previous == plain:
            return  # the same search: continue it
        diff = sorted(k for k in set(previous) | set(plain) if previous.get(k) != plain.get(k))
        raise ConfigError(f"{str(out)!r} holds a different search (differs in {diff}); pass --overwrite to "
                          f"replace it or choose another --out")
    if path.is_file():  # overwrite
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        if role == "worker" and (out / PROJECT).exists():
            return
        if not overwrite:
            raise ConfigError(f"{str(out)!r} is not empty and holds no tlzoo search; choose another --out "
                              f"or pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(plain, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------- one trial
def _trial_plugin(ctx: _Context, values: dict[str, Any], frozen: bool) -> DomainPlugin:
    plugin_cls = type(get_plugin(ctx.cfg.plugin, **ctx.cfg.plugin_options))
    options = {**ctx.cfg.plugin_options, **{k: v for k, v in values.items() if k not in TUNER_PARAMS and "/" not in k}}
    base = {**plugin_cls.all_default_options(), **options}
    for name in plugin_cls.augmentation_options:
        if frozen:  # head trials see un-augmented features; the best config must say so
            options[name] = 0
        elif "augment_strength" in values:
            options[name] = type(base[name])(base[name] * float(values["augment_strength"]))
    return plugin_cls(**options)


def _run_trial(ctx: _Context, trial: Any, trial_dir: Path, tuner_id: str) -> dict[str, float]:
    keras.backend.clear_session()  # memory stays flat across trials
    values = dict(trial.hyperparameters.values)
    frozen = values["unfreeze_groups"] == 0
    path = ("cached" if ctx.cfg.cache else "naive") if frozen else "recipe"
    _event(ctx.out, "start", trial.trial_id, tuner_id, path)
    if ctx.cfg.verbose:
        shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}
        print(f"trial {trial.trial_id} ({tuner_id}, {path} path): {shown}", flush=True)
    t0 = time.perf_counter()
    if frozen:
        best, extra = _train_head(ctx, values, trial_dir, cached=ctx.cfg.cache)
    else:
        best, extra = _train_recipe(ctx, values, trial_dir)
    seconds = time.perf_counter() - t0
    record = {"trial_id": trial.trial_id, "path": path, "seconds": round(seconds, 2), "objective": best,
              "tuner_id": tuner_id, "rss_mb": _rss_mb(), "values": values, **extra}
    write_json(trial_dir / TRIAL_FILE, record)
    _event(ctx.out, "end", trial.trial_id, tuner_id, path, objective=best, seconds=round(seconds, 2))
    if ctx.cfg.verbose:
        print(f"trial {trial.trial_id}: {ctx.objective} {best:.4f} in {seconds:.1f}s ({path})", flush=True)
    return {ctx.objective: best}


def _rss_mb() -> float | None:
    """This process's resident memory after a trial: flat across trials when sessions are cleared."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _event(out: Path, kind: str, trial_id: str, tuner_id: str, path: str, **extra: Any) -> None:
    """One line per trial start / end (O_APPEND: safe across processes): which trial ran where, how often."""
    line = json.dumps({"event": kind, "trial_id": trial_id, "tuner_id": tuner_id, "path": path, "pid": os.getpid(),
                       "time": round(time.time(), 3), **extra})
    with open(out / EVENTS_FILE, "a") as fh:
        fh.write(line + "\n")


def _adapt_config(cfg: TuneConfig, backbone: str, input_size: int | None, plugin_options: dict[str, Any],
                  schedule: dict[str, Any] | None = None, out: str | None = None) -> AdaptConfig:
    return AdaptConfig(plugin=cfg.plugin, data=cfg.data, out=out, backbone=backbone, weights=cfg.weights,
                       input_size=input_size, schedule=schedule, batch_size=cfg.batch_size,
                       label_fraction=cfg.label_fraction, labels_per_class=cfg.labels_per_class, seed=cfg.seed,
                       plugin_options=plugin_options, data_options=dict(cfg.data_options), verbose=0)


def _schedule(values: dict[str, Any]) -> dict[str, Any]:
    epochs = int(values.get("tuner/epochs", values.get("epochs", 1)))
    lr = float(values["learning_rate"])
    n = values["unfreeze_groups"]
    if n == 0:
        return {"kind": "feature_extraction", "epochs": epochs, "lr": lr}
    # Head first at the searched rate, then the unfrozen groups at a tenth of it.
    head = int(values.get("head_epochs", 1))
    if n == "all":
        return {"kind": "full", "epochs": epochs, "lr": lr / 10, "head_epochs": head, "head_lr": lr}
    return {"kind": "top", "groups": int(n), "epochs": epochs, "lr": lr / 10, "head_epochs": head, "head_lr": lr}


def _best_adapt_config(ctx: _Context, values: dict[str, Any]) -> dict[str, Any]:
    """The trial as the configuration sections ``tlzoo adapt --config`` runs (the output section left out:
    the run's ``--out`` says where)."""
    frozen = values["unfreeze_groups"] == 0
    plugin = _trial_plugin(ctx, values, frozen)
    options = {k: v for k, v in plugin.options.items() if plugin.all_default_options().get(k) != v}
    cfg = _adapt_config(ctx.cfg, values["backbone"], _input_size(ctx, values["backbone"]), options, _schedule(values))
    sections = cfg.to_record()
    sections.pop("output")
    return sections


def _input_size(ctx: _Context, backbone: str) -> int:
    plugin_cls = type(get_plugin(ctx.cfg.plugin, **ctx.cfg.plugin_options))
    return int(ctx.cfg.input_size or plugin_cls.default_input_size or get_backbone_spec(backbone).default_size)


def _train_recipe(ctx: _Context, values: dict[str, Any], trial_dir: Path) -> tuple[float, dict[str, Any]]:
    """Unfrozen trials run the adapt recipe itself, into ``trial_dir/run``."""
    plugin = _trial_plugin(ctx, values, frozen=False)
    cfg = _adapt_config(ctx.cfg, values["backbone"], _input_size(ctx, values["backbone"]), plugin.options,
                        _schedule(values), out=str(trial_dir / "run"))
    cfg.overwrite = True
    checkpoint = trial_dir / "checkpoint"
    previous = EpochCheckpoint(checkpoint, None).record()  # type: ignore[arg-type]
    if previous and ctx.cfg.verbose:
        print(f"  resuming from the checkpoint of epoch {len(previous['state']['history'])} "
              f"(stage {previous['stage']})", flush=True)
    result = adapt(cfg, checkpoint_dir=checkpoint)
    extra: dict[str, Any] = {"run_dir": str(result.run_dir), "epochs_run": len(result.history)}
    if previous:
        extra["resumed_from_epoch"] = len(previous["state"]["history"])
    best = float(result.metrics["monitor"]["value"]) if ctx.objective == result.metrics["monitor"]["name"] \
        else _best_of(result.history, ctx.objective, ctx.mode)
    return best, extra


def _best_of(history: list[dict[str, Any]], key: str, mode: str) -> float:
    vals = [row[key] for row in history if key in row and math.isfinite(row[key])]
    if not vals:
        raise ConfigError(f"no epoch reported a finite {key}")
    return float(max(vals) if mode == "max" else min(vals))


def _head_model(plugin: DomainPlugin, feature_shape: tuple[int, ...], num_classes: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)  # same head initialisation on the cached and the naive path
    inputs = keras.Input(shape=feature_shape, name="features")
    return keras.Model(inputs, plugin.build_head(inputs, num_classes), name="head")


def _cached_features(ctx: _Context, plugin: DomainPlugin, backbone_name: str,
                     input_size: int) -> tuple[str, dict[str, Any]]:
    """The train / val features of a frozen backbone, from the cache or computed into it (once per search).
    The key needs the weights' sha256, which building the backbone resolves; the build is reused."""
    memo = (backbone_name, input_size)
    key = ctx.keys.get(memo)
    if key is None or not ctx.cache.has(key):
        extractor, record = _extractor(ctx, plugin, backbone_name, input_size)
        key = ctx.keys[memo] = extractor_key(plugin, backbone_name, ctx.cfg.weights, record, input_size, ctx.data,
                                             seed=ctx.cfg.seed)
        if not ctx.cache.has(key):
            ctx.cache.get_or_compute(key, extractor, ctx.data, splits=("train", "val"), verbose=ctx.cfg.verbose,
                                     describe={"backbone": backbone_name, "weights": ctx.cfg.weights,
                                               "input_size": input_size})
        del extractor
        keras.backend.clear_session()
    return key, ctx.cache.load(key)


def _extractor(ctx: _Context, plugin: DomainPlugin, backbone_name: str, input_size: int) -> tuple[keras.Model, Any]:
    """Raw images -> frozen backbone features, and where the backbone's weights came from."""
    return build_extractor(plugin, backbone_name, ctx.cfg.weights, input_size, ctx.data.train.x.shape[1:],
                           seed=ctx.cfg.seed)


def _train_head(ctx: _Context, values: dict[str, Any], trial_dir: Path, *,
                cached: bool) -> tuple[float, dict[str, Any]]:
    """Train the plugin's head on a frozen backbone: on cached features, or (naive) through the backbone."""
    cfg, data = ctx.cfg, ctx.data
    plugin = _trial_plugin(ctx, values, frozen=True)
    backbone_name = values["backbone"]
    input_size = _input_size(ctx, backbone_name)
    extra: dict[str, Any] = {}
    if cached:
        key, feats = _cached_features(ctx, plugin, backbone_name, input_size)
        extra["feature_cache"] = key
        splits = {name: Split(feats[name], data.split(name).y) for name in ("train", "val")}
        model = _head_model(plugin, tuple(feats["train"].shape[1:]), ctx.num_classes, cfg.seed)
        head = model
    else:
        extractor, _ = _extractor(ctx, plugin, backbone_name, input_size)
        head = _head_model(plugin, tuple(extractor.output.shape[1:]), ctx.num_classes, cfg.seed)
        model = keras.Model(extractor.input, head(extractor.output), name="naive")
        splits = {name: data.split(name) for name in ("train", "val")}

    epochs = int(values.get("tuner/epochs", values.get("epochs")))
    initial_epoch = int(values.get("tuner/initial_epoch", 0))
    stage = Stage("head", epochs, 0, float(values["learning_rate"]))
    steps = math.ceil(len(splits["train"]) / cfg.batch_size)
    optimizer = make_optimizer(plugin.options["optimizer"], stage_learning_rate(stage, steps), None,
                               **optimizer_options(plugin))
    model.compile(optimizer=optimizer, loss=plugin.loss(ctx.num_classes), metrics=plugin.metrics(ctx.num_classes))

    ckpt = EpochCheckpoint(trial_dir / "checkpoint", head)
    best_path = ckpt.dir / "best.weights.h5"
    state: dict[str, Any] = {"history": []}
    if "tuner/trial_id" in values:  # Hyperband: continue from the earlier bracket's head
        previous = trial_dir.parent / f"trial_{values['tuner/trial_id']}" / "checkpoint" / "best.weights.h5"
        if previous.is_file():
            head.load_weights(previous)
    resumed = ckpt.restore(model, optimizer, state)
    start = max(initial_epoch, resumed)
    if resumed:
        extra["resumed_from_epoch"] = resumed
        if cfg.verbose:
            print(f"  resuming from the checkpoint of epoch {resumed}", flush=True)
    if start < epochs:
        train_ds = make_dataset(splits["train"], batch_size=cfg.batch_size, training=True, seed=cfg.seed + start)
        val_ds = make_dataset(splits["val"], batch_size=cfg.batch_size, training=False)
        keras.utils.set_random_seed(cfg.seed + start)
        watch = EpochWatch(ctx.objective, ctx.mode, best_path, stage, state, head)
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=start,
                  class_weight=plugin.class_weights(data.train.y, ctx.num_classes),
                  callbacks=[watch, ckpt.callback(0, optimizer, state)], shuffle=False, verbose=0)
    if "best" not in state:
        raise ConfigError(f"no epoch produced a finite {ctx.objective}")
    extra["epochs_run"] = len(state["history"])
    extra["best_epoch"] = state["best_epoch"]
    return float(state["best"]), extra


def load_space_file(path: str | Path) -> dict[str, Any]:
    """A YAML search-space override file: ``{name: entry}`` (or under a ``space:`` key)."""
    raw = read_yaml(Path(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{str(path)!r} must map hyperparameter names to entries, got {type(raw).__name__}")
    raw = raw.get("space", raw)
    return raw


__all__ = ["TuneConfig", "TuneResult", "tune", "resolve_space", "declare", "load_space_file"]

"""The adaptation recipe: build backbone + head, run the freeze schedule, evaluate, and write
the run directory. Every command (adapt, tune, demo, ...) calls this one recipe."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlzoo.data import DataSplits, make_dataset, predict_batches, subsample_labels
from tlzoo.errors import ConfigError, DataError, TrainingError
from tlzoo.evaluation import plots
from tlzoo.extensions import calibration as calib
from tlzoo.extensions import domain_adaptation as domain_lib
from tlzoo.extensions import forgetting as forgetting_lib
from tlzoo.extensions import subgroups
from tlzoo.extensions.licences import RANDOM_INIT, licence_gate
from tlzoo.extensions.subgroup_attributes import assign_groups
from tlzoo.model.assemble import build_model, inference_model
from tlzoo.model.multitask import MultiTask, is_multitask
from tlzoo.plugin import DomainPlugin, get_plugin
from tlzoo.runs import (
    BEST_WEIGHTS,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    atomic_dir,
    check_target,
    environment,
    now,
    read_yaml,
    write_json,
    write_yaml,
)
from tlzoo.train.checkpoints import EpochCheckpoint
from tlzoo.train.config import AdaptConfig
from tlzoo.train.distribution import StageLoop, select_strategy, weights_digest
from tlzoo.train.schedule import (
    FreezeSchedule,
    Stage,
    apply_stage,
    make_optimizer,
    stage_learning_rate,
    synchronize_batchnorm,
    trainable_groups,
)
from tlzoo.zoo import build_backbone, check_input_shape, get_backbone_spec, layer_groups


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: dict[str, Any]


class _Watch(keras.callbacks.Callback):
    """Stops on a non-finite loss, keeps the best weights across stages, records history."""

    def __init__(self, monitor: str, mode: str, best_path: Path, stage: Stage, state: dict[str, Any],
                 weights_view: keras.Model):
        super().__init__()
        self.monitor, self.mode, self.best_path, self.stage, self.state = monitor, mode, best_path, stage, state
        self.weights_view = weights_view  # saves layer weights only, not the optimizer's
        self._t0 = 0.0

    # The loss is checked once an epoch, not after every batch: a batch hook makes Keras copy every
    # step's logs to the host, which cost 6% of head-only training throughput (621 vs 657 images/s).
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingError(
                f"loss became {loss} in stage {self.stage.name!r} (epoch {len(self.state['history']) + 1}); "
                f"lower the learning rate (now {self.stage.learning_rate}) or check the data for extreme values"
            )
        row = {"stage": self.stage.name, "epoch": len(self.state["history"]) + 1,
               "seconds": round(time.perf_counter() - self._t0, 2), **logs}
        self.state["history"].append(row)
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        best = self.state.get("best")
        better = best is None or (value > best if self.mode == "max" else value < best)
        if better:
            self.state.update(best=value, best_epoch=row["epoch"], best_stage=self.stage.name)
            self.weights_view.save_weights(self.best_path)


def _resolve_schedule(cfg: AdaptConfig, plugin: DomainPlugin, n_groups: int) -> FreezeSchedule:
    schedule = FreezeSchedule.from_dict(cfg.schedule) if cfg.schedule else plugin.freeze_schedule(n_groups)
    if not schedule.stages or schedule.total_epochs == 0:
        raise ConfigError("the freeze schedule trains for 0 epochs; give at least one stage with epochs > 0")
    return schedule


def _optimizer_options(plugin: DomainPlugin) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if plugin.options["optimizer"] == "adamw":
        options["weight_decay"] = float(plugin.options["weight_decay"])
    return options


def _augmenter(plugin: DomainPlugin) -> Any:
    layers = plugin.augmentations()
    if not layers:
        return None

    def augment(x: Any) -> Any:
        for layer in layers:
            x = layer(x, training=True)
        return x

    return augment


def _weights_name(weights: str | None, spec: Any) -> str | None:
    """For time-series backbones the default "imagenet" means their own pretrained weights, if any."""
    if spec.modality == "timeseries" and weights == "imagenet":
        return spec.weight_names[0] if spec.weight_names else None
    return weights


def _licences(cfg: AdaptConfig, spec: Any) -> dict[str, Any]:
    """The licences in the run's lineage; with ``intended_use``, the gate that refuses forbidden uses."""
    weights = _weights_name(cfg.weights, spec)
    if weights is None:
        weights_licence: str | None = RANDOM_INIT
    else:
        info = spec.weights_info(str(weights))
        weights_licence = info.licence if info else None
    if cfg.intended_use is None:
        return {"intended_use": None, "weights": {"licence": weights_licence or "unknown"},
                "data": {"licence": cfg.data_licence or "unknown"}}
    return licence_gate(cfg.intended_use, weights_licence, cfg.data_licence)


def _as_record(cfg: AdaptConfig) -> dict[str, Any]:
    """The config as config.yaml records it: in-memory data (arrays, a DataFrame, a tf.data.Dataset)
    is named by its type; evaluate / export / predict then need the data passed again."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if not isinstance(cfg.data, (str, Path)):
        fields["data"] = f"<in-memory {type(cfg.data).__module__}.{type(cfg.data).__name__}>"
    return {k: (v if k == "data" else json.loads(json.dumps(v, default=str))) for k, v in fields.items()}


def run_plugin(cfg: AdaptConfig | dict[str, Any]) -> Any:
    """The plugin a run trains with: the registered plugin with its options, wrapped in
    ``MultiTask`` when the run has several tasks."""
    cfg = cfg if isinstance(cfg, AdaptConfig) else AdaptConfig.from_dict(cfg)
    plugin = get_plugin(cfg.plugin, **(cfg.plugin_options or {}))
    if cfg.tasks:
        if cfg.group_by is not None:
            raise ConfigError("subgroup metrics (group_by) are per single task; not available with multi-task heads")
        return MultiTask(plugin, cfg.tasks)
    return plugin


def input_size_for(cfg: AdaptConfig, plugin: DomainPlugin) -> int:
    """The model's input size: the config's, else the plugin's, else the backbone's default."""
    return int(cfg.input_size or plugin.default_input_size
               or get_backbone_spec(cfg.backbone or plugin.default_backbone).default_size)


def read_run_data(cfg: AdaptConfig, plugin: DomainPlugin, source: str | None = None) -> DataSplits:
    """The plugin's reading of ``source`` (default: the run's data) with the run's data options; file
    images are streamed at the model's input size."""
    options = {"options": cfg.data_options} if cfg.data_options else {}  # plugins' own readers may not take it
    data = plugin.read_data(source or cfg.data, seed=cfg.seed, **options)
    if plugin.modality == "image":
        data.set_input_size(input_size_for(cfg, plugin))
    return data


def prepare_data(cfg: AdaptConfig, plugin: DomainPlugin) -> tuple[DataSplits, int]:
    data = read_run_data(cfg, plugin)
    plugin.check_data(data)
    data = assign_groups(data, cfg.group_by, task=plugin.task, max_gap=cfg.max_group_gap)  # before subsampling
    num_classes = plugin.num_classes(data)
    full_train = len(data.train)
    strata = plugin.strata(data.train.y) if is_multitask(plugin) else None
    data.train = subsample_labels(data.train, fraction=cfg.label_fraction, per_class=cfg.labels_per_class, seed=cfg.seed,
                                  strata=strata)
    if len(data.train) != full_train:
        data.notes.append(f"train labels subsampled: {len(data.train)} of {full_train} (stratified, seed {cfg.seed})")
        plugin.check_data(data)
    if not data.class_names:
        data.class_names = [str(i) for i in range(num_classes)]
    return data, num_classes


def predict(model: keras.Model, x: Any, batch_size: int) -> np.ndarray:
    """Predictions over an array or streamed image files."""
    return np.asarray(predict_batches(model, x, batch_size))


def adapt(config: AdaptConfig | None = None, *, checkpoint_dir: str | Path | None = None, **kwargs: Any) -> RunResult:
    """Adapt a pretrained backbone to a domain data set with a plugin's recipe.

    ``tlzoo.adapt(plugin="medical-imaging", data="x.npz", out="runs/x", label_fraction=0.1)``

    With ``checkpoint_dir``, a checkpoint is written after every epoch and a re-run with the same
    directory continues from the last one (the tuner uses this to resume interrupted trials).
    """
    cfg = config if config is not None else AdaptConfig(**kwargs)
    t_start, started_at = time.perf_counter(), now()

    # Everything that can be checked before any long computation is checked here.
    plugin = run_plugin(cfg)
    # The licence gate comes first, for every recipe: nothing runs on weights the use forbids.
    licences = _licences(cfg, get_backbone_spec(cfg.backbone or plugin.default_backbone))
    domain_lib.check_config(cfg, plugin)
    recipe = plugin.custom_recipe()
    forgetting_lib.check_config(cfg, custom_recipe=recipe is not None)
    if recipe is not None:  # the plugin's own recipe (no gradient training) writes the run
        return recipe(cfg)
    backbone_name = cfg.backbone or plugin.default_backbone
    spec = get_backbone_spec(backbone_name)
    if spec.modality != plugin.modality and "timeseries" in (spec.modality, plugin.modality):
        raise ConfigError(f"backbone {backbone_name!r} is a {spec.modality} backbone; plugin {plugin.name!r} "
                          f"needs a {plugin.modality} one (see `tlzoo backbones`)")
    input_size = int(cfg.input_size or plugin.default_input_size or spec.default_size)
    if spec.modality == "image":
        check_input_shape(spec, (input_size, input_size, spec.channels))
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.calibration not in calib.METHODS:
        raise ConfigError(f"calibration must be one of {calib.METHODS}, got {cfg.calibration!r}")
    safe_backbone = "".join(c if c.isalnum() or c in "._-" else "_" for c in backbone_name)  # "hub:/path"
    out = Path(cfg.out or f"runs/{plugin.name}-{safe_backbone}-{time.strftime('%Y%m%d-%H%M%S')}")
    dist = select_strategy(cfg.strategy)
    dist.check_batch(cfg.batch_size)
    forgetting_lib.check_config(cfg, strategy_kind=dist.kind)
    if is_multitask(plugin) and not dist.uses_fit:
        raise ConfigError("multi-task heads train with Model.fit; the multiworker strategy's custom loop does not "
                          "support them yet: use --strategy one or mirrored")
    if dist.kind == "multiworker":  # fault tolerance: a restarted cluster resumes from here
        checkpoint_dir = checkpoint_dir or f"{out}.backup"
    run_dir, out = out, (out if dist.is_chief else Path(tempfile.mkdtemp(prefix="tlzoo-worker-")) / "run")
    check_target(out, cfg.overwrite)
    if cfg.schedule:
        FreezeSchedule.from_dict(cfg.schedule)  # validates early
    data, num_classes = prepare_data(cfg, plugin)
    da = domain_lib.plan(cfg, plugin, data, strategy_kind=dist.kind, augment=_augmenter(plugin))  # None: plain
    # options a plugin filled in from the data (e.g. its feature columns) travel with the run, so
    # evaluate and export read new data the same way (and stop if a column is missing)
    defaults = plugin.all_default_options()
    cfg.plugin_options = {**cfg.plugin_options, **{k: v for k, v in plugin.options.items()
                                                   if k not in cfg.plugin_options and v != defaults.get(k)}}
    backbone_shape: tuple[Any, ...] = (input_size, input_size, spec.channels)
    if spec.modality == "timeseries":  # (time, channels) from the data; time stays free in the model
        check_input_shape(spec, data.train.x.shape[1:])
        backbone_shape = (None, int(data.train.x.shape[-1]))
        cfg.weights = _weights_name(cfg.weights, spec)

    keras.utils.set_random_seed(cfg.seed)
    with dist.scope():  # variables are created where the strategy can mirror them
        backbone, spec, weights_record = build_backbone(
            backbone_name, cfg.weights, backbone_shape, sha256=cfg.weights_sha256
        )
        groups = layer_groups(backbone, spec)
        schedule = _resolve_schedule(cfg, plugin, len(groups)).within_budget(len(data.train), cfg.max_samples_seen)
        if cfg.weights is None and spec.family != "tfhub":  # random init: BN layers learn their statistics
            schedule = schedule.with_batchnorm_training()
        if dist.replicas > 1 and any(s.train_batchnorm for s in schedule.stages):
            synchronize_batchnorm(backbone)  # else each replica keeps its own moving statistics
        model = build_model(plugin, spec, backbone, data.train.x.shape[1:], input_size, num_classes)
        fit_model = da.attach(model, backbone, schedule, len(data.train)) if da else model  # trains `model`

    class_weight = plugin.class_weights(data.train.y, num_classes)
    targets = plugin.training_targets if is_multitask(plugin) else None  # one label array per task output
    image_size = input_size if spec.modality == "image" else None  # resized before augmentation
    def train_data(batch_size: int, shard: tuple[int, int] | None = None) -> Any:
        return make_dataset(data.train, batch_size=batch_size, training=True, seed=cfg.seed, augment=_augmenter(plugin),
                            label_fn=targets, image_size=image_size, shard=shard)

    def val_data(batch_size: int, shard: tuple[int, int] | None = None) -> Any:
        return make_dataset(data.val, batch_size=batch_size, training=False, label_fn=targets, shard=shard)

    train_ds, val_ds = train_data(cfg.batch_size), val_data(cfg.batch_size)
    steps = math.ceil(len(data.train) / cfg.batch_size)
    if dist.uses_fit:
        dist_data = None
    elif data.streamed and data.train.x.shardable:  # files: each worker decodes its own shard only
        dist_data = (dist.distribute_shards(train_data, cfg.batch_size), dist.distribute_shards(val_data, cfg.batch_size))
    else:
        dist_data = (dist.distribute_dataset(train_ds), dist.distribute_dataset(val_ds))
    monitor = "val_" + plugin.monitor

    resolved = {
        "adapt": {**_as_record(cfg), "out": str(run_dir), "backbone": backbone_name, "input_size": input_size},
        "distribution": dist.describe(),
        "licences": licences,
        "schedule": schedule.to_dict(),
        "plugin": plugin.describe() | {"options": plugin.options},
        "backbone": {"name": spec.name, "family": spec.family, "num_params": spec.num_params,
                     "layer_groups": [g.name for g in groups], "preprocess": spec.preprocess_name},
        "weights": weights_record.to_dict() if weights_record else {
            "source": "random" if cfg.weights is None else cfg.weights,
            **({"lineage": spec.weights_info(cfg.weights).dataset} if spec.weights_info(str(cfg.weights)) else {})},
        "data": {**data.summary(), "fingerprint": data.fingerprint()},
        "class_weight": class_weight,
        **({"adaptation_method": da.describe()} if da else {}),
        "environment": environment(),
    }

    with atomic_dir(out, cfg.overwrite) as tmp:
        write_yaml(tmp / CONFIG_FILE, resolved)
        state: dict[str, Any] = {"history": []}
        weights_view = inference_model(model)
        ckpt = EpochCheckpoint(checkpoint_dir, weights_view) if checkpoint_dir else None
        resume = ckpt.record() if ckpt else None
        drift = (forgetting_lib.monitor_for_run(cfg, model, backbone, groups, spec, data.train.x)  # pretrained state
                 if cfg.forgetting else None)
        for i, stage in enumerate(schedule.stages, start=1):
            if stage.epochs == 0 or (resume and i < resume["stage"]):  # stages an interrupted run finished
                continue
            stage_ds, stage_steps = da.stage_data(i, data.train, train_ds) if da else (train_ds, steps)
            multipliers = apply_stage(backbone, groups, stage)
            with dist.scope():
                optimizer = make_optimizer(plugin.options["optimizer"], stage_learning_rate(stage, stage_steps), multipliers,
                                           **_optimizer_options(plugin))
                fit_model.compile(optimizer=optimizer, loss=plugin.loss(num_classes), metrics=plugin.metrics(num_classes))
            n_train = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
            if cfg.verbose:
                print(f"stage {i}/{len(schedule.stages)} {stage.name!r}: {stage.epochs} epochs, "
                      f"{len(trainable_groups(groups, stage))}/{len(groups)} backbone groups trainable, "
                      f"{n_train:,} trainable parameters, lr {stage.learning_rate:g}"
                      + (f" (x{stage.lr_decay:g} per group down)" if stage.lr_decay < 1 else ""), flush=True)
            initial_epoch = 0
            if ckpt and resume and i == resume["stage"]:
                with dist.scope():  # the optimizer's variables are created here
                    initial_epoch = ckpt.restore(fit_model, optimizer, state, tmp / BEST_WEIGHTS)
                if cfg.verbose:
                    print(f"resuming stage {i} from the checkpoint of its epoch {initial_epoch}", flush=True)
            callbacks: list[keras.callbacks.Callback] = [
                _Watch(monitor, plugin.monitor_mode, tmp / BEST_WEIGHTS, stage, state, weights_view)
            ]
            if stage.patience:
                callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=stage.patience, mode=plugin.monitor_mode))
            if ckpt and dist.is_chief:  # every worker holds the same values; the chief writes them
                callbacks.append(ckpt.callback(i, optimizer, state, tmp / BEST_WEIGHTS))
            if drift is not None:  # first, so its values reach the history row _Watch writes
                drift.stage = stage.name
                callbacks.insert(0, drift)
            if dist.uses_fit:
                fit_model.fit(stage_ds, validation_data=val_ds, epochs=stage.epochs, initial_epoch=initial_epoch,
                              class_weight=class_weight,
                              callbacks=callbacks, shuffle=False, verbose=1 if cfg.verbose else 0)
            else:  # Model.fit fails under MultiWorkerMirroredStrategy in Keras 3: same stage, custom step
                with dist.scope():
                    loop = StageLoop(dist, model, optimizer, plugin.loss(num_classes), plugin.metrics(num_classes),
                                     class_weight)
                loop.fit(dist_data[0], dist_data[1], stage.epochs, callbacks, initial_epoch=initial_epoch)
            if drift is not None and drift.stopped:  # the drift bound ends the whole schedule
                break
        if "best" not in state:
            raise TrainingError(f"no epoch produced a finite {monitor}; nothing to keep")
        weights_view.load_weights(tmp / BEST_WEIGHTS)
        if drift is not None:
            state["forgetting"] = drift.write(tmp, kept_epoch=state["best_epoch"])
        metrics, saved_model = _evaluate_and_report(tmp, weights_view, plugin, data, cfg, state, resolved)
        resolved["started_at"] = started_at
        resolved["finished_at"] = now()
        resolved["wall_time_s"] = round(time.perf_counter() - t_start, 1)
        write_yaml(tmp / CONFIG_FILE, resolved)
        saved_model.save(tmp / MODEL_FILE)
    if dist.kind == "multiworker":
        rank = dist.cluster.rank if dist.cluster else 0
        print(f"worker {rank}: final weights sha256 {weights_digest(model)}", flush=True)
        dist.barrier()  # the chief has written the run directory
    if not dist.is_chief:
        shutil.rmtree(out.parent, ignore_errors=True)
    elif dist.kind == "multiworker":
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run finished: nothing to resume
    if cfg.verbose:
        print(f"run written to {run_dir}", flush=True)
    return RunResult(run_dir, metrics, state["history"], resolved)


def _evaluate_and_report(
    run_dir: Path, model: keras.Model, plugin: DomainPlugin, data: DataSplits, cfg: AdaptConfig,
    state: dict[str, Any], resolved: dict[str, Any],
) -> tuple[dict[str, Any], keras.Model]:
    """Test and validation metrics at the chosen threshold, after calibration; the files beside them.
    Returns the metrics and the model to save (``model`` with its calibration layer, if any)."""
    if is_multitask(plugin):
        metrics, model, p_test_tasks = plugin.score(run_dir, model, data, cfg.calibration, cfg.batch_size)
        metrics.update(best_epoch=state["best_epoch"], best_stage=state["best_stage"],
                       monitor={"name": "val_" + plugin.monitor, "value": state["best"]}, n_train=len(data.train),
                       **({"forgetting": state["forgetting"]} if "forgetting" in state else {}))
        _write_history(run_dir, metrics, state["history"], plugin.curve_metrics)
        np.savez_compressed(run_dir / "test_predictions.npz", y_true=data.test.y, **p_test_tasks)
        return metrics, model
    p_val = predict(model, data.val.x, cfg.batch_size)
    p_test = predict(model, data.test.x, cfg.batch_size)
    calibration = None
    if cfg.calibration != "none" and plugin.task in ("binary", "multiclass"):
        temperature, calibration = calib.calibration_report(data.val.y, p_val, data.test.y, p_test, plugin.task,
                                                            cfg.calibration)
        layer = calib.TemperatureScaling(temperature, plugin.task)
        raw_val = p_val
        # the layer itself, so these are the probabilities every export returns
        p_val, p_test = np.asarray(layer(p_val)), np.asarray(layer(p_test))
        plots.reliability_diagram({"val, before": (data.val.y, raw_val), "val, after": (data.val.y, p_val),
                                   "test, after": (data.test.y, p_test)}, plugin.task, run_dir / "reliability.png",
                                  title=f"temperature {temperature:.3f} (fitted on val)")
        model = calib.calibrated_model(model, temperature, plugin.task)
    threshold = plugin.choose_threshold(data.val.y, p_val)
    test = plugin.evaluate(data.test.y, p_test, threshold=threshold)
    val = plugin.evaluate(data.val.y, p_val, threshold=threshold)
    metrics = {
        "test": test,
        "val": val,
        "threshold_policy": plugin.options.get("threshold") if plugin.task == "binary" else "argmax",
        "calibration": calibration,
        "best_epoch": state["best_epoch"],
        "best_stage": state["best_stage"],
        **({"forgetting": state["forgetting"]} if "forgetting" in state else {}),
        "monitor": {"name": "val_" + plugin.monitor, "value": state["best"]},
        "n_train": len(data.train),
        "class_names": data.class_names,
    }
    metrics.update(plugin.extra_reports(run_dir, data, p_val, p_test, threshold))  # e.g. a baseline beside it
    if data.test.groups is not None:  # per-group metrics with bootstrap CIs, and subgroups.png
        metrics["subgroups"] = subgroups.write_report(run_dir, data, p_test, task=plugin.task, threshold=threshold,
                                                      max_gap=cfg.max_group_gap, seed=cfg.seed)
    _write_history(run_dir, metrics, state["history"], plugin.monitor)
    np.savez_compressed(run_dir / "test_predictions.npz", y_true=data.test.y, probs=p_test)
    if "confusion_matrix" in test:
        plots.confusion_matrix(test["confusion_matrix"], data.class_names, run_dir / "confusion_matrix.png",
                               title=f"test, threshold {threshold:.3g}" if plugin.task == "binary" else "test")
    if plugin.task == "binary":
        plots.roc_curve(data.test.y, p_test.reshape(-1), run_dir / "roc_curve.png", title="test ROC")
    return metrics, model


def _write_history(run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]],
                   monitor: str | list[str]) -> None:
    """metrics.json, the per-epoch history (JSON and CSV) and the learning curves."""
    write_json(run_dir / METRICS_FILE, metrics)
    write_json(run_dir / "history.json", history)
    _write_history_csv(run_dir / "history.csv", history)
    plots.learning_curves(history, monitor, run_dir / "learning_curves.png")


def _write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in history]
    path.write_text("\n".join(lines) + "\n")


def load_model(path: Path) -> keras.Model:
    """A run's ``model.keras``, loaded with ``safe_mode=True`` (no code from the archive runs).
    tlzoo's own layers are registered by importing ``tlzoo.model.assemble`` above, TF-Hub's here."""
    import tlzoo.zoo.hub  # noqa: F401  (registers HubLayer)

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"cannot load {str(path)!r} (safe_mode=True): {type(exc).__name__}: {first_line}") from exc


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], keras.Model]:
    """The resolved config and the trained model of a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a tlzoo run directory (no {CONFIG_FILE} / {MODEL_FILE})")
    return read_yaml(run_dir / CONFIG_FILE), load_model(run_dir / MODEL_FILE)


def evaluate(run_dir: str | Path, data: str | None = None, split: str = "test", batch_size: int = 64) -> dict[str, Any]:
    """Re-evaluate a run's model on its test split (or another source's), at the run's threshold."""
    config, model = load_run(run_dir)
    adapt_cfg = config["adapt"]
    plugin = run_plugin(adapt_cfg)
    splits = read_run_data(AdaptConfig.from_dict(adapt_cfg), plugin, data)
    plugin.check_data(splits)
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val or test, got {split!r}")
    s = splits.split(split)
    metrics_path = Path(run_dir) / METRICS_FILE
    saved = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if is_multitask(plugin):
        thresholds = {name: float(m.get("threshold", 0.5)) for name, m in saved.get("test", {}).items()}
        return plugin.evaluate(s.y, predict_batches(model, s.x, batch_size), threshold=thresholds)
    threshold = float(saved.get("test", {}).get("threshold", 0.5))
    return plugin.evaluate(s.y, predict(model, s.x, batch_size), threshold=threshold)


"""The adaptation recipe: build backbone + head, run the freeze schedule, evaluate, and write the run
directory. Every command (adapt, tune, demo, ...) calls this one recipe; optional features join it through
the extension hooks (``tlzoo.extensions.base``), called at each step for every active extension."""
from __future__ import annotations

import contextlib
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
from tlzoo.extensions import active_extensions
from tlzoo.extensions.base import Run, check_support
from tlzoo.model.assemble import build_model, inference_model
from tlzoo.model.multitask import MultiTask, is_multitask
from tlzoo.plugin import DomainPlugin, get_plugin, plugin_for_run
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
from tlzoo.train import batchnorm
from tlzoo.train.callbacks import EpochWatch
from tlzoo.train.checkpoints import EpochCheckpoint
from tlzoo.train.config import AdaptConfig, recorded
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


def _resolve_schedule(cfg: AdaptConfig, plugin: DomainPlugin, n_groups: int) -> FreezeSchedule:
    """The config's schedule; without a kind, the plugin's default with the config's adjustments."""
    given = cfg.schedule or {}
    if "kind" in given or "stages" in given:
        schedule = FreezeSchedule.from_dict(given)
    else:
        schedule = plugin.freeze_schedule(n_groups).adjusted(**given)
    if not schedule.stages or schedule.total_epochs == 0:
        raise ConfigError("the freeze schedule trains for 0 epochs; give at least one stage with epochs > 0")
    return schedule


def optimizer_options(plugin: DomainPlugin) -> dict[str, Any]:
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


def check_monitor(plugin: Any, num_classes: int) -> None:
    """The metric a plugin keeps its best epoch by must be one it computes: else every epoch would train and
    the run would end with "no epoch produced a finite val_<monitor>"."""
    if plugin.monitor == "loss":
        return
    names = [m if isinstance(m, str) else getattr(m, "name", type(m).__name__) for m in plugin.metrics(num_classes)]
    if plugin.monitor not in names:
        raise ConfigError(
            f"plugin {plugin.name!r} keeps the epoch with the best val_{plugin.monitor}, but its metrics are "
            f"{names or 'none'}: set the plugin's monitor to one of {names + ['loss']} (and monitor_mode 'max' or "
            f"'min'), or add a metric named {plugin.monitor!r}"
        )


def run_plugin(cfg: AdaptConfig | dict[str, Any], recorded_plugin: dict[str, Any] | None = None) -> Any:
    """The plugin a run trains with: the registered plugin with its options, wrapped in
    ``MultiTask`` when the run has several tasks. ``recorded_plugin`` (a finished run's ``config["plugin"]``)
    lets the error for a plugin missing here name the class and script that made the run."""
    cfg = cfg if isinstance(cfg, AdaptConfig) else AdaptConfig.from_dict(cfg, validate=False)
    options = cfg.plugin_options or {}
    plugin = (get_plugin(cfg.plugin, **options) if recorded_plugin is None
              else plugin_for_run(recorded_plugin, cfg.plugin, **options))
    return MultiTask(plugin, cfg.tasks) if cfg.tasks else plugin


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


def prepare_data(cfg: AdaptConfig, plugin: DomainPlugin, run: Run | None = None) -> tuple[DataSplits, int]:
    """The run's splits: read, checked, passed to the extensions (before subsampling, so attributes travel
    with the samples), then label-subsampled."""
    data = read_run_data(cfg, plugin)
    plugin.check_data(data)
    if run is None:
        run = Run(cfg, plugin, spec=None, dist=None, out=Path("."), extensions=active_extensions(cfg))
    for ext in run.extensions:
        data = ext.on_data(run, data)
    num_classes = plugin.num_classes(data)
    full_train = len(data.train)
    strata = plugin.strata(data.train.y) if is_multitask(plugin) else None
    data.train = subsample_labels(data.train, fraction=cfg.label_fraction, per_class=cfg.labels_per_class,
                                  seed=cfg.seed, strata=strata)
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

    Every run keeps per-epoch checkpoints until it is written; ``resume=True`` continues a killed run.
    With ``checkpoint_dir``, checkpoints go there instead and a re-run with the same directory continues
    from the last one (the tuner resumes interrupted trials this way).
    """
    cfg = (config if config is not None else AdaptConfig.from_dict(kwargs)).validate()
    t_start, started_at = time.perf_counter(), now()
    plugin = run_plugin(cfg)
    run = _check(cfg, plugin, checkpoint_dir)  # everything that can be checked before reading data
    recipe = plugin.custom_recipe()
    if recipe is not None:  # the plugin's own recipe (no gradient training) writes the run
        return recipe(cfg)
    exts, dist = run.extensions, run.dist
    run.data, run.num_classes = prepare_data(cfg, plugin, run)
    check_monitor(plugin, run.num_classes)
    run.class_weight = plugin.class_weights(run.data.train.y, run.num_classes)
    for ext in exts:
        ext.prepare(run)
    fit_model, weights_record = _build(run)
    resolved = _resolved(run, weights_record)
    train_ds, val_ds, steps, dist_data = _datasets(run)
    monitor = "val_" + plugin.monitor
    ckpt = None
    try:
        with atomic_dir(run.write_to, cfg.overwrite) as tmp:
            run.run_dir = tmp
            write_yaml(tmp / CONFIG_FILE, resolved)
            state = run.state = {"history": []}
            weights_view = inference_model(run.model)  # saves layer weights only, not the optimizer's
            ckpt = EpochCheckpoint(run.checkpoint_dir, weights_view) if run.checkpoint_dir else None
            resume = ckpt.record() if ckpt else None
            trained_bn: dict[str, list[Any]] = {}  # per stage, the BatchNormalization layers it trained
            for i, stage in enumerate(run.schedule.stages, start=1):
                if stage.epochs == 0 or (resume and i < resume["stage"]):  # stages an interrupted run finished
                    continue
                stage_ds, stage_steps = train_ds, steps
                for ext in exts:
                    stage_ds, stage_steps = ext.stage_data(run, i, stage, stage_ds, stage_steps)
                optimizer = _compile_stage(run, fit_model, i, stage, stage_steps)
                initial_epoch = 0
                if ckpt and resume and i == resume["stage"]:
                    with dist.scope():  # the optimizer's variables are created here
                        initial_epoch = ckpt.restore(fit_model, optimizer, state, tmp / BEST_WEIGHTS)
                    if cfg.verbose:
                        print(f"resuming stage {i} from the checkpoint of its epoch {initial_epoch}", flush=True)
                callbacks = [c for ext in exts for c in ext.callbacks(run, i, stage)]  # may add to the logs
                callbacks.append(EpochWatch(monitor, plugin.monitor_mode, tmp / BEST_WEIGHTS, stage, state,
                                            weights_view))
                if stage.patience:
                    callbacks.append(keras.callbacks.EarlyStopping(monitor, patience=stage.patience,
                                                                   mode=plugin.monitor_mode))
                if ckpt and dist.is_chief:  # every worker holds the same values; the chief writes them
                    callbacks.append(ckpt.callback(i, optimizer, state, tmp / BEST_WEIGHTS, last_epoch=stage.epochs,
                                                   interval_s=cfg.checkpoint_interval if run.owns_checkpoints else 0))
                with batchnorm.momentum_for_steps(run.model, stage_steps) as bn_layers:
                    trained_bn[stage.name] = bn_layers
                    _fit_stage(run, fit_model, stage_ds, val_ds, dist_data, stage, initial_epoch, callbacks)
                if any([ext.after_stage(run, i, stage) for ext in exts]):
                    break
            if "best" not in state:
                raise TrainingError(f"no epoch produced a finite {monitor}; nothing to keep")
            weights_view.load_weights(tmp / BEST_WEIGHTS)
            run.model = weights_view
            # the BN layers of the stage the kept weights come from: the head was fitted against their statistics
            resolved["batchnorm"] = _reestimate_batchnorm(run, trained_bn.get(state.get("best_stage"), []))
            for ext in exts:
                ext.after_training(run)
            metrics = _evaluate_and_report(run)
            resolved.update(started_at=started_at, finished_at=now(),
                            wall_time_s=round(time.perf_counter() - t_start, 1))
            write_yaml(tmp / CONFIG_FILE, resolved)
            run.model.save(tmp / MODEL_FILE)
    except BaseException:
        if ckpt is not None:  # the epoch that finished before the interruption stays resumable
            with contextlib.suppress(Exception):
                ckpt.wait()
        for ext in exts:
            ext.finish(run, ok=False)
        raise
    for ext in exts:
        ext.finish(run, ok=True)
    _finish_workers(run, checkpoint_dir)
    if cfg.verbose:
        print(f"run written to {run.out}", flush=True)
    return RunResult(run.out, metrics, state["history"], resolved)


def _check(cfg: AdaptConfig, plugin: DomainPlugin, checkpoint_dir: str | Path | None) -> Run:
    """The run's plan, checked: backbone, input size, strategy, output directory, and every active
    extension against it (in one place: ``check`` and the declared support). Nothing is read yet."""
    backbone_name = cfg.backbone or plugin.default_backbone
    spec = get_backbone_spec(backbone_name)
    safe_backbone = "".join(c if c.isalnum() or c in "._-" else "_" for c in backbone_name)  # "hub:/path"
    out = Path(cfg.out or f"runs/{plugin.name}-{safe_backbone}-{time.strftime('%Y%m%d-%H%M%S')}")
    run = Run(cfg, plugin, spec, dist=None, out=out, extensions=active_extensions(cfg))
    run.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    if plugin.custom_recipe() is not None:
        for ext in run.extensions:
            if ext.custom_recipe:
                ext.check(run)
            check_support(ext, run)
        return run
    if spec.modality != plugin.modality and "timeseries" in (spec.modality, plugin.modality):
        raise ConfigError(f"backbone {backbone_name!r} is a {spec.modality} backbone; plugin {plugin.name!r} "
                          f"needs a {plugin.modality} one (see `tlzoo backbones`)")
    run.input_size = int(cfg.input_size or plugin.default_input_size or spec.default_size)
    if spec.modality == "image":
        check_input_shape(spec, (run.input_size, run.input_size, spec.channels))
    if not is_multitask(plugin):
        plugin.check_threshold_option()
    run.dist = dist = select_strategy(cfg.strategy)
    dist.check_batch(cfg.batch_size)
    if is_multitask(plugin) and not dist.uses_fit:
        raise ConfigError("multi-task heads train with Model.fit; the multiworker strategy's custom loop does not "
                          "support them yet: use --strategy one or mirrored")
    if dist.kind == "multiworker":  # fault tolerance: a restarted cluster resumes from here
        run.checkpoint_dir = run.checkpoint_dir or Path(f"{out}.backup")
    # workers other than the chief write a throw-away copy
    run.write_to = out if dist.is_chief else Path(tempfile.mkdtemp(prefix="tlzoo-worker-")) / "run"
    check_target(run.write_to, cfg.overwrite)
    for ext in run.extensions:
        ext.check(run)
        check_support(ext, run)
    run.augment = _augmenter(plugin)
    return run


def _build(run: Run) -> tuple[Any, Any]:
    """Backbone, layer groups, schedule and model, inside the strategy's scope; the extensions may wrap
    the model (loss terms, a trainer). Returns the model ``fit`` trains and the weights' record."""
    cfg, plugin, data, spec = run.cfg, run.plugin, run.data, run.spec
    # options a plugin filled in from the data (e.g. its feature columns) travel with the run, so
    # evaluate and export read new data the same way (and stop if a column is missing)
    defaults = plugin.all_default_options()
    cfg.plugin_options = {**cfg.plugin_options, **{k: v for k, v in plugin.options.items()
                                                   if k not in cfg.plugin_options and v != defaults.get(k)}}
    backbone_shape: tuple[Any, ...] = (run.input_size, run.input_size, spec.channels)
    if spec.modality == "timeseries":  # (time, channels) from the data; time stays free in the model
        check_input_shape(spec, data.train.x.shape[1:])
        backbone_shape = (None, int(data.train.x.shape[-1]))
    cfg.weights = spec.weights_name(cfg.weights)
    keras.utils.set_random_seed(cfg.seed)
    with run.dist.scope():  # variables are created where the strategy can mirror them
        run.backbone, run.spec, weights_record = build_backbone(cfg.backbone or plugin.default_backbone, cfg.weights,
                                                                backbone_shape, sha256=cfg.weights_sha256,
                                                                pooling=cfg.pooling)
        run.backbone = plugin.adjust_backbone(run.backbone, run.spec) or run.backbone
        run.groups = layer_groups(run.backbone, run.spec)
        schedule = _resolve_schedule(cfg, plugin, len(run.groups)).within_budget(len(data.train), cfg.max_samples_seen)
        if cfg.weights is None and spec.family != "tfhub":  # random init: BN layers learn their statistics
            schedule = schedule.with_batchnorm_training()
        if run.dist.replicas > 1 and any(s.train_batchnorm for s in schedule.stages):
            synchronize_batchnorm(run.backbone)  # else each replica keeps its own moving statistics
        run.schedule = schedule
        run.model = fit_model = build_model(plugin, spec, run.backbone, data.train.x.shape[1:], run.input_size,
                                            run.num_classes)
        for ext in run.extensions:
            fit_model = ext.on_model(run) or fit_model  # a wrapper that trains run.model
    return fit_model, weights_record


def _resolved(run: Run, weights_record: Any) -> dict[str, Any]:
    """The run's config.yaml: the settings in sections, and everything they resolved to."""
    cfg, plugin, spec = run.cfg, run.plugin, run.spec
    resolved = {
        "adapt": cfg.to_record(out=str(run.out), backbone=cfg.backbone or plugin.default_backbone,
                               input_size=run.input_size),
        "distribution": run.dist.describe(),
        "schedule": run.schedule.to_dict(),
        "plugin": plugin.describe() | {"options": plugin.options},
        "backbone": {"name": spec.name, "family": spec.family, "num_params": spec.num_params,
                     "layer_groups": [g.name for g in run.groups], "preprocess": spec.preprocess_name},
        "weights": weights_record.to_dict() if weights_record else {
            "source": "random" if cfg.weights is None else cfg.weights,
            **({"lineage": spec.weights_info(cfg.weights).dataset} if spec.weights_info(str(cfg.weights)) else {})},
        "data": {**run.data.summary(), "fingerprint": run.data.fingerprint()},
        "class_weight": run.class_weight,
        "environment": environment(),
    }
    for ext in run.extensions:
        resolved.update(ext.record(run))
    return resolved


def _datasets(run: Run) -> tuple[Any, Any, int, Any]:
    """Training and validation pipelines (and their distributed forms for the custom loop)."""
    cfg, plugin, data, dist = run.cfg, run.plugin, run.data, run.dist
    targets = plugin.training_targets if is_multitask(plugin) else None  # one label array per task output
    image_size = run.input_size if run.spec.modality == "image" else None  # resized before augmentation

    def train_data(batch_size: int, shard: tuple[int, int] | None = None) -> Any:
        return make_dataset(data.train, batch_size=batch_size, training=True, seed=cfg.seed, augment=run.augment,
                            label_fn=targets, image_size=image_size, shard=shard)

    def val_data(batch_size: int, shard: tuple[int, int] | None = None) -> Any:
        return make_dataset(data.val, batch_size=batch_size, training=False, label_fn=targets, shard=shard)

    train_ds, val_ds = train_data(cfg.batch_size), val_data(cfg.batch_size)
    steps = math.ceil(len(data.train) / cfg.batch_size)
    if dist.uses_fit:
        dist_data = None
    elif data.streamed and data.train.x.shardable:  # files: each worker decodes its own shard only
        dist_data = (dist.distribute_shards(train_data, cfg.batch_size),
                     dist.distribute_shards(val_data, cfg.batch_size))
    else:
        dist_data = (dist.distribute_dataset(train_ds), dist.distribute_dataset(val_ds))
    return train_ds, val_ds, steps, dist_data


def _compile_stage(run: Run, fit_model: Any, index: int, stage: Stage, steps: int) -> Any:
    """Set the stage's trainable groups and learning rates, compile, and say what trains."""
    plugin, groups = run.plugin, run.groups
    run.multipliers = apply_stage(run.backbone, groups, stage)
    with run.dist.scope():
        run.optimizer = make_optimizer(plugin.options["optimizer"], stage_learning_rate(stage, steps), run.multipliers,
                                       **optimizer_options(plugin))
        fit_model.compile(optimizer=run.optimizer, loss=plugin.loss(run.num_classes),
                          metrics=plugin.metrics(run.num_classes))
    if run.cfg.verbose:
        n_train = sum(int(np.prod(v.shape)) for v in run.model.trainable_weights)
        print(f"stage {index}/{len(run.schedule.stages)} {stage.name!r}: {stage.epochs} epochs, "
              f"{len(trainable_groups(groups, stage))}/{len(groups)} backbone groups trainable, "
              f"{n_train:,} trainable parameters, lr {stage.learning_rate:g}"
              + (f" (x{stage.lr_decay:g} per group down)" if stage.lr_decay < 1 else ""), flush=True)
    return run.optimizer


def _reestimate_batchnorm(run: Run, layers: list[Any]) -> dict[str, Any]:
    """The statistics of the BN layers that trained, re-estimated on the weights kept (tlzoo/train/batchnorm.py)."""
    if not layers:
        return {"reestimated": False, "why": "the stage the kept weights come from trained no BatchNormalization"}
    if not run.cfg.batchnorm_reestimate:
        return {"reestimated": False, "why": "batchnorm_reestimate is off"}
    if run.dist.replicas > 1:
        return {"reestimated": False, "why": "several replicas: their synchronised moving averages are kept"}
    done = batchnorm.reestimate(run.model, run.data.train.x, layers, batch_size=run.cfg.batch_size, seed=run.cfg.seed)
    return {"reestimated": True, **done}


def _fit_stage(run: Run, fit_model: Any, train_ds: Any, val_ds: Any, dist_data: Any, stage: Stage,
               initial_epoch: int, callbacks: list[Any]) -> None:
    class_weight = run.class_weight
    if run.dist.uses_fit:
        fit_model.fit(train_ds, validation_data=val_ds, epochs=stage.epochs, initial_epoch=initial_epoch,
                      class_weight=class_weight, callbacks=callbacks, shuffle=False,
                      verbose=1 if run.cfg.verbose else 0)
        return
    with run.dist.scope():  # Model.fit fails under MultiWorkerMirroredStrategy in Keras 3: same stage, custom step
        loop = StageLoop(run.dist, run.model, run.optimizer, run.plugin.loss(run.num_classes),
                         run.plugin.metrics(run.num_classes), class_weight)
    loop.fit(dist_data[0], dist_data[1], stage.epochs, callbacks, initial_epoch=initial_epoch)


def _finish_workers(run: Run, checkpoint_dir: str | Path | None) -> None:
    dist = run.dist
    if dist.kind == "multiworker":
        rank = dist.cluster.rank if dist.cluster else 0
        print(f"worker {rank}: final weights sha256 {weights_digest(run.model)}", flush=True)
        dist.barrier()  # the chief has written the run directory
    if not dist.is_chief:
        shutil.rmtree(run.write_to.parent, ignore_errors=True)
    elif dist.kind == "multiworker" and run.checkpoint_dir is not None:
        shutil.rmtree(run.checkpoint_dir, ignore_errors=True)  # the run finished: nothing to resume


def _evaluate_and_report(run: Run) -> dict[str, Any]:
    """Test and validation metrics at the chosen threshold, after the extensions saw the predictions
    (calibration replaces them and ``run.model``); the files beside them."""
    cfg, plugin, data, state, run_dir = run.cfg, run.plugin, run.data, run.state, run.run_dir
    kept = {"best_epoch": state["best_epoch"], "best_stage": state["best_stage"]}
    monitor = {"name": "val_" + plugin.monitor, "value": state["best"]}
    if is_multitask(plugin):
        metrics, run.model, p_test_tasks = plugin.score(run_dir, run.model, data, cfg.calibration, cfg.batch_size)
        metrics.update(**kept, monitor=monitor, n_train=len(data.train))
        for ext in run.extensions:
            metrics.update(ext.metrics(run))
        _write_history(run_dir, metrics, state["history"], plugin.curve_metrics)
        np.savez_compressed(run_dir / "test_predictions.npz", y_true=data.test.y, **p_test_tasks)
        return metrics
    p_val = predict(run.model, data.val.x, cfg.batch_size)
    p_test = predict(run.model, data.test.x, cfg.batch_size)
    for ext in run.extensions:
        p_val, p_test = ext.on_predictions(run, p_val, p_test)
    threshold = plugin.choose_threshold(data.val.y, p_val)
    state.update(p_test=p_test, threshold=threshold)
    test = plugin.evaluate(data.test.y, p_test, threshold=threshold)
    metrics = {
        "test": test,
        "val": plugin.evaluate(data.val.y, p_val, threshold=threshold),
        "threshold_policy": plugin.options.get("threshold") if plugin.task == "binary" else "argmax",
        "calibration": state.get("calibration"),
        **kept,
        "monitor": monitor,
        "n_train": len(data.train),
        "class_names": data.class_names,
    }
    metrics.update(plugin.extra_reports(run_dir, data, p_val, p_test, threshold))  # e.g. a baseline beside it
    for ext in run.extensions:
        metrics.update(ext.metrics(run))
    _write_history(run_dir, metrics, state["history"], plugin.monitor)
    np.savez_compressed(run_dir / "test_predictions.npz", y_true=data.test.y, probs=p_test)
    if "confusion_matrix" in test:
        plots.confusion_matrix(test["confusion_matrix"], data.class_names, run_dir / "confusion_matrix.png",
                               title=f"test, threshold {threshold:.3g}" if plugin.task == "binary" else "test")
    if plugin.task == "binary":
        plots.roc_curve(data.test.y, p_test.reshape(-1), run_dir / "roc_curve.png", title="test ROC")
    return metrics


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
    tlzoo's own layers are registered by importing ``tlzoo.model.assemble`` above; TF-Hub's and the anomaly
    model's here."""
    import tlzoo.anomaly  # noqa: F401  (registers the anomaly model's layers)
    import tlzoo.zoo.hub  # noqa: F401  (registers HubLayer)
    from tlzoo.plugin import discover_plugins

    discover_plugins()  # every installed plugin's module: a head may use a plugin's own registered layers

    if _holds_keras_hub_layers(path):
        import tlzoo.zoo.keras_hub  # noqa: F401  (imports keras_hub, whose import registers its layers)

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"cannot load {str(path)!r} (safe_mode=True): {type(exc).__name__}: {first_line}") from exc


def _holds_keras_hub_layers(path: Path) -> bool:
    """Whether a ``.keras`` archive's config names KerasHub layers (importing keras_hub costs seconds)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return b"keras_hub" in archive.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], keras.Model]:
    """The resolved config and the trained model of a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a tlzoo run directory (no {CONFIG_FILE} / {MODEL_FILE})")
    return read_yaml(run_dir / CONFIG_FILE), load_model(run_dir / MODEL_FILE)


def evaluate(run_dir: str | Path, data: str | None = None, split: str = "test", batch_size: int = 64) -> dict[str, Any]:
    """Re-evaluate a run's model on its test split (or another source's), at the run's threshold."""
    config, model = load_run(run_dir)
    cfg = recorded(config)
    plugin = run_plugin(cfg, config.get("plugin") or {})
    splits = read_run_data(cfg, plugin, data)
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


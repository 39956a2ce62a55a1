"""Domain adaptation and source-regularised fine-tuning: run options of the ``adapt`` recipe.

- **L2-SP** (Li, Grandvalet, Davoine, ICML 2018): ``alpha/2 ||w_backbone - w0||^2 + beta/2 ||w_head||^2``,
  pulling the fine-tuned backbone toward its pretrained weights ``w0`` instead of toward zero.
- **Deep CORAL** (Sun and Saenko, ECCV-W 2016): ``||C_s - C_t||_F^2 / (4 d^2)`` between the covariances of
  source and (unlabelled) target features.
- **DANN** (Ganin et al., JMLR 2016): a domain classifier behind a gradient-reversal layer whose factor
  follows ``lambda(p) = 2 / (1 + exp(-10 p)) - 1`` over the training progress ``p``.
- **Hybrid data**: the (small, labelled) target set mixed per batch with labelled source-domain data at a
  ratio annealed linearly over the schedule's stages.

Features for CORAL / DANN are the backbone's output, globally average-pooled: the same vector the plugin's
head starts from. The model that is saved and exported stays the adapted network itself: the trainer and
the domain classifier exist only while training. TensorFlow backend (``tf.GradientTape``, ``tf.custom_gradient``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import keras
import numpy as np

from tlzoo.data import (
    IMAGE_SUFFIXES,
    DataOptions,
    DataSplits,
    ImageFiles,
    Split,
    array_fingerprint,
    as_images,
    is_lazy,
    resolve_path,
)
from tlzoo.data.folders import list_files
from tlzoo.data.images import index_files
from tlzoo.data.stream import shuffled_samples
from tlzoo.errors import ConfigError, DataError
from tlzoo.model.assemble import backbone_call

DA_METHODS = ("coral", "dann")


# ---------------------------------------------------------------- mechanics


def grl_schedule(progress: float) -> float:
    """Ganin et al.'s reversal factor: 0 at the start of training, toward 1 at its end."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


@keras.saving.register_keras_serializable(package="tlzoo")
class GradientReversal(keras.layers.Layer):
    """Identity forward; multiplies the gradient by ``-lambda`` backward. ``lambda`` is a variable,
    so a schedule can change it between steps without retracing the training function."""

    def __init__(self, lambda_: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lambda_ = self.add_weight(shape=(), initializer=keras.initializers.Constant(float(lambda_)),
                                       trainable=False, name="lambda")

    def set_lambda(self, value: float) -> None:
        self.lambda_.assign(float(value))

    def call(self, inputs: Any) -> Any:
        import tensorflow as tf

        @tf.custom_gradient
        def reverse(x: Any, lam: Any) -> Any:
            def grad(dy: Any) -> Any:
                return -lam * dy, tf.zeros_like(lam)

            return tf.identity(x), grad

        return reverse(inputs, tf.cast(tf.convert_to_tensor(self.lambda_), inputs.dtype))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "lambda_": float(keras.ops.convert_to_numpy(self.lambda_))}


def coral_loss(fs: Any, ft: Any) -> Any:
    """Deep CORAL: ``||C_s - C_t||_F^2 / (4 d^2)`` with unbiased covariances of ``fs`` (n, d) and ``ft`` (m, d)."""
    ops = keras.ops

    def cov(f: Any) -> Any:
        f = ops.cast(f, "float32")
        n = ops.cast(ops.shape(f)[0], "float32")
        centred = f - ops.mean(f, axis=0, keepdims=True)
        return ops.matmul(ops.transpose(centred), centred) / ops.maximum(n - 1.0, 1.0)  # n = 1: no division by 0

    d = ops.cast(ops.shape(fs)[-1], "float32")
    return ops.sum(ops.square(cov(fs) - cov(ft))) / (4.0 * d * d)


def l2sp_penalty(variables: Sequence[Any], anchors: Sequence[Any], alpha: float) -> Any:
    """``alpha/2 * sum ||w - w0||^2`` over paired variables and anchors; its gradient is ``alpha (w - w0)``.
    With anchors of zero (``keras.ops.zeros_like``) it is plain weight decay, as L2-SP's ``beta`` term."""
    ops = keras.ops
    total = ops.convert_to_tensor(0.0)
    for w, w0 in zip(variables, anchors):
        total = total + ops.sum(ops.square(ops.cast(w, "float32") - ops.cast(w0, "float32")))
    return 0.5 * float(alpha) * total


def domain_loss_and_accuracy(logits: Any, n_source: Any) -> tuple[Any, Any]:
    """Binary cross-entropy of a domain classifier (source = 0, target = 1) and its accuracy; ``logits`` are
    the source rows first, then the target rows."""
    ops = keras.ops
    logits = ops.reshape(ops.cast(logits, "float32"), (-1,))
    idx = ops.arange(ops.shape(logits)[0])
    labels = ops.cast(idx >= ops.cast(n_source, idx.dtype), "float32")
    loss = ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))
    acc = ops.mean(ops.cast(ops.equal(ops.cast(logits > 0, "float32"), labels), "float32"))
    return loss, acc


def domain_classifier(feature_dim: int, hidden: int = 256, dropout: float = 0.2,
                      name: str = "domain_head") -> keras.Model:
    """DANN's domain discriminator: pooled features -> Dense(hidden, relu) -> dropout -> one logit."""
    inputs = keras.Input((int(feature_dim),), name=f"{name}_features")
    x = keras.layers.Dense(hidden, activation="relu", name=f"{name}_hidden")(inputs)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name=f"{name}_logit", dtype="float32")(x), name=name)


def pooled_features(net: keras.Model, backbone: keras.Model) -> Any:
    """Backbone output averaged over space (images) or time (series): the features CORAL / DANN align."""
    out = backbone_call(backbone)[1]
    if len(out.shape) == 4:
        return keras.layers.GlobalAveragePooling2D(name="da_pool")(out)
    if len(out.shape) == 3:
        return keras.layers.GlobalAveragePooling1D(name="da_pool")(out)
    return out


class AdaptationTrainer(keras.Model):
    """Trains ``net`` (the adapted model) with L2-SP and / or CORAL / DANN terms added to its loss.

    Batches are ``(x_source, y[, w])`` or, with CORAL / DANN, ``((x_source, x_target), y[, w])``: the
    supervised loss (and the class weights, as sample weights) uses the source part only. Validation and
    prediction delegate to ``net``. Logs: ``loss`` (the total), ``l2sp``, ``coral_loss``, ``domain_loss``,
    ``domain_accuracy``, ``grl_lambda``. Save ``net``, never this. Epoch checkpoints hold ``net`` and the
    optimizer: a resumed DANN run restarts its domain classifier (the L2-SP anchors are the weights as built).
    """

    def __init__(self, net: keras.Model, backbone: keras.Model, *, method: str | None = None, da_weight: float = 1.0,
                 l2sp_alpha: float | None = None, l2sp_beta: float = 0.0, domain_hidden: int = 256) -> None:
        super().__init__(name=f"{net.name}_trainer")
        if len(net.outputs) != 1:
            raise ConfigError(f"domain adaptation / L2-SP support single-output models; {net.name} has "
                              f"{len(net.outputs)} outputs")
        self.net = net
        self.backbone = backbone
        self.method = method
        self.da_weight = float(da_weight)
        self.l2sp_alpha, self.l2sp_beta = l2sp_alpha, float(l2sp_beta)
        self._trackers: dict[str, keras.metrics.Metric] = {}
        if method in DA_METHODS:
            feats = pooled_features(net, backbone)
            self.joint = keras.Model(net.inputs, [net.outputs[0], feats], name="da_joint")
            self.features = keras.Model(net.inputs, feats, name="da_features")
            names = ["coral_loss"] if method == "coral" else ["domain_loss", "domain_accuracy"]
            if method == "dann":
                self.grl = GradientReversal(0.0, name="grl")
                self.domain_head = domain_classifier(int(feats.shape[-1]), domain_hidden)
        elif method is not None:
            raise ConfigError(f"domain adaptation method must be one of {DA_METHODS}, got {method!r}")
        else:
            names = []
        if l2sp_alpha is not None:
            # the pretrained weights, as they are now (before any training step): L2-SP's anchor w0
            self._anchored = list(backbone.weights)
            self._anchors = [keras.Variable(keras.ops.convert_to_numpy(v), trainable=False, name=f"l2sp_anchor_{i}")
                             for i, v in enumerate(self._anchored)]
            self._backbone_ids = {id(v) for v in self._anchored}
            names.append("l2sp")
        for name in names:  # epoch means, reset by fit with the compiled metrics
            self._trackers[name] = keras.metrics.Mean(name=name)
        self.progress: dict[str, int] = {"offset": 0, "total": 1, "steps_per_epoch": 1}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if isinstance(inputs, (tuple, list)):  # (source, target): the prediction is the source's
            inputs = inputs[0]
        return self.net(inputs, training=training)

    def l2sp_term(self) -> Any:
        """The L2-SP penalty over what trains now: backbone toward w0 (``alpha``), the rest toward 0 (``beta``)."""
        trainable = {id(v) for v in self.net.trainable_variables}
        pairs = [(v, a) for v, a in zip(self._anchored, self._anchors) if id(v) in trainable]
        term = l2sp_penalty([p[0] for p in pairs], [p[1] for p in pairs], self.l2sp_alpha or 0.0)
        if self.l2sp_beta:
            head = [v for v in self.net.trainable_variables if id(v) not in self._backbone_ids]
            term = term + l2sp_penalty(head, [keras.ops.zeros_like(v) for v in head], self.l2sp_beta)
        return term

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        from tlzoo.compat import compute_loss, loss_tracker, unscale_loss_for_distribution

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        xs, xt = (x[0], x[1]) if isinstance(x, (tuple, list)) else (x, None)
        values: dict[str, Any] = {}
        with tf.GradientTape() as tape:
            if self.method is not None:
                if xt is None:
                    raise ConfigError(f"{self.method} needs batches of (source, target) images")
                y_pred, fs = self.joint(xs, training=True)
                ft = self.features(xt, training=True)
            else:
                y_pred = self.net(xs, training=True)
            total = compute_loss(self, x=xs, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            if self.method == "coral":
                values["coral_loss"] = coral_loss(fs, ft)
                total = total + self.da_weight * values["coral_loss"]
            elif self.method == "dann":
                logits = self.domain_head(self.grl(tf.concat([fs, ft], 0)), training=True)
                values["domain_loss"], values["domain_accuracy"] = domain_loss_and_accuracy(logits, tf.shape(fs)[0])
                total = total + self.da_weight * values["domain_loss"]
            if self.l2sp_alpha is not None:
                values["l2sp"] = self.l2sp_term()
                total = total + values["l2sp"]
            loss_tracker(self).update_state(unscale_loss_for_distribution(total),
                                            sample_weight=tf.shape(xs)[0])
            scaled = self.optimizer.scale_loss(total)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        for name, value in values.items():
            self._trackers[name].update_state(value)
        logs = self.compute_metrics(xs, y, y_pred, sample_weight=sample_weight)
        if self.method == "dann":
            logs["grl_lambda"] = tf.convert_to_tensor(self.grl.lambda_)
        return logs

    def test_step(self, data: Any) -> dict[str, Any]:
        logs = super().test_step(data)  # through call(): net on the (source-domain) validation split
        return {k: v for k, v in logs.items() if k not in self._trackers}

    def fit(self, *args: Any, callbacks: list[Any] | None = None, **kwargs: Any) -> Any:
        """``Model.fit``, with DANN's reversal factor set before every step from the progress over the
        whole schedule (``progress`` is set per stage by :class:`DomainPlan`; resumes land right)."""
        extra = [_LambdaSchedule(self)] if self.method == "dann" else []
        return super().fit(*args, callbacks=[*(callbacks or []), *extra], **kwargs)


class _LambdaSchedule(keras.callbacks.Callback):
    def __init__(self, trainer: AdaptationTrainer) -> None:
        super().__init__()
        self.trainer, self.epoch = trainer, 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        p = self.trainer.progress
        step = p["offset"] + self.epoch * p["steps_per_epoch"] + batch
        self.trainer.grl.set_lambda(grl_schedule(step / max(1, p["total"])))


# ---------------------------------------------------------------- data


def read_unlabelled_images(source: str, *, skip_bad: bool = False) -> Any:
    """Unlabelled target images: an .npz with ``images`` (or ``train_images``; labels, if any, are ignored),
    or a folder of image files of any size, mode and format (searched recursively; streamed like the
    training data, every bad file listed)."""
    path = resolve_path(source)
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                key = next((k for k in ("images", "train_images") if k in f.files), None)
                if key is None:
                    raise DataError(f"target data {source!r}: no 'images' or 'train_images' array "
                                    f"(found {sorted(f.files)})")
                return as_images(f[key], f"{path}:{key}")
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"cannot read target data {source!r} as .npz: {exc}") from None
    if path.is_dir():
        files, _, _ = list_files(path)
        if not files:
            raise DataError(f"target data folder {source!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        good, infos, _, channels = index_files(files, where=f"target data {source!r}", skip_bad=skip_bad, verbose=False)
        return ImageFiles(np.asarray(files)[good], [i.route for i in infos], channels, root=str(path))
    raise DataError(f"target data {source!r} does not exist (an .npz with 'images', or a folder of images)")


def hybrid_steps(n_target: int, n_source: int, ratio: float, batch_size: int) -> int:
    """Steps per epoch that cover the target set once on average; ratio 1 (source only): the source once."""
    if ratio >= 1.0:
        return max(1, math.ceil(n_source / batch_size))
    return max(1, math.ceil(n_target / (batch_size * (1.0 - ratio))))


def hybrid_dataset(target: Split, source: Split, ratio: float, batch_size: int, *, seed: int = 0,
                   augment: Any = None, steps: int | None = None) -> Any:
    """Batches drawing each sample from the source with probability ``ratio``, else from the target (both
    repeated and reshuffled; float32 images of one size). ``steps`` batches per pass (default
    :func:`hybrid_steps`), so ``fit`` sees an epoch of a known length."""
    import tensorflow as tf

    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"hybrid ratio must be within 0..1, got {ratio}")
    steps = steps or hybrid_steps(len(target), len(source), ratio, batch_size)

    def stream(split: Split, offset: int) -> Any:
        return shuffled_samples(split.x, split.y, seed=seed + offset)

    if ratio <= 0.0:
        ds = stream(target, 0)
    elif ratio >= 1.0:
        ds = stream(source, 1)
    else:
        ds = tf.data.Dataset.sample_from_datasets([stream(target, 0), stream(source, 1)], weights=[1.0 - ratio, ratio],
                                                  seed=seed)
    ds = ds.take(steps * batch_size).batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def paired_dataset(labelled: Any, target_x: Any, batch_size: int, *, seed: int = 0, augment: Any = None) -> Any:
    """``((x_source, x_target), y[, w])`` batches: each labelled batch with a batch of unlabelled target
    images (repeated and reshuffled, augmented like the source); the epoch ends with the labelled data."""
    import tensorflow as tf

    tgt = shuffled_samples(target_x, seed=seed + 7).batch(batch_size)
    if augment is not None:
        tgt = tgt.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return tf.data.Dataset.zip((labelled, tgt)).map(lambda a, t: ((a[0], t), *a[1:])).prefetch(tf.data.AUTOTUNE)


def _resize_to(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import tensorflow as tf

    return np.asarray(tf.image.resize(tf.cast(x, tf.float32), hw, antialias=True))


# ---------------------------------------------------------------- the run option


def check_strategy(kind: str) -> None:
    if kind == "multiworker":
        raise ConfigError("domain adaptation, L2-SP and hybrid data run under Model.fit, which fails under "
                          "MultiWorkerMirroredStrategy (keras-team/keras#20585); use --strategy one or mirrored")


def requested(cfg: Any) -> bool:
    return bool(cfg.domain_adaptation or cfg.l2sp is not None or cfg.hybrid_source)


def check_config(cfg: Any, plugin: Any) -> None:
    """The options' values, before any data is read (ConfigError naming the value and the fix)."""
    if not requested(cfg):
        for name in ("target_data", "hybrid_ratio", "hybrid_ratio_end"):
            if getattr(cfg, name) is not None:
                flag = "--domain-adaptation coral|dann" if name == "target_data" else "--hybrid-source PATH"
                raise ConfigError(f"{name} is set ({getattr(cfg, name)!r}) but does nothing without {flag}")
        return
    from tlzoo.model.multitask import is_multitask

    if is_multitask(plugin):
        raise ConfigError("domain adaptation, L2-SP and hybrid data support single-task runs; "
                          "drop `tasks` or these options")
    if plugin.custom_recipe() is not None:
        raise ConfigError(f"plugin {plugin.name!r} runs its own recipe (option mode={plugin.options.get('mode')!r}); "
                          "domain adaptation, L2-SP and hybrid data apply to gradient training only")
    method = cfg.domain_adaptation
    if method is not None:
        if method not in DA_METHODS:
            raise ConfigError(f"domain_adaptation must be one of {', '.join(DA_METHODS)}, got {method!r}")
        if not cfg.target_data:
            raise ConfigError(f"domain_adaptation={method!r} needs unlabelled target images: give target_data "
                              "(--target-data PATH: an .npz with 'images', or a folder)")
        if plugin.modality != "image":
            raise ConfigError(f"domain_adaptation reads unlabelled target images; plugin {plugin.name!r} is "
                              f"{plugin.modality}")
    elif cfg.target_data:
        raise ConfigError(f"target_data is set ({cfg.target_data!r}) but no method: add --domain-adaptation coral|dann")
    if not (isinstance(cfg.da_weight, (int, float)) and math.isfinite(cfg.da_weight) and cfg.da_weight >= 0):
        raise ConfigError(f"da_weight must be a finite number >= 0, got {cfg.da_weight!r}")
    for name in ("l2sp", "l2sp_beta"):
        v = getattr(cfg, name)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0 (L2-SP's alpha / beta, e.g. 0.01), got {v!r}")
    if cfg.hybrid_source:
        for name in ("hybrid_ratio", "hybrid_ratio_end"):
            v = getattr(cfg, name)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ConfigError(f"{name} must be within 0..1 (the share of source-domain samples per batch), "
                                  f"got {v!r}")
    elif cfg.hybrid_ratio is not None or cfg.hybrid_ratio_end is not None:
        raise ConfigError("hybrid_ratio is set but there is no source-domain data: "
                          "give hybrid_source (--hybrid-source PATH)")


@dataclass
class DomainPlan:
    """What a run does beyond plain fine-tuning, with its data loaded and checked."""

    method: str | None
    da_weight: float
    l2sp: float | None
    l2sp_beta: float
    batch_size: int
    seed: int
    augment: Any = None
    target_x: np.ndarray | None = None
    target_record: dict[str, Any] = field(default_factory=dict)
    source: Split | None = None
    source_record: dict[str, Any] = field(default_factory=dict)
    ratio: float = 0.5
    ratio_end: float = 0.5
    notes: list[str] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)  # per stage: ratio, steps per epoch
    trainer: AdaptationTrainer | None = None

    def attach(self, model: keras.Model, backbone: keras.Model, schedule: Any, n_train: int) -> keras.Model:
        """Plan the stages (hybrid ratios, steps) and return the model ``fit`` trains: ``model`` itself, or an
        :class:`AdaptationTrainer` around it. Call where the model's variables are created (strategy scope)."""
        active = [i for i, s in enumerate(schedule.stages, start=1) if s.epochs > 0]
        self.stages = []
        for i, stage in enumerate(schedule.stages, start=1):
            row: dict[str, Any] = {"stage": stage.name, "epochs": stage.epochs}
            if self.source is not None:
                k = active.index(i) if i in active else 0
                r = self.ratio + (self.ratio_end - self.ratio) * (k / (len(active) - 1) if len(active) > 1 else 0.0)
                row["hybrid_ratio"] = round(r, 6)
                row["steps_per_epoch"] = hybrid_steps(n_train, len(self.source), r, self.batch_size)
            else:
                row["steps_per_epoch"] = max(1, math.ceil(n_train / self.batch_size))
            self.stages.append(row)
        if self.method is None and self.l2sp is None:
            return model
        self.trainer = AdaptationTrainer(model, backbone, method=self.method, da_weight=self.da_weight,
                                         l2sp_alpha=self.l2sp, l2sp_beta=self.l2sp_beta)
        self.trainer.progress["total"] = sum(r["epochs"] * r["steps_per_epoch"] for r in self.stages)
        return self.trainer

    def stage_data(self, i: int, train: Split, train_ds: Any) -> tuple[Any, int]:
        """Stage ``i``'s (1-based) training data and steps per epoch."""
        row = self.stages[i - 1]
        ds = train_ds
        if self.source is not None:
            ds = hybrid_dataset(train, self.source, row["hybrid_ratio"], self.batch_size, seed=self.seed + i,
                                augment=self.augment, steps=row["steps_per_epoch"])
        if self.method is not None:
            ds = paired_dataset(ds, self.target_x, self.batch_size, seed=self.seed + i, augment=self.augment)
        if self.trainer is not None:
            progress = self.trainer.progress  # a Keras-tracked dict: item by item
            progress["offset"] = sum(r["epochs"] * r["steps_per_epoch"] for r in self.stages[: i - 1])
            progress["steps_per_epoch"] = row["steps_per_epoch"]
        return ds, row["steps_per_epoch"]

    def describe(self) -> dict[str, Any]:
        """The run's ``adaptation_method`` record (config.yaml, model card)."""
        out: dict[str, Any] = {"methods": [m for m in (self.method, "l2sp" if self.l2sp is not None else None,
                                                         "hybrid" if self.source is not None else None) if m]}
        if self.method:
            out[self.method] = {"weight": self.da_weight, "features": "backbone output, global average pooled",
                                **({"lambda_schedule": "2/(1+exp(-10p))-1 over all training steps"}
                                   if self.method == "dann" else {}),
                                "target_data": self.target_record}
        if self.l2sp is not None:
            out["l2sp"] = {"alpha": self.l2sp, "beta": self.l2sp_beta,
                           "anchor": "the backbone's weights as built (pretrained, or the random init)"}
        if self.source is not None:
            out["hybrid"] = {"ratio": self.ratio, "ratio_end": self.ratio_end, "source": self.source_record,
                             "ratio_meaning": "share of source-domain samples per batch"}
        out["stages"] = self.stages
        out["notes"] = self.notes
        return out


def plan(cfg: Any, plugin: Any, data: DataSplits, *, strategy_kind: str, augment: Any = None) -> DomainPlan | None:
    """Read and check the target / source data of the requested options (DataError / ConfigError before
    any training); None when none is requested."""
    check_config(cfg, plugin)
    if not requested(cfg):
        return None
    check_strategy(strategy_kind)
    p = DomainPlan(method=cfg.domain_adaptation, da_weight=float(cfg.da_weight),
                   l2sp=None if cfg.l2sp is None else float(cfg.l2sp), l2sp_beta=float(cfg.l2sp_beta or 0.0),
                   batch_size=int(cfg.batch_size), seed=int(cfg.seed), augment=augment)
    channels = int(data.train.x.shape[-1])
    if p.l2sp is not None and cfg.weights is None:
        p.notes.append("L2-SP with random initialisation pulls toward the initial weights, not pretrained ones")
    from tlzoo.train.recipe import (  # adapt imports this module
        input_size_for,
        read_run_data,
    )

    if p.method:
        x = read_unlabelled_images(cfg.target_data, skip_bad=DataOptions.from_dict(cfg.data_options).skip_bad_files)
        if is_lazy(x):
            x = x.with_size(input_size_for(cfg, plugin))
        if x.shape[-1] != channels:
            raise DataError(f"target data {cfg.target_data!r} has {x.shape[-1]} channel(s), the source data "
                            f"{channels}; the model's input fixes the channel count (convert the target images, "
                            "e.g. to grayscale, first). Height and width may differ: the model resizes.")
        if len(x) < 2:
            raise DataError(f"target data {cfg.target_data!r} holds {len(x)} image(s); {p.method} needs at least 2")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DataError(f"target data {cfg.target_data!r} contains NaN or infinite values")
        p.target_x = x
        p.target_record = {"source": str(cfg.target_data), "n": len(x), "shape": list(x.shape[1:]),
                           "fingerprint": array_fingerprint(x), "labels": "not used"}
        if x.shape[1:3] != data.train.x.shape[1:3]:
            p.notes.append(f"target images {x.shape[1]}x{x.shape[2]} vs source {data.train.x.shape[1]}x"
                           f"{data.train.x.shape[2]}: both resized to the input size inside the model")
    if cfg.hybrid_source:
        src = read_run_data(cfg, plugin, cfg.hybrid_source)  # file sources: at the input size
        plugin.check_data(src)
        if src.train.x.shape[-1] != channels:
            raise DataError(f"hybrid source {cfg.hybrid_source!r} has {src.train.x.shape[-1]} channel(s), the target "
                            f"data {channels}; convert one of them first")
        if src.class_names and data.class_names and list(src.class_names) != list(data.class_names):
            raise DataError(f"hybrid source {cfg.hybrid_source!r} has classes {src.class_names}, the target data "
                            f"{data.class_names}; both must share one label space (same classes, same order)")
        n_classes = plugin.num_classes(data)
        if plugin.task != "multilabel" and int(src.train.y.max()) >= n_classes:
            raise DataError(f"hybrid source {cfg.hybrid_source!r} has label {int(src.train.y.max())}, outside the "
                            f"target's classes 0..{n_classes - 1}")
        train = src.train
        if train.x.shape[1:3] != data.train.x.shape[1:3]:  # one batch holds both: one size
            p.notes.append(f"hybrid source images resized from {train.x.shape[1]}x{train.x.shape[2]} to the target's "
                           f"{data.train.x.shape[1]}x{data.train.x.shape[2]}")
            train = Split(_resize_to(train.x, tuple(data.train.x.shape[1:3])), train.y)
        p.source = train
        p.ratio = 0.5 if cfg.hybrid_ratio is None else float(cfg.hybrid_ratio)
        p.ratio_end = p.ratio if cfg.hybrid_ratio_end is None else float(cfg.hybrid_ratio_end)
        p.source_record = {"source": str(cfg.hybrid_source), "split": "train", "n": len(train),
                           "fingerprint": src.fingerprint()}
    return p


# ---------------------------------------------------------------- model card


def card_lines(record: dict[str, Any] | None) -> list[str]:
    """The model card's "Adaptation method" section (markdown lines); none for plain fine-tuning."""
    if not record:
        return []
    lines = ["## Adaptation method", ""]
    for method in ("coral", "dann"):
        if method in record:
            r = record[method]
            t = r.get("target_data") or {}
            lines.append(f"- {'Deep CORAL' if method == 'coral' else 'DANN (gradient reversal)'}, weight "
                         f"{r.get('weight')}, on {r.get('features')}; unlabelled target data `{t.get('source')}` "
                         f"({t.get('n')} images, fingerprint sha256 `{t.get('fingerprint')}`)")
    if "l2sp" in record:
        r = record["l2sp"]
        lines.append(f"- L2-SP: alpha {r.get('alpha')} toward {r.get('anchor')}, beta {r.get('beta')} on the head")
    if "hybrid" in record:
        r = record["hybrid"]
        ratios = [s.get("hybrid_ratio") for s in record.get("stages", []) if s.get("epochs")]
        lines.append(f"- hybrid data: source `{r['source'].get('source')}` ({r['source'].get('n')} labelled samples, "
                     f"fingerprint `{r['source'].get('fingerprint')}`) mixed in at ratio {r.get('ratio')} -> "
                     f"{r.get('ratio_end')} (per stage: {ratios})")
    lines += [f"- {n}" for n in record.get("notes", [])]
    return lines + [""]


# ---------------------------------------------------------------- extension

from tlzoo.extensions.base import Extension, Run  # noqa: E402


class DomainAdaptation(Extension):
    """CORAL / DANN with unlabelled target images, L2-SP toward the pretrained weights, and hybrid batches
    of labelled source-domain data: one training wrapper around the network, so one extension."""

    name = "domain_adaptation"
    sections = ("domain_adaptation", "l2sp", "hybrid")
    card_key = "adaptation_method"
    multitask = False
    strategies = ("auto", "one", "mirrored")

    @classmethod
    def check_options(cls, cfg: Any) -> None:
        if not requested(cfg):
            check_config(cfg, None)  # options given without the method they tune

    def check(self, run: Run) -> None:
        check_config(self.cfg, run.plugin)
        check_strategy(run.dist.kind)

    def prepare(self, run: Run) -> None:
        self.plan = plan(self.cfg, run.plugin, run.data, strategy_kind=run.dist.kind, augment=run.augment)

    def on_model(self, run: Run) -> Any:
        return self.plan.attach(run.model, run.backbone, run.schedule, len(run.data.train))  # trains run.model

    def stage_data(self, run: Run, index: int, stage: Any, dataset: Any, steps: int) -> tuple[Any, int]:
        return self.plan.stage_data(index, run.data.train, dataset)

    def record(self, run: Run) -> dict[str, Any]:
        return {"adaptation_method": self.plan.describe()}

    @classmethod
    def card_section(cls, config: dict[str, Any], metrics: dict[str, Any], contract: dict[str, Any]) -> Any:
        return config.get("adaptation_method")

    @classmethod
    def card_markdown(cls, section: Any) -> list[str]:
        return card_lines(section)

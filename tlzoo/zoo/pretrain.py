"""Pretrain a time-series backbone on the user's own data and put it into the zoo.

Objectives:
- ``masked``: masked-value reconstruction, no labels. A random ``mask_ratio`` of the (scaled)
  values is set to 0 and a per-step linear decoder on the backbone's features reconstructs them;
  the loss is the mean squared error on the masked values only.
- ``contrastive``: no labels. Two views of each window from the plugin's own training
  augmentations; a projection head and the NT-Xent loss (SimCLR) pull the views together.
- ``supervised``: cross-entropy on the source data's labels (binary, or softmax over three or more classes).

Only the training split of the source is used (its labels only by ``supervised``). The backbone's
weights become the zoo entry ``name`` under ``$TLZOO_HOME/zoo`` with the lineage every weight
set carries (source, data fingerprint, objective, epochs, ...), so ``tlzoo backbones`` lists it
and ``tlzoo adapt --backbone name`` loads it.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlzoo.data import array_fingerprint
from tlzoo.errors import ConfigError, DataError, TrainingError

OBJECTIVES = ("masked", "contrastive", "supervised")


@dataclass
class PretrainConfig:
    plugin: str
    data: str
    name: str
    backbone: str = "ts_fcn"
    objective: str = "masked"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    mask_ratio: float = 0.3
    temperature: float = 0.2
    seed: int = 0
    plugin_options: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    verbose: int = 1


@dataclass
class PretrainResult:
    name: str
    path: Path
    lineage: dict[str, Any]
    history: list[float]


def _masked_mse(y_true: Any, y_pred: Any) -> Any:
    """y_true = concat([target, mask], -1): squared error averaged over masked values only."""
    c = keras.ops.shape(y_pred)[-1]
    target, mask = y_true[..., :c], y_true[..., c:]
    return keras.ops.sum(mask * keras.ops.square(target - y_pred)) / keras.ops.maximum(keras.ops.sum(mask), 1.0)


class _NTXent(keras.Model):
    """SimCLR's contrastive step over two augmented views; only the encoder is kept."""

    def __init__(self, encoder: keras.Model, augment: Any, temperature: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder, self.augment, self.temperature = encoder, augment, temperature
        self.tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self) -> list[Any]:
        return [self.tracker]

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        x = data
        v1, v2 = self.augment(x), self.augment(x)
        with tf.GradientTape() as tape:
            z = tf.math.l2_normalize(tf.concat([self.encoder(v1, training=True), self.encoder(v2, training=True)], 0),
                                     -1)
            n = tf.shape(x)[0]
            logits = tf.matmul(z, z, transpose_b=True) / self.temperature - 1e9 * tf.eye(2 * n)
            labels = tf.concat([tf.range(n, 2 * n), tf.range(n)], 0)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, self.encoder.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.encoder.trainable_variables))
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}


def pretrain(config: PretrainConfig | None = None, **kwargs: Any) -> PretrainResult:
    """``tlzoo.pretrain(plugin="timeseries-fraud", data="x.npz", name="cc_fcn", objective="masked")``"""
    from tlzoo.plugin import get_plugin
    from tlzoo.zoo import check_input_shape, get_backbone_spec, list_backbones
    from tlzoo.zoo.timeseries import ARCHITECTURES, write_local_entry, zoo_home

    cfg = config if config is not None else PretrainConfig(**kwargs)
    t0 = time.perf_counter()
    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {cfg.objective!r}")
    if cfg.backbone not in ARCHITECTURES:
        raise ConfigError(f"pretrain builds one of the time-series architectures {sorted(ARCHITECTURES)}, "
                          f"got {cfg.backbone!r}")
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise ConfigError(f"epochs must be >= 1 and batch_size >= 2, got {cfg.epochs} and {cfg.batch_size}")
    if not 0 < cfg.mask_ratio < 1:
        raise ConfigError(f"mask_ratio must be in (0, 1), got {cfg.mask_ratio}")
    if not cfg.name or not cfg.name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ConfigError(f"name must be letters, digits, '_', '-' or '.', got {cfg.name!r}")
    list_backbones()  # loads the catalogue, so a clash with a built-in name is caught before training
    if (zoo_home() / cfg.name).exists() and not cfg.overwrite:
        raise ConfigError(f"zoo entry {cfg.name!r} exists in {str(zoo_home())!r}; pass --overwrite or another --name")

    plugin = get_plugin(cfg.plugin, **cfg.plugin_options)
    if plugin.modality != "timeseries":
        raise ConfigError(f"plugin {cfg.plugin!r} is a {plugin.modality} plugin; pretrain needs a timeseries one")
    splits = plugin.read_data(cfg.data, seed=cfg.seed)
    x = splits.train.x.astype(np.float32)  # the training split only: val / test stay unseen
    if not np.isfinite(x).all():
        raise DataError("the pretraining windows contain NaN or infinite values")
    spec = get_backbone_spec(cfg.backbone)
    check_input_shape(spec, x.shape[1:])
    channels = int(x.shape[-1])
    center, scale = x.reshape(-1, channels).mean(0), x.reshape(-1, channels).std(0)
    xs = (x - center) / np.where(scale > 0, scale, 1.0)

    keras.utils.set_random_seed(cfg.seed)
    backbone = spec.builder(input_shape=(None, channels))
    rng = np.random.default_rng(cfg.seed)
    optimizer = keras.optimizers.AdamW(cfg.learning_rate, weight_decay=1e-4)
    say = print if cfg.verbose else (lambda *a, **k: None)
    say(f"pretraining {cfg.backbone} ({cfg.objective}) on {len(xs)} windows of shape {list(xs.shape[1:])} "
        f"from {splits.source}, {cfg.epochs} epochs", flush=True)
    objective_detail: dict[str, Any] = {}  # supervised: the loss and the number of classes
    if cfg.objective == "masked":
        inp = keras.Input((None, channels))
        model = keras.Model(inp, keras.layers.Dense(channels, name="decoder")(backbone(inp)))
        model.compile(optimizer=optimizer, loss=_masked_mse)
        history = []
        for epoch in range(cfg.epochs):  # a fresh mask every epoch
            mask = (rng.random(xs.shape) < cfg.mask_ratio).astype(np.float32)
            h = model.fit(xs * (1 - mask), np.concatenate([xs, mask], -1), batch_size=cfg.batch_size, epochs=1,
                          shuffle=True, verbose=0)
            history.append(float(h.history["loss"][0]))
            say(f"  epoch {epoch + 1}/{cfg.epochs}: masked reconstruction MSE {history[-1]:.4f}", flush=True)
    elif cfg.objective == "contrastive":
        layers = plugin.augmentations()  # the plugin's own training augmentations, on raw windows
        if not layers:
            raise ConfigError(f"the contrastive objective builds views with the plugin's augmentations; "
                              f"plugin {cfg.plugin!r} has none with options {cfg.plugin_options}")

        def augment(v: Any) -> Any:
            for layer in layers:
                v = layer(v, training=True)
            return v

        from tlzoo.model.layers import FeatureScaler

        inp = keras.Input((None, channels))
        scaled = FeatureScaler(center, np.where(scale > 0, scale, 1.0))(inp)
        feats = keras.layers.GlobalAveragePooling1D()(backbone(scaled))
        proj = keras.layers.Dense(64, name="projection")(keras.layers.Dense(128, activation="relu")(feats))
        model = _NTXent(keras.Model(inp, proj), augment, cfg.temperature)
        model.compile(optimizer=optimizer)
        h = model.fit(x, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=0,
                      callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: say(
                          f"  epoch {e + 1}/{cfg.epochs}: NT-Xent {logs['loss']:.4f}", flush=True))])
        history = [float(v) for v in h.history["loss"]]
    else:
        y = np.asarray(splits.train.y)
        if y.ndim != 1 or not np.array_equal(y, np.round(y)) or y.min() < 0:
            raise DataError(f"supervised pretraining needs one integer class per series; the labels have shape "
                            f"{y.shape} and values {np.unique(y)[:5].tolist()}")
        classes = int(y.max()) + 1
        inp = keras.Input((None, channels))
        pooled = keras.layers.GlobalAveragePooling1D()(backbone(inp))
        if classes <= 2:  # one sigmoid unit; more classes get a softmax (binary cross-entropy on 3 would be wrong)
            out, loss = keras.layers.Dense(1, activation="sigmoid")(pooled), "binary_crossentropy"
            y = y.astype(np.float32)
        else:
            out, loss = keras.layers.Dense(classes, activation="softmax")(pooled), "sparse_categorical_crossentropy"
        model = keras.Model(inp, out)
        model.compile(optimizer=optimizer, loss=loss)
        objective_detail = {"loss": loss, "classes": classes}
        h = model.fit(xs, y, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=0)
        history = [float(v) for v in h.history["loss"]]
    if not all(np.isfinite(history)):
        raise TrainingError(f"pretraining loss became {history[-1]}; lower --lr")

    lineage = {
        "source": str(cfg.data), "data_fingerprint": array_fingerprint(x),
        "split_fingerprint": splits.fingerprint(), "split": "train", "n_windows": int(len(x)),
        "window": list(x.shape[1:]), "labels_used": cfg.objective == "supervised",
        "objective": cfg.objective, "epochs": cfg.epochs, "final_loss": history[-1], "loss_history": history,
        "mask_ratio": cfg.mask_ratio if cfg.objective == "masked" else None, **objective_detail,
        "plugin": cfg.plugin, "plugin_options": plugin.options, "seed": cfg.seed,
        "learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
        "seconds": round(time.perf_counter() - t0, 1),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    feature_names = list(plugin.options.get("features") or [f"f{i}" for i in range(channels)])
    path = write_local_entry(cfg.name, cfg.backbone, backbone, channels, feature_names, lineage, cfg.overwrite)
    _loss_plot(history, cfg, path / "pretrain_loss.png")
    say(f"zoo entry {cfg.name!r} written to {path} ({lineage['seconds']} s)", flush=True)
    return PretrainResult(cfg.name, path, lineage, history)


def _loss_plot(history: list[float], cfg: PretrainConfig, path: Path) -> None:
    from tlzoo.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(history) + 1), history, marker="o")
    ax.set(xlabel="epoch", ylabel=f"{cfg.objective} loss", title=f"pretraining {cfg.name} ({cfg.backbone})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["OBJECTIVES", "PretrainConfig", "PretrainResult", "pretrain"]

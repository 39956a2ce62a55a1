"""Time-series backbones: FCN and ResNet (Wang et al. 2017), InceptionTime (Fawaz et al. 2020)
and a small Transformer encoder, plus the local zoo of backbones pretrained by ``tlzoo pretrain``.

Inputs are ``[batch, time, channels]`` with the time axis left free; every backbone returns
per-time-step features ``[batch, time, features]`` (the head pools them globally, so any length
works, and a pretraining decoder can reconstruct each step). No published weights exist for
these architectures: weights come from ``tlzoo pretrain`` (a local zoo entry) or random init.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo.spec import BackboneSpec, WeightsInfo

if TYPE_CHECKING:
    import keras

MODALITY = "timeseries"
LOCAL_WEIGHTS = "pretrained"  # the weights name of every local zoo entry
ENTRY_FILE = "entry.json"
WEIGHTS_FILE = "backbone.weights.h5"


def _input(input_shape: Sequence[int | None] | None) -> Any:
    import keras

    shape = tuple(input_shape or (None, 1))
    if len(shape) != 2:
        raise ConfigError(f"time-series backbones take input_shape (time, channels), got {shape}")
    return keras.Input(shape=(None, shape[-1]), name="series")  # any length: time stays free


def _conv_bn_relu(x: Any, filters: int, kernel: int, name: str) -> Any:
    import keras

    x = keras.layers.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _finish(inputs: Any, x: Any, name: str, weights: str | None) -> keras.Model:
    import keras

    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def fcn(include_top: bool = False, weights: str | None = None, input_shape: Sequence[int | None] | None = None,
        filters: Sequence[int] = (128, 256, 128), kernels: Sequence[int] = (8, 5, 3), **_: Any) -> keras.Model:
    """Fully convolutional network (Wang et al. 2017): three conv-BN-ReLU blocks."""
    inputs = _input(input_shape)
    x = inputs
    for i, (f, k) in enumerate(zip(filters, kernels), start=1):
        x = _conv_bn_relu(x, f, k, f"block{i}")
    return _finish(inputs, x, "ts_fcn", weights)


def resnet(include_top: bool = False, weights: str | None = None, input_shape: Sequence[int | None] | None = None,
           filters: Sequence[int] = (64, 128, 128), **_: Any) -> keras.Model:
    """ResNet for time series (Wang et al. 2017): three residual blocks of conv 8/5/3."""
    import keras

    inputs = _input(input_shape)
    x = inputs
    for b, f in enumerate(filters, start=1):
        shortcut = keras.layers.Conv1D(f, 1, padding="same", use_bias=False, name=f"block{b}_short_conv")(x)
        shortcut = keras.layers.BatchNormalization(name=f"block{b}_short_bn")(shortcut)
        y = _conv_bn_relu(x, f, 8, f"block{b}_a")
        y = _conv_bn_relu(y, f, 5, f"block{b}_b")
        y = keras.layers.Conv1D(f, 3, padding="same", use_bias=False, name=f"block{b}_c_conv")(y)
        y = keras.layers.BatchNormalization(name=f"block{b}_c_bn")(y)
        x = keras.layers.Add(name=f"block{b}_add")([shortcut, y])
        x = keras.layers.Activation("relu", name=f"block{b}_out")(x)
    return _finish(inputs, x, "ts_resnet", weights)


def _inception_module(x: Any, filters: int, kernels: Sequence[int], name: str) -> Any:
    import keras

    bottleneck = x
    if x.shape[-1] > 1:
        bottleneck = keras.layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_bottleneck")(x)
    branches = [keras.layers.Conv1D(filters, k, padding="same", use_bias=False, name=f"{name}_conv{k}")(bottleneck)
                for k in kernels]
    pool = keras.layers.MaxPooling1D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branches.append(keras.layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_poolconv")(pool))
    y = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    y = keras.layers.BatchNormalization(name=f"{name}_bn")(y)
    return keras.layers.Activation("relu", name=f"{name}_relu")(y)


def inception_time(include_top: bool = False, weights: str | None = None,
                   input_shape: Sequence[int | None] | None = None, depth: int = 6, filters: int = 32,
                   kernels: Sequence[int] = (10, 20, 40), **_: Any) -> keras.Model:
    """InceptionTime (Fawaz et al. 2020): ``depth`` inception modules, a residual every third."""
    import keras

    inputs = _input(input_shape)
    x = res = inputs
    for d in range(1, depth + 1):
        x = _inception_module(x, filters, kernels, f"block{d}")
        if d % 3 == 0:
            short = keras.layers.Conv1D(int(x.shape[-1]), 1, padding="same", use_bias=False,
                                        name=f"block{d}_short_conv")(res)
            short = keras.layers.BatchNormalization(name=f"block{d}_short_bn")(short)
            x = keras.layers.Add(name=f"block{d}_add")([short, x])
            x = res = keras.layers.Activation("relu", name=f"block{d}_out")(x)
    return _finish(inputs, x, "ts_inception", weights)


STEM_KERNEL = 8  # ts_transformer's token: 8 steps, as FCN's first kernel


def transformer(include_top: bool = False, weights: str | None = None,
                input_shape: Sequence[int | None] | None = None, dim: int = 64, heads: int = 4,
                layers: int = 2, ffn: int = 128, stem_kernel: int = STEM_KERNEL, **_: Any) -> keras.Model:
    """A small pre-norm Transformer encoder. Each token is a convolution over ``stem_kernel`` steps (a
    single step's values make poor tokens for one channel: every token of a univariate series lies on one
    line); position comes from a depthwise convolution over time (a conditional positional encoding), which
    works at any length without a table of positions. ``stem_kernel=1``: the per-step projection of entries
    pretrained before the convolution."""
    import keras

    inputs = _input(input_shape)
    x = (keras.layers.Dense(dim, name="stem_proj")(inputs) if stem_kernel == 1 else
         keras.layers.Conv1D(dim, stem_kernel, padding="same", name="stem_proj")(inputs))
    x = keras.layers.Add(name="stem_add")([x, keras.layers.DepthwiseConv1D(3, padding="same", name="stem_pos")(x)])
    for i in range(1, layers + 1):
        y = keras.layers.LayerNormalization(name=f"block{i}_ln1")(x)
        y = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attn")(y, y)
        x = keras.layers.Add(name=f"block{i}_add1")([x, y])
        y = keras.layers.LayerNormalization(name=f"block{i}_ln2")(x)
        y = keras.layers.Dense(ffn, activation="gelu", name=f"block{i}_ffn1")(y)
        y = keras.layers.Dense(dim, name=f"block{i}_ffn2")(y)
        x = keras.layers.Add(name=f"block{i}_add2")([x, y])
    x = keras.layers.LayerNormalization(name="final_ln")(x)
    return _finish(inputs, x, "ts_transformer", weights)


ARCHITECTURES: dict[str, tuple[Callable[..., keras.Model], int, int, str]] = {
    # name: (builder, feature_dim, min window length, description)
    # min window = the longest first-layer kernel: a shorter window leaves most of every kernel on padding.
    "ts_fcn": (fcn, 128, 8, "FCN for time series (Wang et al. 2017): conv 8/5/3, 128-256-128 filters"),
    "ts_resnet": (resnet, 128, 8, "ResNet for time series (Wang et al. 2017): 3 residual blocks, conv 8/5/3"),
    "ts_inception": (inception_time, 128, 40,
                     "InceptionTime (Fawaz et al. 2020): 6 inception modules, kernels 10/20/40"),
    "ts_transformer": (transformer, 64, STEM_KERNEL,
                       f"small Transformer encoder: {STEM_KERNEL}-step conv tokens, 2 layers, dim 64, 4 heads, "
                       "conv positions"),
}
GROUP_RULES = ((r"^block(\d+)_", "block{1}"), (r"^final_", "final"))
# What an entry records of how its architecture was built, so a later default cannot change it; entries
# written before that record was kept were built with LEGACY_KWARGS
BUILDER_KWARGS: dict[str, dict[str, Any]] = {"ts_transformer": {"stem_kernel": STEM_KERNEL}}
LEGACY_KWARGS: dict[str, dict[str, Any]] = {"ts_transformer": {"stem_kernel": 1}}


def register() -> None:
    from tlzoo.zoo import register_backbone

    counts = {"ts_fcn": 265_216, "ts_resnet": 521_792, "ts_inception": 422_240, "ts_transformer": 67_904}  # 1 channel
    for name, (builder, dim, min_len, desc) in ARCHITECTURES.items():
        register_backbone(BackboneSpec(
            name=name, family="timeseries", builder=builder, default_size=32, min_size=min_len,
            feature_dim=dim, num_params=counts[name], weights=(), group_rules=GROUP_RULES,
            modality=MODALITY, channels=1, description=desc + " (random init; pretrain with `tlzoo pretrain`)",
        ), replace=True)


# ---------------------------------------------------------------- the local zoo


def zoo_home() -> Path:
    """Where pretrained entries live: ``$TLZOO_HOME/zoo`` (default ``~/.tlzoo/zoo``)."""
    return Path(os.environ.get("TLZOO_HOME", "~/.tlzoo")).expanduser() / "zoo"


def local_builder(entry_dir: Path, entry: dict[str, Any]) -> Callable[..., keras.Model]:
    """A builder for a local entry: the base architecture, loading the entry's weights by name."""
    base = ARCHITECTURES[entry["architecture"]][0]

    def build(include_top: bool = False, weights: str | None = None,
              input_shape: Sequence[int | None] | None = None, **kwargs: Any) -> keras.Model:
        channels = int(entry["channels"])
        if input_shape is not None and input_shape[-1] != channels:
            raise ConfigError(
                f"backbone {entry['name']!r} was pretrained on {channels} channel(s) ({entry['features']}); "
                f"the data has {input_shape[-1]}"
            )
        built_with = entry.get("builder_kwargs", LEGACY_KWARGS.get(entry["architecture"], {}))
        model = base(input_shape=(None, channels), **{**built_with, **kwargs})
        if weights == LOCAL_WEIGHTS:
            from tlzoo.zoo.weights import verify

            path = entry_dir / WEIGHTS_FILE
            if not path.is_file():
                raise WeightsError(f"zoo entry {entry['name']!r}: weights file {str(path)!r} is missing")
            verify(path, entry["sha256"], f"zoo entry {entry['name']}")
            model.load_weights(path)
        elif weights is not None:
            model.load_weights(weights)
        return model

    return build


def local_spec(entry_dir: Path) -> BackboneSpec:
    entry = json.loads((entry_dir / ENTRY_FILE).read_text())
    _, dim, min_len, desc = ARCHITECTURES[entry["architecture"]]
    lineage = entry["lineage"]
    return BackboneSpec(
        name=entry["name"], family="pretrained-local", builder=local_builder(entry_dir, entry), default_size=32,
        min_size=min_len, feature_dim=dim, num_params=int(entry["num_params"]),
        weights=(WeightsInfo(
            LOCAL_WEIGHTS,
            dataset=f"{lineage['source']} (fingerprint {lineage['data_fingerprint'][:12]}, "
                    f"{lineage['objective']}, {lineage['epochs']} epochs)",
            licence="the licence of the source data", source=f"tlzoo pretrain, {str(entry_dir)}",
        ),),
        group_rules=GROUP_RULES, modality=MODALITY, channels=int(entry["channels"]),
        description=f"{entry['architecture']} pretrained by tlzoo pretrain ({lineage['objective']}) "
                    f"on {lineage['source']}",
    )


def register_local_entries() -> list[str]:
    """Register every entry under ``zoo_home()``; a broken entry is skipped with a warning."""
    from tlzoo.zoo import register_backbone

    names = []
    root = zoo_home()
    for entry_dir in sorted(root.glob(f"*/{ENTRY_FILE}")) if root.is_dir() else []:
        try:
            spec = local_spec(entry_dir.parent)
        except (OSError, KeyError, ValueError) as exc:
            import logging

            logging.getLogger(__name__).warning("skipping zoo entry %s: %s", entry_dir.parent, exc)
            continue
        register_backbone(spec, replace=True)
        names.append(spec.name)
    return names


def write_local_entry(name: str, architecture: str, backbone: keras.Model, channels: int, features: list[str],
                      lineage: dict[str, Any], overwrite: bool = False,
                      builder_kwargs: dict[str, Any] | None = None) -> Path:
    """Write ``backbone``'s weights and lineage as the zoo entry ``name`` (atomically) and register it.
    ``builder_kwargs``: what ``backbone`` was built with beyond its shape (default: the architecture's
    defaults, BUILDER_KWARGS)."""
    from tlzoo.runs.directory import atomic_dir, write_json
    from tlzoo.zoo import BACKBONES, register_backbone
    from tlzoo.zoo.weights import sha256_of

    if name in ARCHITECTURES or (name in BACKBONES and BACKBONES.get(name).family != "pretrained-local"):
        raise ConfigError(f"{name!r} is a built-in backbone; choose another --name for the pretrained entry")
    target = zoo_home() / name
    if target.exists() and not overwrite:
        raise ConfigError(f"zoo entry {name!r} exists at {str(target)!r}; pass --overwrite or choose another --name")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target, overwrite) as tmp:
        backbone.save_weights(tmp / WEIGHTS_FILE)
        write_json(tmp / ENTRY_FILE, {
            "name": name, "architecture": architecture, "channels": int(channels), "features": list(features),
            "num_params": int(backbone.count_params()), "sha256": sha256_of(tmp / WEIGHTS_FILE),
            "builder_kwargs": BUILDER_KWARGS.get(architecture, {}) if builder_kwargs is None else builder_kwargs,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "lineage": lineage,
        })
    register_backbone(local_spec(target), replace=True)
    return target


register()

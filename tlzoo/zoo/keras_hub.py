"""KerasHub presets as backbones: loaded offline-first, one layer per block, pooled, preprocessing inside.

A KerasHub ViT or DINOv2 backbone holds all its transformer blocks inside one encoder layer, so freezing
"the top 3 blocks" or decaying the learning rate per block would see a single layer. tlzoo re-wires the
preset's own layers (same objects, same weights) into a flat functional model:

    images -> preset_rescaling (the preset's image converter: scale / offset) -> patch embedding
           -> one layer per block -> final norm -> token_pool (class token, mean of patch tokens, or both)

CNN presets (ResNet, EfficientNet, MobileNetV3) and the CLIP / SigLIP vision towers are functional models with
one layer per block already; they are inlined as they are. At an input size other than the preset's, the
position embeddings are resampled bicubically over the patch grid (DINOv2 does this itself).

Preset resolution and the catalogue are in ``tlzoo.zoo.keras_hub_catalogue`` (no Keras import).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo.keras_hub_catalogue import (
    POOLINGS,
    TOKEN_ARCHS,
    read_json,
    resolve_preset,
)
from tlzoo.zoo.spec import BackboneSpec
from tlzoo.zoo.weights import ResolvedWeights, sha256_of_tree

CONVERTER_FILE = "image_converter.json"


@keras.saving.register_keras_serializable(package="tlzoo")
class TokenPooling(keras.layers.Layer):
    """Transformer tokens [batch, tokens, dim] -> one vector per image: the class token (``cls``), the mean
    of the patch tokens (``mean``, register tokens excluded), or both concatenated (``cls+mean``, the DINOv2
    linear-probe practice)."""

    def __init__(self, mode: str = "cls", prefix_tokens: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("cls", "mean", "cls+mean"):
            raise ConfigError(f"token pooling must be 'cls', 'mean' or 'cls+mean', got {mode!r}")
        if mode != "mean" and prefix_tokens < 1:
            raise ConfigError(f"token pooling {mode!r} needs a class token; this backbone has none (use 'mean')")
        self.mode, self.prefix_tokens = mode, int(prefix_tokens)

    def call(self, tokens: Any) -> Any:
        if self.mode == "cls":
            return tokens[:, 0]
        mean = keras.ops.mean(tokens[:, self.prefix_tokens:], axis=1)
        return mean if self.mode == "mean" else keras.ops.concatenate([tokens[:, 0], mean], axis=-1)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (input_shape[0], input_shape[-1] * (2 if self.mode == "cls+mean" else 1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "prefix_tokens": self.prefix_tokens}


def converter_affine(path: Path, where: str) -> tuple[Any, Any]:
    """(scale, offset) of the preset's image converter, scalars or one per channel."""
    config = read_json(path / CONVERTER_FILE).get("config")
    if config is None:
        raise WeightsError(f"KerasHub preset {where!r} has no {CONVERTER_FILE} in {path}: its input scaling is "
                           f"unknown. Save the preset's image converter too (converter.save_to_preset(dir))")
    scale = 1.0 if config.get("scale") is None else config["scale"]
    offset = 0.0 if config.get("offset") is None else config["offset"]
    return scale, offset


def image_encoder(model: Any) -> Any:
    """The image half of an image-text backbone (CLIP, SigLIP), else the backbone itself."""
    return getattr(model, "vision_encoder", model)


def load_preset(path: Path, *, load_weights: bool, image_shape: Sequence[int | None] | None = None) -> Any:
    import keras_hub

    kwargs = {"image_shape": tuple(image_shape)} if image_shape is not None else {}
    return keras_hub.models.Backbone.from_preset(str(path), load_weights=load_weights, **kwargs)


def _prefix_tokens(n_old: int, n_new: int) -> int:
    """Tokens before the patch grid (class / register tokens): both counts minus them are squares."""
    for p in range(0, 17):
        if all(n - p > 0 and math.isqrt(n - p) ** 2 == n - p for n in (n_old, n_new)):
            return p
    raise WeightsError(f"cannot resample a position embedding of {n_old} tokens to {n_new}: no square patch grid")


def resample_position_embedding(value: np.ndarray, rows: int) -> np.ndarray:
    """[(1,) tokens, dim] position embedding -> ``rows`` tokens: prefix tokens kept, the patch grid resized
    bicubically (timm's ``resample_abs_pos_embed``)."""
    import tensorflow as tf

    squeeze = value.ndim == 3
    table = value[0] if squeeze else value
    p = _prefix_tokens(len(table), rows)
    old, new = math.isqrt(len(table) - p), math.isqrt(rows - p)
    grid = table[p:].reshape(1, old, old, -1)
    resized = tf.image.resize(grid, (new, new), method="bicubic").numpy().reshape(new * new, -1)
    out = np.concatenate([table[:p], resized.astype(table.dtype)])
    return out[None] if squeeze else out


def copy_weights(source: Any, target: Any) -> None:
    """``source``'s weights into ``target`` (the same architecture at another input size); position
    embeddings resampled, position-id tables (constants of the size) left as built."""
    if len(source.weights) != len(target.weights):
        raise WeightsError(f"cannot copy {len(source.weights)} preset weights into {len(target.weights)}")
    for src, dst in zip(source.weights, target.weights):
        value = np.asarray(src.numpy())
        if "position_ids" in src.path:  # 0..n-1 at the new size (CLIP builds them as zeros, its weights fill them)
            dst.assign(np.arange(int(np.prod(dst.shape))).reshape(tuple(dst.shape)).astype(dst.dtype))
        elif tuple(value.shape) == tuple(dst.shape):
            dst.assign(value)
        elif "position" in src.path:
            dst.assign(resample_position_embedding(value, int(dst.shape[-2])))
        else:
            raise WeightsError(f"preset weight {src.path} has shape {tuple(value.shape)}, the model at this input "
                               f"size needs {tuple(dst.shape)}")


def encoder_at_size(path: Path, arch: str, shape: Sequence[int | None], load_weights: bool) -> Any:
    """The preset's image encoder built for ``shape`` (H, W, C), its pretrained weights loaded (or not)."""
    if arch == "dinov2":  # interpolates its position embeddings when built at another size
        return load_preset(path, load_weights=load_weights, image_shape=shape)
    encoder = image_encoder(load_preset(path, load_weights=load_weights))
    native = tuple(getattr(encoder, "image_shape", (None, None, 3)))
    if native[0] is None or tuple(native[:2]) == tuple(shape[:2]):
        return encoder
    resized = type(encoder).from_config({**encoder.get_config(), "image_shape": tuple(shape)})
    copy_weights(encoder, resized)
    return resized


def _flat_graph(encoder: Any, arch: str, shape: Sequence[int | None], affine: tuple[Any, Any], pooling: str | None,
                prefix_tokens: int) -> tuple[Any, Any]:
    """images -> the preset's rescaling -> its layers, one per block -> pooled features (see the module doc)."""
    inputs = keras.Input(shape=tuple(shape), name="images")
    x = keras.layers.Rescaling(*affine, name="preset_rescaling")(inputs)
    if arch == "vit":
        x = _layer(encoder, "patching_and_embedding")(x)
        transformer = _layer(encoder, "encoder")
        for block in transformer.encoder_layers:
            x = block(x)
        x = transformer.layer_norm(x)
    elif arch == "dinov2":
        x = _layer(encoder, "embeddings")(x)
        for block in _layer(encoder, "encoder").layers:
            x = block(x)
        x = _layer(encoder, "layernorm")(x)
    elif arch == "siglip" and pooling != "map":  # the tokens, before SigLIP's attention-pooling head
        for layer in encoder.layers:
            if not isinstance(layer, keras.layers.InputLayer) and not layer.name.endswith("head"):
                x = layer(x)
    else:  # functional already, one layer per block: inline its graph on our input (same layer objects)
        x = encoder.call({"images": x} if isinstance(encoder.input, dict) else x)
    if arch in TOKEN_ARCHS and pooling != "map":
        x = TokenPooling(pooling or "cls", prefix_tokens, name="token_pool")(x)
    return inputs, x


def _layer(model: Any, suffix: str) -> Any:
    """The layer whose name is ``suffix``, or ends with ``_suffix`` (KerasHub prefixes some with the model's)."""
    found = [lyr for lyr in model.layers if lyr.name == suffix or lyr.name.endswith(f"_{suffix}")]
    if len(found) != 1:
        raise WeightsError(f"KerasHub model {model.name!r} has {len(found)} layers named '*{suffix}' (it has "
                           f"{[lyr.name for lyr in model.layers]}); this layout is not one tlzoo knows")
    return found[0]


@keras.saving.register_keras_serializable(package="tlzoo")
class PresetBackbone(keras.Model):
    """The flat backbone of a KerasHub preset (see the module doc). Its config holds the preset encoder's own
    config, so a saved model rebuilds the encoder the way KerasHub does (its layers' individual configs do not
    all deserialise: ViTPatchingAndEmbedding's lists arguments its constructor refuses), then re-wires it."""

    def __init__(self, encoder_config: dict[str, Any], arch: str, image_shape: Sequence[int | None],
                 scale: Any = 1.0, offset: Any = 0.0, pooling: str | None = None, prefix_tokens: int = 1,
                 encoder: Any = None, **kwargs: Any) -> None:
        if encoder is None:
            import keras_hub  # noqa: F401  (registers the classes the encoder's config names)

            encoder = keras.saving.deserialize_keras_object(encoder_config)
        inputs, outputs = _flat_graph(encoder, arch, image_shape, (scale, offset), pooling, prefix_tokens)
        super().__init__(inputs, outputs, **kwargs)
        self.encoder_config, self.arch, self.image_shape = encoder_config, arch, tuple(image_shape)
        self.scale, self.offset, self.pooling, self.prefix_tokens = scale, offset, pooling, int(prefix_tokens)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable, "encoder_config": self.encoder_config,
                "arch": self.arch, "image_shape": list(self.image_shape), "scale": self.scale, "offset": self.offset,
                "pooling": self.pooling, "prefix_tokens": self.prefix_tokens}


def build_preset_backbone(preset: str, *, weights: Any = None, input_shape: Sequence[int | None] | None = None,
                          arch: str = "", pooling: str | None = None, prefix_tokens: int = 1) -> keras.Model:
    """The spec's builder: the flat backbone for ``preset`` (a name or directory), pretrained when
    ``weights`` is set. ``build_keras_hub_backbone`` is the entry point that also records lineage."""
    return _build(preset, arch, bool(weights), tuple(input_shape or (224, 224, 3)), pooling, prefix_tokens)[0]


def _build(preset: str, arch: str, load_weights: bool, shape: tuple[Any, ...], pooling: str | None,
           prefix_tokens: int) -> tuple[keras.Model, Path, str]:
    if pooling is not None and pooling not in POOLINGS:
        raise ConfigError(f"backbone pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "map" and arch != "siglip":
        raise ConfigError(f"pooling 'map' is SigLIP's attention-pooling head; {preset!r} is a {arch} backbone")
    if arch not in TOKEN_ARCHS and pooling not in (None, "mean"):
        raise ConfigError(f"{preset!r} is a CNN: its feature map is average-pooled by the head; pooling "
                          f"{pooling!r} applies to vision transformers")
    path, source = resolve_preset(preset)  # after the checks above: a mistake costs no download
    encoder = encoder_at_size(path, arch, shape, load_weights)
    safe = Path(preset).name if Path(preset).name else "preset"
    scale, offset = converter_affine(path, preset)
    model = PresetBackbone(keras.saving.serialize_keras_object(encoder), arch, shape, scale, offset, pooling,
                           prefix_tokens, encoder=encoder, name=f"keras_hub_{safe}".replace("-", "_"))
    return model, path, source


def build_keras_hub_backbone(spec: BackboneSpec, weights: str | None, shape: Sequence[int | None], *,
                             sha256: str | None = None,
                             pooling: str | None = None) -> tuple[keras.Model, ResolvedWeights | None]:
    """Build a KerasHub backbone and say where its weights came from (the preset directory, hashed)."""
    kw = spec.builder_kwargs
    if weights is not None and weights not in spec.weight_names:
        raise ConfigError(f"KerasHub backbone {spec.name!r} carries its own weights (the preset's); use weights="
                          f"{spec.weight_names[0]!r} (or the default 'imagenet'), or None for its architecture with "
                          f"random initialisation; got {weights!r}")
    model, path, source = _build(kw["preset"], kw["arch"], weights is not None, tuple(shape),
                                 pooling or kw.get("pooling"), int(kw.get("prefix_tokens", 1)))
    if weights is None:
        return model, None
    digest = sha256_of_tree(path)
    if sha256 and digest != sha256.lower():
        raise WeightsError(f"sha256 mismatch for KerasHub preset {kw['preset']!r} at {path}: expected {sha256}, got "
                           f"{digest}")
    meta = read_json(path / "metadata.json")
    origin = spec.weights[0].source if spec.weights else str(path)
    versions = f"keras_hub {meta.get('keras_hub_version', '?')}, keras {meta.get('keras_version', '?')}"
    return model, ResolvedWeights(file=kw["preset"], path=str(path), source=source, sha256=digest,
                                  origin=f"{origin}; saved with {versions}")

"""The backbone zoo: one registry, glob listing, and one builder that resolves weights."""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from tlzoo.errors import ConfigError
from tlzoo.registry import Registry
from tlzoo.zoo.spec import (
    BackboneSpec,
    LayerGroup,
    WeightsInfo,
    assign_groups,
    layer_groups,
)
from tlzoo.zoo.weights import ResolvedWeights, resolve_explicit, routed_keras_downloads

if TYPE_CHECKING:
    import keras

BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec, *, replace: bool = False) -> BackboneSpec:
    """Add a backbone to the zoo (``tlzoo.register_backbone(BackboneSpec(...))``)."""
    return BACKBONES.register(spec.name, spec, replace=replace)


def get_backbone_spec(name: str) -> BackboneSpec:
    """A registered backbone, or ``hub:<TF-Hub handle, URL or SavedModel directory>``."""
    if name.startswith("hub:"):
        from tlzoo.zoo.hub_catalogue import spec_for_ref

        return spec_for_ref(name)
    _load_catalog()
    if name.startswith("keras_hub:") and name not in BACKBONES:
        from tlzoo.zoo import keras_hub_catalogue

        return keras_hub_catalogue.spec_for_ref(name)
    if name not in BACKBONES:
        from tlzoo.zoo.keras_hub_catalogue import curated_name

        alias = curated_name(name)  # a curated KerasHub preset by its bare name ("dinov2_small")
        if alias is not None:
            return BACKBONES.get(alias)
    return BACKBONES.get(name)


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbone names, optionally filtered by a glob (``"efficientnet*"``)."""
    _load_catalog()
    return BACKBONES.names(pattern)


def backbone_info(name: str) -> dict[str, Any]:
    """Sizes, preprocessing, feature dimension, parameters, weights, licence, layer-group rules."""
    return get_backbone_spec(name).info()


def check_input_shape(spec: BackboneSpec, input_shape: Sequence[int | None]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if spec.modality == "image":
        if len(shape) != 3:
            raise ConfigError(
                f"input_shape {shape} for backbone {spec.name!r} must be (height, width, channels)"
            )
        h, w, _ = shape
        for side in (h, w):
            if side is not None and side < spec.min_size:
                raise ConfigError(
                    f"input size {h}x{w} is smaller than {spec.name!r}'s minimum of "
                    f"{spec.min_size}x{spec.min_size}; use input_size >= {spec.min_size}"
                )
            p = spec.patch_size
            if side is not None and p and side % p:
                raise ConfigError(
                    f"input size {h}x{w} is not a multiple of {spec.name!r}'s patch size {p}; use input_size "
                    f"{side // p * p or p} or {(side // p + 1) * p}"
                )
    elif spec.modality == "timeseries":
        if len(shape) != 2:
            raise ConfigError(f"input_shape {shape} for backbone {spec.name!r} must be (time, channels)")
        # a single event (tabular mode) is a feature vector, not a window: kernels see only that event. A longer
        # series shorter than the widest kernel still runs ('same' padding; InceptionTime's authors ran its
        # 40-step kernels on ItalyPowerDemand's 24 steps), its widest filters partly over zeros: said, not refused
        if shape[0] is not None and 1 < shape[0] < spec.min_size:
            warnings.warn(
                f"series of {shape[0]} steps are shorter than {spec.name!r}'s widest kernel / receptive field of "
                f"{spec.min_size}: those filters partly see the zero padding; series (or windows) of >= "
                f"{spec.min_size} steps, or a backbone with a smaller field (ts_fcn / ts_resnet / ts_transformer "
                f"8), use every filter fully", UserWarning, stacklevel=2)
    return shape  # type: ignore[return-value]


def build_backbone(
    name: str,
    weights: str | os.PathLike[str] | None = "imagenet",
    input_shape: Sequence[int | None] | None = None,
    *,
    sha256: str | None = None,
    pooling: str | None = None,
) -> tuple[keras.Model, BackboneSpec, ResolvedWeights | None]:
    """Build a backbone (no classification top) and say where its weights came from. ``pooling`` picks how a
    vision transformer's tokens become features (KerasHub presets; default: the spec's)."""
    spec = get_backbone_spec(name)
    if pooling is not None and spec.family != "keras_hub":
        raise ConfigError(f"pooling {pooling!r} applies to KerasHub vision transformers; {name!r} is a "
                          f"{spec.family} backbone whose feature map the head average-pools")
    if input_shape is None:
        input_shape = ((None, spec.channels) if spec.modality == "timeseries"
                       else (spec.default_size, spec.default_size, spec.channels))
    shape = check_input_shape(spec, input_shape)
    kwargs = dict(spec.builder_kwargs, include_top=False)
    if spec.family == "tfhub":  # a SavedModel carries its own weights
        from tlzoo.zoo.hub import build_hub_backbone

        hub_model, record = build_hub_backbone(spec, weights, shape)
        return hub_model, spec, record
    if spec.family == "keras_hub":  # a preset carries its own weights (or its config alone: weights=None)
        from tlzoo.zoo.keras_hub import build_keras_hub_backbone

        preset_model, record = build_keras_hub_backbone(spec, spec.weights_name(weights), shape, sha256=sha256,
                                                        pooling=pooling)
        return preset_model, spec, record

    if weights is None:
        return spec.builder(weights=None, input_shape=shape, **kwargs), spec, None

    if isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and weights not in spec.weight_names
        and (os.sep in weights or weights.endswith((".h5", ".keras", ".weights.h5")))
    ):
        record = resolve_explicit(weights, sha256)
        return spec.builder(weights=record.path, input_shape=shape, **kwargs), spec, record

    if weights not in spec.weight_names:
        raise ConfigError(
            f"backbone {name!r} has no weights {weights!r}; available: "
            f"{list(spec.weight_names) or 'none'} (or a file path, or None for random init)"
        )
    if spec.modality == "image" and shape[-1] != spec.channels:
        raise ConfigError(
            f"{weights} weights of {name!r} need {spec.channels} input channels, got {shape[-1]}"
        )
    records: list[ResolvedWeights] = []
    native = spec.weights_size
    with routed_keras_downloads(records, sha256=sha256):
        if native and tuple(shape[:2]) != (native, native):
            source = spec.builder(weights=weights, input_shape=(native, native, shape[-1]), **kwargs)
            model = spec.builder(weights=None, input_shape=shape, **kwargs)
            model.set_weights(source.get_weights())
            del source
        else:
            model = spec.builder(weights=weights, input_shape=shape, **kwargs)
    return model, spec, (records[-1] if records else None)


def create_backbone(
    name: str,
    weights: str | os.PathLike[str] | None = "imagenet",
    input_shape: Sequence[int | None] | None = None,
    *,
    sha256: str | None = None,
) -> keras.Model:
    """Build a registered backbone without its top, e.g.
    ``create_backbone("mobilenet_v2", weights="imagenet", input_shape=(96, 96, 3))``."""
    return build_backbone(name, weights, input_shape, sha256=sha256)[0]


_catalog_loaded = False


def _load_catalog() -> None:
    """Import the built-in catalogues once (kept lazy so ``import tlzoo`` stays light). The
    catalogues name their builders by dotted path: listing them does not import Keras."""
    global _catalog_loaded
    if not _catalog_loaded:
        _catalog_loaded = True
        from tlzoo.zoo import keras_apps, scratch, timeseries  # noqa: F401  (register on import)
        from tlzoo.zoo.hub_catalogue import catalogue_specs
        from tlzoo.zoo.keras_hub_catalogue import catalogue_specs as keras_hub_specs

        for hub_spec in [*catalogue_specs(), *keras_hub_specs()]:
            register_backbone(hub_spec, replace=True)
        timeseries.register_local_entries()  # backbones made by `tlzoo pretrain` ($TLZOO_HOME/zoo)


__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "LayerGroup",
    "WeightsInfo",
    "assign_groups",
    "backbone_info",
    "build_backbone",
    "check_input_shape",
    "create_backbone",
    "get_backbone_spec",
    "layer_groups",
    "list_backbones",
    "register_backbone",
]

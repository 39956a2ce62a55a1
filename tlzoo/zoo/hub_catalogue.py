"""TF-Hub / TF2 SavedModel backbones: the catalogue, handle resolution and specs (no TensorFlow).

The layer that runs a SavedModel in a Keras 3 model (``HubLayer``) is in ``tlzoo.zoo.hub``;
this module is what listing the zoo and resolving a handle need, so that neither imports Keras.

Handles resolve through: a local directory -> the mirror ``$TLZOO_WEIGHTS_DIR/hub/<sha1>`` ->
``$TFHUB_CACHE_DIR/<sha1>`` (tensorflow_hub's cache layout, so a cache can be copied into the
mirror) -> ``hub.resolve`` download unless ``TLZOO_OFFLINE=1``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo.spec import BackboneSpec, WeightsInfo
from tlzoo.zoo.weights import ENV_OFFLINE, mirror_root

if TYPE_CHECKING:
    import keras

PREFIX = "hub:"
FAMILY = "tfhub"
HUB_SUBDIR = "hub"
META_FILE = "tlzoo_hub.json"  # optional metadata beside saved_model.pb (written by tlzoo)
# Group by the deepest-but-one scope of a variable name: "MobilenetV2/expanded_conv_3/expand/weights"
# -> "MobilenetV2/expanded_conv_3", "conv_pw_1/kernel" -> "conv_pw_1".
DEFAULT_GROUP_RULES: tuple[tuple[str, str], ...] = (
    (r"^([^/]+/[^/]+)/[^/]+/", "{1}"),
    (r"^([^/]+)/", "{1}"),
)
# Batch-norm variables stay frozen unless a stage trains batch norm (the BN trap, see tlzoo/train/schedule.py).
_BATCHNORM = re.compile(r"(?i)(batch_?norm|(^|[/_])bn([/_]|$)|moving_(mean|variance))")


def is_batchnorm_variable(name: str) -> bool:
    return bool(_BATCHNORM.search(name))


# ------------------------------------------------------------------ resolving handles


def cache_key(handle: str) -> str:
    """tensorflow_hub's cache directory name for a handle (sha1 of the handle)."""
    return hashlib.sha1(handle.encode("utf8")).hexdigest()


def mirror_path(handle: str) -> Path | None:
    root = mirror_root()
    return root / HUB_SUBDIR / cache_key(handle) if root else None


def _is_savedmodel(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "") in ("1", "true", "yes")


def local_candidates(handle: str) -> list[tuple[str, Path]]:
    """Where ``handle`` could already be on this machine, in resolution order."""
    out: list[tuple[str, Path]] = []
    mirrored = mirror_path(handle)
    if mirrored is not None:
        out.append(("mirror", mirrored))
    cache = os.environ.get("TFHUB_CACHE_DIR")
    if cache:
        out.append(("tfhub-cache", Path(cache).expanduser() / cache_key(handle)))
    return out


def resolve_handle(handle: str) -> tuple[Path, str]:
    """A local SavedModel directory for ``handle`` and where it came from."""
    local = Path(handle).expanduser()
    if local.exists() or handle.startswith(("/", "./", "../", "~")):
        if not local.is_dir() or not _is_savedmodel(local):
            raise WeightsError(f"hub backbone {handle!r}: {local} is not a SavedModel directory (no saved_model.pb)")
        return local.resolve(), "local"
    for source, path in local_candidates(handle):
        if path.is_dir() and _is_savedmodel(path):
            return path, source
    looked = (", ".join(str(p) for _, p in local_candidates(handle))
              or "no mirror ($TLZOO_WEIGHTS_DIR unset) and no $TFHUB_CACHE_DIR")
    fix = (f"On a machine with network run `tlzoo weights fetch <name>` (or hub.load) and copy the SavedModel to "
           f"$TLZOO_WEIGHTS_DIR/{HUB_SUBDIR}/{cache_key(handle)}, or `tlzoo weights import DIR --backbone <name>`, "
           "or pass a local directory: --backbone hub:/path/to/saved_model")
    if _offline():
        raise WeightsError(f"hub handle {handle!r} is not available offline (TLZOO_OFFLINE=1): "
                           f"looked in {looked}. {fix}")
    try:
        import tensorflow_hub as hub

        return Path(hub.resolve(handle)), "download"
    except Exception as exc:  # network / resolver errors come in many types
        raise WeightsError(
            f"hub handle {handle!r} does not resolve "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"looked in {looked}. {fix}"
        ) from None


def read_meta(path: Path) -> dict[str, Any]:
    meta = path / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}


# ------------------------------------------------------------------ catalogue and specs


@dataclass(frozen=True)
class HubModel:
    """One curated TF-Hub image feature-vector model."""

    name: str
    handle: str
    size: int
    feature_dim: int
    licence: str = "Apache-2.0"
    value_range: tuple[float, float] = (0.0, 1.0)
    fixed_size: bool = False  # True when the SavedModel only takes its native size
    dataset: str = "ImageNet-1k (ILSVRC-2012)"
    group_rules: tuple[tuple[str, str], ...] = DEFAULT_GROUP_RULES
    description: str = ""


_TFHUB = "https://tfhub.dev/"
_MNV2_RULES = ((r"^MobilenetV2/expanded_conv(?:_(\d+))?/", "block_{1}"), (r"^MobilenetV2/Conv_1/", "final"))
CATALOGUE: tuple[HubModel, ...] = (
    HubModel("hub_mobilenet_v2_100", _TFHUB + "google/imagenet/mobilenet_v2_100_224/feature_vector/5", 224, 1280,
             group_rules=_MNV2_RULES, description="MobileNet V2 1.0 (TF-Hub feature vector)"),
    HubModel("hub_mobilenet_v2_140", _TFHUB + "google/imagenet/mobilenet_v2_140_224/feature_vector/5", 224, 1792,
             group_rules=_MNV2_RULES, description="MobileNet V2 1.4 (TF-Hub feature vector)"),
    HubModel("hub_mobilenet_v3_small_100", _TFHUB + "google/imagenet/mobilenet_v3_small_100_224/feature_vector/5",
             224, 1024, description="MobileNet V3 small 1.0 (TF-Hub feature vector)"),
    HubModel("hub_mobilenet_v3_large_100", _TFHUB + "google/imagenet/mobilenet_v3_large_100_224/feature_vector/5",
             224, 1280, description="MobileNet V3 large 1.0 (TF-Hub feature vector)"),
    HubModel("hub_efficientnet_b0", _TFHUB + "tensorflow/efficientnet/b0/feature-vector/1", 224, 1280,
             description="EfficientNet-B0 (TF-Hub feature vector)"),
    HubModel("hub_efficientnet_b3", _TFHUB + "tensorflow/efficientnet/b3/feature-vector/1", 300, 1536,
             description="EfficientNet-B3 (TF-Hub feature vector)"),
    HubModel("hub_efficientnetv2_b0", _TFHUB + "google/imagenet/efficientnet_v2_imagenet1k_b0/feature_vector/2", 224,
             1280, description="EfficientNetV2-B0, ImageNet-1k (TF-Hub feature vector)"),
    HubModel("hub_efficientnetv2_s_21k", _TFHUB + "google/imagenet/efficientnet_v2_imagenet21k_ft1k_s/feature_vector/2",
             384, 1280, dataset="ImageNet-21k, fine-tuned on ImageNet-1k",
             description="EfficientNetV2-S, ImageNet-21k + 1k (TF-Hub feature vector)"),
    HubModel("hub_bit_m_r50x1", _TFHUB + "google/bit/m-r50x1/1", 224, 2048, dataset="ImageNet-21k",
             description="BiT-M ResNet-50x1 (Big Transfer, TF-Hub)"),
    HubModel("hub_bit_s_r50x1", _TFHUB + "google/bit/s-r50x1/1", 224, 2048,
             description="BiT-S ResNet-50x1 (Big Transfer, TF-Hub)"),
    HubModel("hub_inception_v3", _TFHUB + "google/imagenet/inception_v3/feature_vector/5", 299, 2048,
             description="Inception V3 (TF-Hub feature vector)"),
    HubModel("hub_resnet_v2_50", _TFHUB + "google/imagenet/resnet_v2_50/feature_vector/5", 224, 2048,
             description="ResNet V2 50 (TF-Hub feature vector)"),
)


def scale_to_range(low: float, high: float) -> Any:
    """``preprocess`` for images in [0, 255] -> [low, high] (TF-Hub image models take [0, 1])."""

    def preprocess(x: Any) -> Any:
        return x * ((high - low) / 255.0) + low

    return preprocess


def _builder(handle: str) -> Any:
    def build(weights: Any = None, input_shape: Any = None, include_top: bool = False, **_: Any) -> keras.Model:
        from tlzoo.zoo.hub import build_hub_model

        return build_hub_model(handle, input_shape)

    return build


def make_spec(name: str, handle: str, *, size: int, feature_dim: int, value_range: Sequence[float] = (0.0, 1.0),
              licence: str = "see the model's page", dataset: str = "as published with the SavedModel",
              group_rules: Sequence[tuple[str, str]] = DEFAULT_GROUP_RULES, description: str = "",
              min_size: int = 32) -> BackboneSpec:
    low, high = (float(v) for v in value_range)
    return BackboneSpec(
        name=name, family=FAMILY, builder=_builder(handle), builder_kwargs={"handle": handle},
        default_size=size, min_size=min_size, preprocess=scale_to_range(low, high),
        preprocess_name=f"scale [0, 255] -> [{low:g}, {high:g}]", feature_dim=feature_dim,
        weights=(WeightsInfo("imagenet", dataset, licence, handle),),
        group_rules=tuple(tuple(r) for r in group_rules), description=description or f"TF-Hub SavedModel {handle}",
    )


def catalogue_specs() -> list[BackboneSpec]:
    return [
        make_spec(m.name, m.handle, size=m.size, feature_dim=m.feature_dim, value_range=m.value_range,
                  licence=m.licence, dataset=m.dataset, group_rules=m.group_rules, description=m.description,
                  min_size=m.size if m.fixed_size else 32)
        for m in CATALOGUE
    ]


_REF_SPECS: dict[str, BackboneSpec] = {}


def spec_for_ref(ref: str) -> BackboneSpec:
    """The spec of ``hub:<handle or path>``. A local SavedModel may carry ``tlzoo_hub.json``
    (size, value_range, feature_dim, group_rules, licence) beside ``saved_model.pb``."""
    if ref in _REF_SPECS:
        return _REF_SPECS[ref]
    handle = ref[len(PREFIX):].strip()
    if not handle:
        raise ConfigError(f"backbone {ref!r}: give a TF-Hub handle, URL or SavedModel directory after 'hub:'")
    known = next((m for m in CATALOGUE if m.handle == handle), None)
    if known is not None:
        spec = make_spec(ref, handle, size=known.size, feature_dim=known.feature_dim, value_range=known.value_range,
                         licence=known.licence, dataset=known.dataset, group_rules=known.group_rules,
                         description=known.description)
    else:
        local = Path(handle).expanduser()
        meta = read_meta(local) if local.is_dir() else {}
        spec = make_spec(
            ref, handle, size=int(meta.get("size", 224)), feature_dim=int(meta.get("feature_dim", 0)),
            value_range=meta.get("value_range", (0.0, 1.0)), licence=meta.get("licence", "see the model's page"),
            dataset=meta.get("dataset", "as published with the SavedModel"),
            group_rules=[tuple(r) for r in meta.get("group_rules", DEFAULT_GROUP_RULES)],
            description=meta.get("description", ""),
        )
    _REF_SPECS[ref] = spec
    return spec

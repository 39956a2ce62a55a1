"""KerasHub presets as backbones: the curated catalogue, preset resolution and specs (no Keras import).

A backbone is named ``keras_hub:<preset>``: a curated preset (``tlzoo backbones 'keras_hub*'``), any other
KerasHub image preset, or a local preset directory (``keras_hub:/path/to/preset``). The curated presets
also answer to their bare preset name (``dinov2_small``).

A preset resolves, never falling back to random weights, through:
  1. an explicit directory (``keras_hub:/path``);
  2. the mirror ``$TLZOO_WEIGHTS_DIR/keras_hub/<preset>/``;
  3. the KerasHub / Kaggle cache (``$KAGGLEHUB_CACHE``, default ``~/.cache/kagglehub``), where
     ``kagglehub`` puts ``models/<owner>/<model>/<framework>/<preset>/<version>/``;
  4. a download through KerasHub (skipped when ``TLZOO_OFFLINE=1``).

The Keras side (loading, one layer per block, pooling, position-embedding resampling) is in
``tlzoo.zoo.keras_hub``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo.spec import BackboneSpec, WeightsInfo
from tlzoo.zoo.weights import ENV_OFFLINE, mirror_root

PREFIX = "keras_hub:"
FAMILY = "keras_hub"
SUBDIR = "keras_hub"  # under the mirror: $TLZOO_WEIGHTS_DIR/keras_hub/<preset>/
META_FILE = "tlzoo_preset.json"  # optional, beside config.json: licence, dataset, description
WEIGHTS_NAME = "pretrained"  # the one set of weights a preset carries
POOLINGS = ("cls", "mean", "cls+mean", "map")

# KerasHub backbone class -> tlzoo's architecture name. Text / audio backbones are refused by name.
ARCHS: dict[str, str] = {
    "ViTBackbone": "vit", "DINOV2Backbone": "dinov2", "CLIPBackbone": "clip", "CLIPVisionEncoder": "clip",
    "SigLIPBackbone": "siglip", "SigLIPVisionEncoder": "siglip", "ResNetBackbone": "resnet",
    "EfficientNetBackbone": "efficientnet", "MobileNetBackbone": "mobilenet",
}
TOKEN_ARCHS = ("vit", "dinov2", "clip", "siglip")

# Layer groups per architecture, over the layer names of the backbone tlzoo builds (one layer per block; see
# tlzoo.zoo.keras_hub): the patch / stem embedding is the stem, then one group per block, then the final norm.
# KerasHub prefixes some layer names with the model's name ("dinov2_backbone_layernorm"): rules match the end.
_P = r"^(?:.*_)?"
GROUP_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "vit": ((_P + r"transformer_block_(\d+)$", "block_{1}"), (_P + r"(ln|token_pool)$", "final_norm")),
    "dinov2": ((r"^layers_(\d+)$", "block_{1}"), (_P + r"(layernorm|token_pool)$", "final_norm")),
    "clip": ((_P + r"encoder_block_(\d+)$", "block_{1}"), (_P + r"(?<!pre_)(layer_norm|token_pool)$", "final_norm")),
    "siglip": ((_P + r"encoder_block_(\d+)$", "block_{1}"),
               (_P + r"(post_layer_norm|head|token_pool)$", "final_norm")),
    "resnet": ((r"^stack(\d+)_block(\d+)_", "stack{1}_block{2}"), (r"^post_", "top")),
    "efficientnet": ((r"^block(\d+[a-z])_", "block{1}"), (r"^top_", "top")),
    "mobilenet": ((r"^block_(\d+)_(\d+)$", "block_{1}_{2}"),),
}
DEFAULT_POOLING = {"vit": "cls", "dinov2": "cls+mean", "clip": "cls", "siglip": "map"}


@dataclass(frozen=True)
class Preset:
    """One curated KerasHub image preset."""

    preset: str
    arch: str
    size: int
    patch: int  # 0 for a CNN
    feature_dim: int  # of one token (ViTs) or of the last feature map (CNNs)
    params: int  # of the image backbone (the vision tower of an image-text model)
    licence: str
    dataset: str
    handle: str  # Kaggle handle with its version: the preset's lineage
    preprocessing: str  # what the preset's image converter does (read from the preset at build time)
    description: str
    blocks: int  # transformer blocks, or CNN blocks (residual / inverted-residual units)
    prefix_tokens: int = 1  # class token (+ register tokens)


_IN = "ImageNet mean / std"
_PM1 = "[-1, 1]"
CATALOGUE: tuple[Preset, ...] = (
    Preset("vit_base_patch16_224_imagenet21k", "vit", 224, 16, 768, 85_798_656, "Apache-2.0", "ImageNet-21k",
           "kaggle://keras/vit/keras/vit_base_patch16_224_imagenet21k/3", _PM1, "ViT-B/16, ImageNet-21k (Google)",
           blocks=12),
    Preset("vit_base_patch16_224_imagenet", "vit", 224, 16, 768, 85_798_656, "Apache-2.0",
           "ImageNet-21k, fine-tuned on ImageNet-1k", "kaggle://keras/vit/keras/vit_base_patch16_224_imagenet/4",
           _PM1, "ViT-B/16, ImageNet-21k + 1k (Google)", blocks=12),
    Preset("vit_large_patch16_224_imagenet21k", "vit", 224, 16, 1024, 303_301_632, "Apache-2.0", "ImageNet-21k",
           "kaggle://keras/vit/keras/vit_large_patch16_224_imagenet21k/3", _PM1, "ViT-L/16, ImageNet-21k (Google)",
           blocks=24),
    Preset("dinov2_small", "dinov2", 224, 14, 384, 22_582_656, "Apache-2.0", "LVD-142M (self-supervised, DINOv2)",
           "kaggle://keras/dinov2/keras/dinov2_small/1", _IN, "DINOv2 ViT-S/14 (Meta)", blocks=12),
    Preset("dinov2_base", "dinov2", 224, 14, 768, 87_632_640, "Apache-2.0", "LVD-142M (self-supervised, DINOv2)",
           "kaggle://keras/dinov2/keras/dinov2_base/1", _IN, "DINOv2 ViT-B/14 (Meta)", blocks=12),
    Preset("dinov2_large", "dinov2", 224, 14, 1024, 305_771_520, "Apache-2.0", "LVD-142M (self-supervised, DINOv2)",
           "kaggle://keras/dinov2/keras/dinov2_large/1", _IN, "DINOv2 ViT-L/14 (Meta)", blocks=24),
    Preset("dinov2_with_registers_small", "dinov2", 224, 14, 384, 22_584_192, "Apache-2.0",
           "LVD-142M (self-supervised, DINOv2)", "kaggle://keras/dinov2/keras/dinov2_with_registers_small/1", _IN,
           "DINOv2 ViT-S/14 with 4 register tokens (Meta)", blocks=12, prefix_tokens=5),
    Preset("dinov2_with_registers_base", "dinov2", 224, 14, 768, 87_635_712, "Apache-2.0",
           "LVD-142M (self-supervised, DINOv2)", "kaggle://keras/dinov2/keras/dinov2_with_registers_base/1", _IN,
           "DINOv2 ViT-B/14 with 4 register tokens (Meta)", blocks=12, prefix_tokens=5),
    Preset("siglip2_base_patch16_224", "siglip", 224, 16, 768, 92_900_000, "Apache-2.0", "WebLI (image-text, SigLIP 2)",
           "kaggle://keras/siglip/keras/siglip2_base_patch16_224/1", _PM1,
           "SigLIP 2 B/16 vision tower (Google)", blocks=12, prefix_tokens=0),
    Preset("siglip_base_patch16_224", "siglip", 224, 16, 768, 92_900_000, "Apache-2.0", "WebLI (image-text, SigLIP)",
           "kaggle://keras/siglip/keras/siglip_base_patch16_224/1", _PM1, "SigLIP B/16 vision tower (Google)",
           blocks=12, prefix_tokens=0),
    Preset("clip_vit_base_patch16", "clip", 224, 16, 768, 86_200_000, "MIT", "OpenAI WebImageText (400M pairs)",
           "kaggle://keras/clip/keras/clip_vit_base_patch16/3", "CLIP mean / std",
           "CLIP ViT-B/16 vision tower (OpenAI)", blocks=12),
    Preset("clip_vit_large_patch14", "clip", 224, 14, 1024, 303_200_000, "MIT", "OpenAI WebImageText (400M pairs)",
           "kaggle://keras/clip/keras/clip_vit_large_patch14/3", "CLIP mean / std",
           "CLIP ViT-L/14 vision tower (OpenAI)", blocks=24),
    Preset("resnet_50_imagenet", "resnet", 224, 0, 2048, 23_561_152, "Apache-2.0", "ImageNet-1k (ILSVRC-2012)",
           "kaggle://keras/resnetv1/keras/resnet_50_imagenet/3", _IN, "ResNet-50 (KerasHub)", blocks=16),
    Preset("resnet_v2_50_imagenet", "resnet", 224, 0, 2048, 23_561_152, "Apache-2.0", "ImageNet-1k (ILSVRC-2012)",
           "kaggle://keras/resnetv2/keras/resnet_v2_50_imagenet/3", _IN, "ResNet-50 V2 (KerasHub)", blocks=16),
    Preset("efficientnet_b0_ra_imagenet", "efficientnet", 224, 0, 1280, 4_007_548, "Apache-2.0",
           "ImageNet-1k (ILSVRC-2012)", "kaggle://keras/efficientnet/keras/efficientnet_b0_ra_imagenet/2", _IN,
           "EfficientNet-B0, RandAugment (timm weights, KerasHub)", blocks=16),
    Preset("mobilenet_v3_large_100_imagenet", "mobilenet", 224, 0, 960, 2_996_352, "Apache-2.0",
           "ImageNet-1k (ILSVRC-2012)", "kaggle://keras/mobilenetv3/keras/mobilenet_v3_large_100_imagenet/1", _IN,
           "MobileNetV3-Large 1.0 (KerasHub)", blocks=0),
)
_BY_PRESET = {p.preset: p for p in CATALOGUE}


# ------------------------------------------------------------------ resolving presets


def is_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().is_dir()


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "") in ("1", "true", "yes")


def is_preset_dir(path: Path) -> bool:
    """A preset directory has the backbone's config.json (KerasHub's file-by-file cache may lack metadata.json)."""
    return (path / "config.json").is_file()


def kaggle_cache_path(handle: str) -> Path | None:
    """Where ``kagglehub`` keeps ``kaggle://owner/model/framework/variation/version``."""
    if not handle.startswith("kaggle://"):
        return None
    parts = handle[len("kaggle://"):].strip("/").split("/")
    if len(parts) != 5:
        return None
    root = Path(os.environ.get("KAGGLEHUB_CACHE", "~/.cache/kagglehub")).expanduser()
    return root / "models" / Path(*parts)


def mirror_path(preset: str) -> Path | None:
    root = mirror_root()
    return root / SUBDIR / preset if root else None


def builtin_handle(preset: str) -> str | None:
    """The Kaggle handle KerasHub downloads ``preset`` from: the catalogue's, else KerasHub's registry."""
    if preset in _BY_PRESET:
        return _BY_PRESET[preset].handle
    entry = _builtin_presets().get(preset)
    return entry["kaggle_handle"] if entry else None


def _builtin_presets() -> dict[str, Any]:
    """KerasHub's own registry of presets (name -> handle and metadata); empty without keras_hub."""
    try:
        from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS
    except ImportError:
        return {}
    return BUILTIN_PRESETS


def local_candidates(preset: str) -> list[tuple[str, Path]]:
    """Where ``preset`` could already be on this machine, in resolution order."""
    out: list[tuple[str, Path]] = []
    mirrored = mirror_path(preset)
    if mirrored is not None:
        out.append(("mirror", mirrored))
    handle = builtin_handle(preset)
    cached = kaggle_cache_path(handle) if handle else None
    if cached is not None:
        out.append(("kaggle-cache", cached))
    return out


def resolve_preset(preset: str) -> tuple[Path, str]:
    """A local preset directory for ``preset`` (a name or a directory) and where it came from."""
    if is_local(preset):
        path = Path(preset).expanduser()
        if not path.is_dir() or not is_preset_dir(path):
            raise WeightsError(f"KerasHub preset {preset!r}: {path} is not a preset directory (no config.json, as "
                               f"written by save_to_preset or a whole-preset download)")
        return path.resolve(), "local"
    for source, path in local_candidates(preset):
        if path.is_dir() and is_preset_dir(path):
            return path, source
    looked = ", ".join(str(p) for _, p in local_candidates(preset)) or "no mirror ($TLZOO_WEIGHTS_DIR unset)"
    target = f"$TLZOO_WEIGHTS_DIR/{SUBDIR}/{preset}/"
    fix = (f"On a machine with network run `tlzoo weights fetch keras_hub:{preset}` (or download the whole preset: "
           f"kagglehub.model_download(HANDLE)) and copy the preset directory to {target}, or `tlzoo weights import "
           f"DIR --backbone keras_hub:{preset}`, or pass the directory: --backbone keras_hub:/path/to/{preset}")
    if _offline():
        raise WeightsError(f"KerasHub preset {preset!r} is not available offline ({ENV_OFFLINE}=1): looked in "
                           f"{looked}. {fix}")
    handle = builtin_handle(preset)
    if handle is None:
        raise WeightsError(f"KerasHub preset {preset!r} is not on this machine and KerasHub knows no download for "
                           f"it: looked in {looked}. {fix}")
    try:
        return Path(download_preset(handle)), "download"
    except Exception as exc:  # network / resolver errors come in many types
        raise WeightsError(f"KerasHub preset {preset!r} does not download from {handle} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); looked in "
                           f"{looked}. {fix}") from None


def download_preset(handle: str) -> str:
    """Download a whole ``kaggle://`` (or ``hf://``) preset into its cache, as KerasHub would file by file;
    the directory it landed in."""
    if handle.startswith("kaggle://"):
        import kagglehub

        return str(kagglehub.model_download(handle[len("kaggle://"):]))
    if handle.startswith("hf://"):
        from huggingface_hub import snapshot_download

        return str(snapshot_download(handle[len("hf://"):]))
    raise WeightsError(f"KerasHub preset handle {handle!r} is neither kaggle:// nor hf://; download it yourself and "
                       f"pass the directory")


# ------------------------------------------------------------------ specs


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def arch_of(class_name: str, where: str) -> str:
    if class_name not in ARCHS:
        raise ConfigError(
            f"KerasHub preset {where!r} is a {class_name or 'model without a config'}, not an image backbone tlzoo "
            f"can fine-tune (it declares layer groups for {', '.join(sorted(ARCHS))})"
        )
    return ARCHS[class_name]


def _builder(preset: str) -> Any:
    def build(weights: Any = None, input_shape: Any = None, include_top: bool = False, **kwargs: Any) -> Any:
        from tlzoo.zoo.keras_hub import build_preset_backbone

        return build_preset_backbone(preset, weights=weights, input_shape=input_shape, **kwargs)

    return build


def groups_summary(arch: str, blocks: int) -> str:
    if arch in TOKEN_ARCHS:
        return f"patch embedding, {blocks} blocks, final norm" if blocks else "patch embedding, blocks, final norm"
    return f"stem, {blocks} blocks, top" if blocks else "stem, blocks, top"


def make_spec(name: str, preset: str, *, arch: str, size: int, patch: int, feature_dim: int, params: int,
              licence: str, dataset: str, handle: str, preprocessing: str, description: str,
              blocks: int = 0, prefix_tokens: int = 1) -> BackboneSpec:
    pooling = DEFAULT_POOLING.get(arch)
    out_dim = feature_dim * (2 if pooling == "cls+mean" else 1)
    return BackboneSpec(
        name=name, family=FAMILY, builder=_builder(preset),
        builder_kwargs={"preset": preset, "arch": arch, "pooling": pooling, "prefix_tokens": prefix_tokens},
        default_size=size, min_size=patch or 32, preprocess=None,
        preprocess_name=f"the preset's image converter ({preprocessing}), inside the backbone",
        feature_dim=out_dim, num_params=params,
        weights=(WeightsInfo(WEIGHTS_NAME, dataset, licence, f"KerasHub preset {preset} ({handle})"),),
        group_rules=GROUP_RULES[arch], description=description, patch_size=patch,
        layer_groups_summary=groups_summary(arch, blocks),
    )


def catalogue_specs() -> list[BackboneSpec]:
    return [make_spec(PREFIX + p.preset, p.preset, arch=p.arch, size=p.size, patch=p.patch,
                      feature_dim=p.feature_dim, params=p.params, licence=p.licence, dataset=p.dataset,
                      handle=p.handle, preprocessing=p.preprocessing, description=p.description,
                      blocks=p.blocks, prefix_tokens=p.prefix_tokens)
            for p in CATALOGUE]


def curated_name(name: str) -> str | None:
    """``keras_hub:<preset>`` for a bare curated preset name (``dinov2_small``), else None."""
    return PREFIX + name if name in _BY_PRESET else None


def _spec_from_preset_dir(ref: str, preset: str, path: Path) -> BackboneSpec:
    """A spec read off a preset directory's config.json / metadata.json (and tlzoo_preset.json, if any)."""
    config = read_json(path / "config.json")
    inner = config.get("config", {})
    arch = arch_of(config.get("class_name", ""), preset)
    if arch in ("clip", "siglip") and "vision_encoder" in inner:
        inner = inner["vision_encoder"].get("config", inner)
    meta, own = read_json(path / "metadata.json"), read_json(path / META_FILE)
    shape = inner.get("image_shape") or [224, 224, 3]
    patch = inner.get("patch_size", 0)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch or 0)
    width = int(inner.get("hidden_dim") or 0)  # a CNN's is known once built; listings show 0
    registers = int(inner.get("num_register_tokens", 0) or 0)
    return make_spec(
        ref, preset, arch=arch, size=int(shape[0] or 224), patch=patch, feature_dim=width,
        params=int(meta.get("parameter_count", 0)), licence=own.get("licence", "see the preset's model card"),
        dataset=own.get("dataset", "as published with the preset"), handle=own.get("handle", str(path)),
        preprocessing="read from image_converter.json", description=own.get("description", f"KerasHub preset {path}"),
        blocks=int(inner.get("num_layers") or sum(inner.get("stackwise_num_blocks") or []) or 0),
        prefix_tokens=0 if arch == "siglip" else 1 + registers,
    )


_REF_SPECS: dict[str, BackboneSpec] = {}


def spec_for_ref(ref: str) -> BackboneSpec:
    """The spec of ``keras_hub:<preset name or directory>`` that is not in the catalogue."""
    if ref in _REF_SPECS:
        return _REF_SPECS[ref]
    preset = ref[len(PREFIX):].strip()
    if not preset:
        raise ConfigError(f"backbone {ref!r}: give a KerasHub preset name or a preset directory after {PREFIX!r}")
    if not is_local(preset):
        handle = builtin_handle(preset)
        family = (_builtin_presets().get(preset) or {}).get("metadata", {}).get("path")  # the model's folder
        if handle is not None and family is not None and family not in _IMAGE_FAMILIES:
            raise ConfigError(f"KerasHub preset {preset!r} is a {family} model, not an image backbone tlzoo can "
                              f"fine-tune; supported families: {', '.join(sorted(_IMAGE_FAMILIES))}")
        if handle is None:
            import difflib

            known = sorted(_BY_PRESET) + sorted(_builtin_presets())
            close = difflib.get_close_matches(preset, known, n=5, cutoff=0.5)
            raise ConfigError(f"unknown KerasHub preset {preset!r}"
                              + (f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else "")
                              + " (`tlzoo backbones 'keras_hub*'` lists the curated ones)")
    path, _ = resolve_preset(preset)
    spec = _REF_SPECS[ref] = _spec_from_preset_dir(ref, preset, path)
    return spec


# KerasHub's registry names each preset's model folder ("path" in its metadata): the ones tlzoo builds
_IMAGE_FAMILIES = frozenset({"vit", "dinov2", "clip", "siglip", "resnet", "efficientnet", "mobilenet"})

"""Small, randomly initialised KerasHub presets written with ``save_to_preset``: what these machines can use in
place of downloaded ones (same files, same loader)."""
from __future__ import annotations

import json
from pathlib import Path

SIZE = 32


def save_tiny_vit(path: Path, *, size: int = SIZE, licence: str | None = "Apache-2.0", seed: int = 0) -> Path:
    """A 2-block ViT (patch 8, width 16) with a [-1, 1] image converter, as KerasHub's ViT presets have."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ViTBackbone(image_shape=(size, size, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=16, mlp_dim=32)
    converter = keras_hub.layers.ViTImageConverter(image_size=(size, size), scale=1 / 127.5, offset=-1.0)
    return _save(path, backbone, converter, licence)


def save_tiny_resnet(path: Path, *, licence: str | None = "Apache-2.0", seed: int = 0) -> Path:
    """A 2-stack basic-block ResNet with an ImageNet mean / std converter, any input size."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(None, None, 3))
    return _save(path, backbone, _imagenet_converter(keras_hub.layers.ResNetImageConverter), licence)


def save_tiny_dinov2(path: Path, *, registers: int = 2, seed: int = 0) -> Path:
    """A 2-block DINOv2 (patch 8, width 16) with register tokens and an ImageNet mean / std converter."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DINOV2Backbone(patch_size=8, num_layers=2, hidden_dim=16, num_heads=2,
                                               intermediate_dim=32, num_register_tokens=registers,
                                               image_shape=(SIZE, SIZE, 3), position_embedding_shape=(64, 64, 3))
    return _save(path, backbone, _imagenet_converter(keras_hub.layers.DINOV2ImageConverter), "Apache-2.0")


def save_tiny_clip(path: Path, *, seed: int = 0) -> Path:
    """A tiny CLIP (2-block vision and 1-block text towers): tlzoo uses its vision tower."""
    import keras_hub

    return _save_image_text(path, "CLIP", seed, _imagenet_converter(keras_hub.layers.CLIPImageConverter), "MIT",
                            projection_dim=8)


def save_tiny_siglip(path: Path, *, seed: int = 0) -> Path:
    """A tiny SigLIP (towers as CLIP's, with an attention-pooling head): tlzoo uses its vision tower."""
    import keras_hub

    converter = keras_hub.layers.SigLIPImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    return _save_image_text(path, "SigLIP", seed, converter, "Apache-2.0")


def _save_image_text(path: Path, family: str, seed: int, converter, licence: str, **backbone_kw) -> Path:
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    models = keras_hub.models
    vision = getattr(models, f"{family}VisionEncoder")(patch_size=8, hidden_dim=16, num_layers=2, num_heads=2,
                                                       intermediate_dim=32, image_shape=(SIZE, SIZE, 3))
    text = getattr(models, f"{family}TextEncoder")(vocabulary_size=30, embedding_dim=16, hidden_dim=16, num_layers=1,
                                                   num_heads=2, intermediate_dim=32, max_sequence_length=8)
    return _save(path, getattr(models, f"{family}Backbone")(vision, text, **backbone_kw), converter, licence)


def save_tiny_efficientnet(path: Path) -> Path:
    """A 3-block EfficientNet (MBConv v1 blocks 1a, 2a, 2b)."""
    import keras_hub

    backbone = keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 2, stackwise_depth_coefficients=[1.0] * 2, stackwise_kernel_sizes=[3, 3],
        stackwise_num_repeats=[1, 2], stackwise_input_filters=[32, 16], stackwise_output_filters=[16, 24],
        stackwise_expansion_ratios=[1, 6], stackwise_squeeze_and_excite_ratios=[0.25, 0.25],
        stackwise_strides=[1, 2], stackwise_block_types=["v1", "v1"], stackwise_force_input_filters=[0, 0],
        stackwise_nores_option=[False, False])  # num_features kept: KerasHub's config drops another value
    return _save(path, backbone, _imagenet_converter(keras_hub.layers.EfficientNetImageConverter), "Apache-2.0")


def save_tiny_mobilenet(path: Path) -> Path:
    """A MobileNetV3-style backbone: a depthwise block, 3 inverted-residual blocks, the output conv block."""
    import keras_hub

    backbone = keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[1], [4, 4]], stackwise_num_blocks=[1, 2], stackwise_num_filters=[[16], [24, 24]],
        stackwise_kernel_size=[[3], [3, 3]], stackwise_num_strides=[[2], [2, 1]],
        stackwise_se_ratio=[[0.25], [None, None]], stackwise_activation=[["relu"], ["relu", "relu"]],
        stackwise_padding=[[1], [1, 1]], output_num_filters=32, depthwise_filters=16, depthwise_stride=2,
        depthwise_residual=False, last_layer_filter=32, squeeze_and_excite=0.25)
    return _save(path, backbone, _imagenet_converter(keras_hub.layers.MobileNetImageConverter), "Apache-2.0")


def _imagenet_converter(cls):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return cls(image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in std], offset=[-m / s for m, s in zip(mean, std)])


def save_tiny_text_model(path: Path) -> Path:
    """A 1-layer BERT: a KerasHub preset that is not an image backbone."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=8)
    backbone.save_to_preset(str(path))
    return path


def _save(path: Path, backbone, converter, licence: str | None) -> Path:
    backbone.save_to_preset(str(path))
    converter.save_to_preset(str(path))
    if licence is not None:  # what the curated catalogue knows of a published preset
        (path / "tlzoo_preset.json").write_text(json.dumps({"licence": licence, "dataset": "random init (test)"}))
    return path

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
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in std], offset=[-m / s for m, s in zip(mean, std)])
    return _save(path, backbone, converter, licence)


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

"""Small CNNs without pretrained weights: the from-scratch baselines transfer must beat."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from tlzoo.zoo.spec import BackboneSpec

if TYPE_CHECKING:
    import keras


def small_cnn(
    include_top: bool = False, weights: str | None = None, input_shape: Sequence[int] | None = None,
    width: int = 32, blocks: int = 4, **_: Any,
) -> keras.Model:
    """``blocks`` x (conv-BN-ReLU x2, max-pool), doubling the width each block.

    Same keyword interface as ``keras.applications`` builders, so the zoo builds it alike.
    """
    import keras

    inputs = keras.Input(shape=tuple(input_shape or (64, 64, 3)))
    x = inputs
    for b in range(1, blocks + 1):
        filters = width * 2 ** (b - 1)
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{b}_conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"block{b}_bn{i}")(x)
            x = keras.layers.Activation("relu", name=f"block{b}_relu{i}")(x)
        if b < blocks:
            x = keras.layers.MaxPooling2D(name=f"block{b}_pool")(x)
    model = keras.Model(inputs, x, name=f"small_cnn_{width}x{blocks}")
    if weights is not None:
        model.load_weights(weights)
    return model


def _scale01(x: Any) -> Any:
    return x / 255.0


def register() -> None:
    from tlzoo.zoo import register_backbone

    register_backbone(BackboneSpec(
        name="small_cnn", family="scratch", builder=small_cnn, default_size=64, min_size=8,
        preprocess=_scale01, preprocess_name="tlzoo.zoo.scratch._scale01", feature_dim=256,
        num_params=1_175_136, weights=(), group_rules=((r"^block(\d+)_", "block{1}"),),
        description="4-block VGG-style CNN for training from scratch (baseline; no pretrained weights)",
    ))


register()

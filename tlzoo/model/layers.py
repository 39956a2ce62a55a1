"""Small serialisable layers that put preprocessing inside the model (so exports carry it)."""
from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tlzoo")
class CastToFloat32(keras.layers.Layer):
    """First layer of every model: raw uint8 (or any numeric) input -> float32.

    Without it, ``Resizing`` on uint8 returns uint8 in eager Keras but float32 in an
    exported SavedModel, and the two disagree."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.cast(inputs, "float32")

    def compute_output_spec(self, inputs: Any) -> Any:
        return keras.KerasTensor(inputs.shape, dtype="float32")


@keras.saving.register_keras_serializable(package="tlzoo")
class BackbonePreprocess(keras.layers.Layer):
    """Applies a registered backbone's ``preprocess_input`` to float images in [0, 255]."""

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        from tlzoo.zoo import get_backbone_spec

        self._fn = get_backbone_spec(backbone).preprocess

    def call(self, inputs: Any) -> Any:
        return self._fn(inputs) if self._fn is not None else inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="tlzoo")
class FeatureScaler(keras.layers.Layer):
    """(x - center) / scale per feature (last axis), with the training statistics stored as
    non-trainable weights, so exports see raw features. (Keras' ``Normalization`` given a mean
    holds it as an eager constant that tf2onnx turns into a missing graph input.)"""

    def __init__(self, center: Any = None, scale: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._init = (center, scale)

    def build(self, input_shape: Any) -> None:
        import numpy as np

        n = int(input_shape[-1])
        center, scale = self._init
        self.center = self.add_weight(shape=(n,), initializer="zeros", trainable=False, name="center")
        self.scale = self.add_weight(shape=(n,), initializer="ones", trainable=False, name="scale")
        if center is not None:
            self.center.assign(np.asarray(center, "float32").reshape(n))
            self.scale.assign(np.asarray(scale, "float32").reshape(n))

    def call(self, inputs: Any) -> Any:
        return (keras.ops.cast(inputs, "float32") - self.center) / self.scale

    def compute_output_spec(self, inputs: Any) -> Any:
        return keras.KerasTensor(inputs.shape, dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return super().get_config()  # the statistics are weights, saved with the model's weights

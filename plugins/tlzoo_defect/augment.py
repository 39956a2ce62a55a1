"""Augmentations for surfaces and parts: textures have no up, so quarter turns are label-preserving."""
from __future__ import annotations

from typing import Any

import keras


class RandomQuarterTurn(keras.layers.Layer):
    """Rotates each image of a batch by a random multiple of 90 degrees (square images; for
    non-square ones only 0 or 180 degrees, which keep the shape). Training-time only."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed

    def call(self, images: Any, training: bool = True) -> Any:
        import tensorflow as tf

        if not training:
            return images
        n = tf.shape(images)[0]
        square = tf.equal(tf.shape(images)[1], tf.shape(images)[2])
        k = tf.random.uniform([n], 0, 4, dtype=tf.int32, seed=self.seed)
        k = tf.where(square, k, 2 * (k % 2))
        r180 = tf.reverse(images, axis=[1, 2])

        def square_case() -> Any:
            r90 = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[1])  # counter-clockwise
            r270 = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[2])
            stack = tf.stack([images, r90, r180, r270], axis=1)
            return tf.gather(stack, k, axis=1, batch_dims=1)

        def other_case() -> Any:
            return tf.where(tf.reshape(k == 2, [-1, 1, 1, 1]), r180, images)

        return tf.cond(square, square_case, other_case)


class RandomBlur(keras.layers.Layer):
    """Blends each image with its 3x3 box blur by a random weight in [0, ``strength``]: mild
    focus changes of an inspection camera."""

    def __init__(self, strength: float = 0.5, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.strength, self.seed = float(strength), seed

    def call(self, images: Any, training: bool = True) -> Any:
        import tensorflow as tf

        if not training or self.strength <= 0:
            return images
        x = tf.cast(images, tf.float32)
        blurred = tf.nn.avg_pool2d(x, 3, 1, "SAME")
        a = tf.random.uniform([tf.shape(x)[0], 1, 1, 1], 0.0, self.strength, seed=self.seed)
        return (1.0 - a) * x + a * blurred

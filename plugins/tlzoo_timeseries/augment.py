"""Series augmentations (Um et al. 2017): jitter, scaling, magnitude warping, time warping and
window slicing, on raw ``[batch, time, features]`` windows, training only (tf.data map).

Magnitudes are relative to each feature's training spread, so they mean the same for a PCA
component and for an amount in euros. Warps and slicing need a time axis: on single events
(tabular mode) only jitter and scaling change anything.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

AUGMENTATIONS = ("jitter", "scaling", "magnitude_warp", "time_warp", "window_slice")


def _interp_time(tf: Any, x: Any, pos: Any) -> Any:
    """x (B, T, C) sampled at fractional time positions pos (B, T), linear interpolation."""
    t = tf.shape(x)[1]
    pos = tf.clip_by_value(pos, 0.0, tf.cast(t - 1, tf.float32))
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, t - 1)
    w = (pos - tf.cast(lo, tf.float32))[..., None]
    return tf.gather(x, lo, batch_dims=1) * (1 - w) + tf.gather(x, hi, batch_dims=1) * w


def _smooth_curve(tf: Any, batch: Any, t: Any, channels: int, sigma: float, knots: int = 4) -> Any:
    """Random smooth curves around 1: (B, T, channels), knots linearly interpolated."""
    k = tf.random.normal((batch, knots + 2, channels), 1.0, sigma)
    pos = tf.linspace(0.0, float(knots + 1), t)[None, :] * tf.ones((batch, 1))
    return _interp_time(tf, k, pos)


class SeriesAugmenter:
    """Callable on a float batch (B, T, C); ``names`` picks which augmentations run, in order."""

    def __init__(self, names: Sequence[str], feature_scale: np.ndarray, strength: float = 1.0, seed: int = 0):
        unknown = sorted(set(names) - set(AUGMENTATIONS))
        if unknown:
            from tlzoo.errors import ConfigError

            raise ConfigError(f"unknown augmentation(s) {unknown}; choose from {list(AUGMENTATIONS)}")
        self.names = list(names)
        self.scale = np.asarray(feature_scale, dtype=np.float32)
        self.strength = float(strength)

    def __call__(self, x: Any) -> Any:
        import tensorflow as tf

        s = self.strength
        b, t, c = tf.shape(x)[0], tf.shape(x)[1], int(self.scale.shape[0])
        tpos = tf.cast(tf.range(t), tf.float32)[None, :] * tf.ones((b, 1))
        for name in self.names:
            if name == "jitter":
                x = x + tf.random.normal(tf.shape(x), 0.0, 0.03 * s) * self.scale
            elif name == "scaling":
                x = x * tf.random.normal((b, 1, c), 1.0, 0.1 * s)
            elif name == "magnitude_warp":
                x = x * _smooth_curve(tf, b, t, c, 0.1 * s)
            elif name == "time_warp":
                speed = tf.maximum(_smooth_curve(tf, b, t, 1, 0.2 * s)[..., 0], 0.1)
                warped = tf.cumsum(speed, axis=1) - speed[:, :1]
                warped = warped / tf.maximum(warped[:, -1:], 1e-6) * tf.cast(t - 1, tf.float32)
                x = _interp_time(tf, x, warped)
            elif name == "window_slice":  # a random 90% crop stretched back to the full length
                frac = 1.0 - 0.1 * s
                start = tf.random.uniform((b, 1), 0.0, 1.0 - frac) * tf.cast(t - 1, tf.float32)
                x = _interp_time(tf, x, start + tpos * frac)
        return x

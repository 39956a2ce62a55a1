"""TF-Hub backbones in Keras 3: a local TF-Hub-format SavedModel made from MobileNet 0.25 with
the real ImageNet weights, loaded through HubLayer as a ``hub:`` backbone."""
from __future__ import annotations

import numpy as np
import pytest

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo import build_backbone, get_backbone_spec, list_backbones
from tlzoo.zoo.hub import HubLayer

SIZE = 64


def test_catalogue_listed_beside_keras_applications():
    names = list_backbones("hub_*")
    assert {"hub_mobilenet_v2_100", "hub_mobilenet_v3_large_100", "hub_efficientnet_b0",
            "hub_efficientnetv2_b0", "hub_bit_m_r50x1", "hub_inception_v3"} <= set(names)
    assert "mobilenet_v2" in list_backbones()
    info = get_backbone_spec("hub_inception_v3").info()
    assert info["default_size"] == 299 and info["feature_dim"] == 2048
    assert info["weights"]["imagenet"]["licence"] == "Apache-2.0"
    assert info["weights"]["imagenet"]["source"].startswith("https://tfhub.dev/google/imagenet/inception_v3")


def test_unresolvable_handle_offline_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("TLZOO_OFFLINE", "1")
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match=r"not available offline.*hub:/path/to/saved_model"):
        build_backbone("hub_efficientnet_b0", "imagenet", (SIZE, SIZE, 3))
    with pytest.raises(WeightsError, match="not a SavedModel directory"):
        build_backbone(f"hub:{tmp_path}", "imagenet", (SIZE, SIZE, 3))


def test_savedmodel_without_usable_signature(tmp_path):
    import tensorflow as tf

    obj = tf.Module()
    obj.v = tf.Variable(1.0)
    tf.saved_model.save(obj, str(tmp_path / "nosig"))
    with pytest.raises(ConfigError, match="no usable signature"):
        HubLayer(str(tmp_path / "nosig"))


def test_input_size_the_savedmodel_does_not_accept(tmp_path):
    import tensorflow as tf

    obj = tf.Module()
    obj.w = tf.Variable(tf.ones([3, 4]))
    obj.__call__ = tf.function(lambda x: tf.reduce_mean(x, axis=[1, 2]) @ obj.w,
                               input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
    tf.saved_model.save(obj, str(tmp_path / "fixed"))
    with pytest.raises(ConfigError, match=r"does not accept input of size \(64, 64, 3\)"):
        build_backbone(f"hub:{tmp_path / 'fixed'}", "imagenet", (64, 64, 3))
    model, _, _ = build_backbone(f"hub:{tmp_path / 'fixed'}", "imagenet", (224, 224, 3))
    assert model(np.ones((1, 224, 224, 3), "float32")).shape == (1, 4)

"""Weight resolution: explicit file, mirror, Keras cache, pins, and the error when all fail."""

import numpy as np
import pytest


def test_shared_imagenet_weights_classify_a_cat(weights_dir, monkeypatch, tmp_path):
    """The shared mirror's real MobileNetV2 (with top) still recognises a cat through tlzoo's
    resolution chain (guards the mirror path against silently random weights)."""
    import keras

    from tlzoo.zoo.weights import routed_keras_downloads

    skimage = pytest.importorskip("skimage.data")
    records = []
    with routed_keras_downloads(records):
        model = keras.applications.MobileNetV2(weights="imagenet")
    assert records[0].source == "mirror"
    img = keras.ops.image.resize(skimage.chelsea()[None].astype("float32"), (224, 224))
    probs = model.predict(keras.applications.mobilenet_v2.preprocess_input(img), verbose=0)
    assert int(np.argmax(probs)) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat

"""Write a keras.applications backbone as a TF2 SavedModel in the TF-Hub reusable format.

The result is what TF-Hub image feature-vector models look like: ``__call__(images, training)``
on images in [0, 1] returning pooled features, plus ``variables``, ``trainable_variables`` and
``regularization_losses``. It lets air-gapped sites (and the tests) use the Hub path with
weights already on the machine, and ``tlzoo_hub.json`` beside it carries the backbone's size,
feature dimension and layer-group rules so ``hub:<dir>`` groups like the Keras original.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras

from tlzoo.errors import ConfigError
from tlzoo.runs.directory import atomic_dir
from tlzoo.zoo import build_backbone
from tlzoo.zoo.hub import META_FILE


def keras_to_hub_savedmodel(
    backbone: str, out: str | Path, weights: str | None = "imagenet", *, overwrite: bool = False
) -> Path:
    """Save ``backbone`` (a registered keras.applications name) with global average pooling as a
    TF-Hub-format SavedModel taking images in [0, 1] of any size. Returns the directory."""
    import tensorflow as tf

    model, spec, record = build_backbone(backbone, weights, (None, None, spec_channels(backbone)))
    if spec.preprocess is None:
        raise ConfigError(f"backbone {backbone!r} has no preprocess function to bake into the SavedModel")
    pooled = keras.layers.GlobalAveragePooling2D(name="hub_pool")(model.output)
    net = keras.Model(model.input, pooled, name=f"{backbone}_feature_vector")

    obj = tf.train.Checkpoint()
    obj.variables = [v.value for v in net.weights]
    obj.trainable_variables = [v.value for v in net.trainable_weights]
    obj.regularization_losses = []

    def call(images: Any, training: bool = False) -> Any:
        # [0, 1] -> the family's own preprocessing, as Hub models do internally
        return net(spec.preprocess(images * 255.0), training=training)

    obj.__call__ = tf.function(call)
    image_spec = tf.TensorSpec([None, None, None, spec.channels], tf.float32)
    for training in (False, True):
        obj.__call__.get_concrete_function(image_spec, training)
    target = Path(out)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        tf.saved_model.save(obj, str(tmp))
        meta = {
            "source_backbone": backbone, "size": spec.default_size, "feature_dim": int(pooled.shape[-1]),
            "value_range": [0.0, 1.0], "group_rules": [list(r) for r in spec.group_rules],
            "licence": spec.weights_info(weights).licence if weights and spec.weights_info(weights) else "",
            "weights": record.to_dict() if record else None,
            "description": f"{backbone} exported as a TF-Hub feature-vector SavedModel",
        }
        (Path(tmp) / META_FILE).write_text(json.dumps(meta, indent=2))
    return target


def spec_channels(backbone: str) -> int:
    from tlzoo.zoo import get_backbone_spec

    return get_backbone_spec(backbone).channels

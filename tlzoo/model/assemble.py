"""Assemble the adapted model: raw input -> plugin adapter -> backbone preprocessing ->
backbone -> plugin head. One builder, used by training, evaluation and export."""
from __future__ import annotations

import re
from typing import Any, Sequence

import keras

from tlzoo.compat import last_call_node
from tlzoo.model.layers import BackbonePreprocess
from tlzoo.zoo.spec import BackboneSpec


def build_model(
    plugin: Any,
    spec: BackboneSpec,
    backbone: keras.Model,
    raw_shape: Sequence[int | None],
    input_size: int,
    num_classes: int,
) -> keras.Model:
    """The full model. ``raw_shape`` is one sample's shape as the data holds it (H, W, C);
    height and width are left free so deployments can feed any size."""
    inputs, features = backbone_features(plugin, spec, backbone, raw_shape, input_size)
    outputs = plugin.build_head(features, num_classes)
    # "hub:/path/to/saved_model" names hold characters Keras refuses in a model name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{plugin.name}_{spec.name}").strip("_")
    return keras.Model(inputs, outputs, name=name)


def backbone_features(
    plugin: Any, spec: BackboneSpec, backbone: keras.Model, raw_shape: Sequence[int | None], input_size: int
) -> tuple[Any, Any]:
    """Raw image input -> plugin adapter -> backbone preprocessing -> backbone: (inputs, features).
    The un-augmented path whose output the tuner caches."""
    if getattr(plugin, "modality", "image") == "timeseries":
        # [batch, time, features], any length; the plugin's adapter scales features, no image preprocessing
        inputs = keras.Input(shape=(None, raw_shape[-1]), name="series")
        return inputs, backbone(plugin.input_adapter(inputs, input_size))
    inputs = keras.Input(shape=(None, None, raw_shape[-1]), name="image")
    x = plugin.input_adapter(inputs, input_size)
    x = BackbonePreprocess(spec.name, name="backbone_preprocess")(x)
    return inputs, backbone(x)


def find_backbone(model: keras.Model) -> keras.Model:
    """The nested backbone model inside an adapted model."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"expected one nested backbone in {model.name}, found {len(nested)}")
    return nested[0]


def backbone_call(backbone: keras.Model) -> tuple[Any, Any]:
    """(input, output) tensors of the backbone's call inside the adapted model's graph, e.g. to cut
    the model into raw input -> backbone input and backbone output -> head. Keras has no public
    handle on a nested model's call site: it is the backbone's last inbound node."""
    node = last_call_node(backbone)
    return node.input_tensors[0], node.output_tensors[0]


def inference_model(model: keras.Model) -> keras.Model:
    """A never-compiled view of ``model`` (same layers and weights) for saving and export."""
    # a dict of outputs (one per task) keeps its names; a single output stays a list of one
    outputs = model.output if isinstance(model.output, dict) else model.outputs
    return keras.Model(model.inputs, outputs, name=model.name)

"""The backbone catalogue: every keras.applications architecture is registered, and every entry
builds at its declared minimum size with the declared feature dimension, parameter count and
layer groups. Random weights only (weights=None): no downloads."""
from __future__ import annotations

import gc
import importlib
import inspect
import re

import keras
import pytest

import tlzoo
from tlzoo.errors import ConfigError
from tlzoo.zoo import build_backbone, get_backbone_spec, layer_groups
from tlzoo.zoo.spec import STEM

# TF-Hub entries load a SavedModel (no random init, no download here): the test_hub.py modules cover them.
# image backbones; time-series ones (and local pretrained entries) are tested in test_timeseries.py
# SavedModels and KerasHub presets carry their architecture with their weights: nothing to build offline here
# (tests/unit/test_keras_hub.py builds presets saved locally)
NAMES = [n for n in tlzoo.list_backbones()
         if get_backbone_spec(n).family not in ("tfhub", "keras_hub") and get_backbone_spec(n).modality == "image"]
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
LICENCES = {"Apache-2.0", "MIT", "BSD-3-Clause", "CC-BY-4.0"}


def keras_constructors() -> dict[str, object]:
    """Every model constructor ``keras.applications`` exports (the rest are its submodules)."""
    found = {}
    for attr in dir(keras.applications):
        obj = getattr(keras.applications, attr)
        if not attr.startswith("_") and callable(obj) and not inspect.ismodule(obj):
            found[attr] = obj
    return found


CONSTRUCTORS = keras_constructors()
KERAS_NAMES = [n for n in NAMES if get_backbone_spec(n).builder in CONSTRUCTORS.values()]


@pytest.fixture
def free_memory():
    """A full collection after each large model (what earlier modules left is out of its way: conftest's
    _quiet_heap)."""
    yield
    keras.backend.clear_session()
    gc.collect()


def test_every_keras_application_is_registered():
    assert len(CONSTRUCTORS) >= 40, sorted(CONSTRUCTORS)  # the derivation found the models
    registered = {}
    for name in NAMES:
        registered.setdefault(get_backbone_spec(name).builder, []).append(name)
    missing = sorted(attr for attr, fn in CONSTRUCTORS.items() if fn not in registered)
    assert not missing, f"keras.applications constructors with no registered backbone: {missing}"


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_keras_entry_metadata(name):
    spec = get_backbone_spec(name)
    assert SNAKE_CASE.fullmatch(name)
    assert spec.default_size >= spec.min_size and spec.description
    module, _, attr = spec.preprocess_name.rpartition(".")
    assert getattr(importlib.import_module(module), attr) is spec.preprocess
    assert spec.weight_names == ("imagenet",)
    (weights,) = spec.weights
    assert weights.licence in LICENCES and weights.source and weights.dataset.startswith("ImageNet")
    # min_size is the constructor's own minimum: one pixel less and Keras refuses.
    kwargs = dict(spec.builder_kwargs, include_top=False, weights=None)
    below = spec.min_size - 1
    with pytest.raises(ValueError):
        spec.builder(input_shape=(below, below, spec.channels), **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_builds_at_min_size_with_declared_shape_params_and_groups(name, free_memory):
    spec = get_backbone_spec(name)
    size = spec.min_size
    model, built_spec, record = build_backbone(name, weights=None, input_shape=(size, size, spec.channels))
    assert built_spec is spec and record is None

    assert model.output.shape[-1] == spec.feature_dim
    assert model.count_params() == spec.num_params

    names = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    groups = layer_groups(model, spec)
    flat = [n for g in groups for n in g.layers]
    # Every non-input layer in exactly one group, and groups are contiguous runs in layer order
    # (so no group was interrupted and merged out of order).
    assert flat == names, [g.name for g in groups]
    assert len({g.name for g in groups}) == len(groups)
    assert len(groups) >= 3, [g.name for g in groups]
    first = groups[0].name
    assert first == STEM or re.search(r"(?:^|\D)[01][a-z]?$", first), first  # stem or block 0/1
    assert model.layers[-1].name in groups[-1].layers
    weighted = {layer.name for layer in model.layers if layer.weights}
    empty = [g.name for g in groups if not weighted.intersection(g.layers)]
    assert not empty, f"groups without weights: {empty}"


@pytest.mark.parametrize("name", NAMES)
def test_below_min_size_is_a_config_error_naming_the_size(name):
    spec = get_backbone_spec(name)
    below = spec.min_size - 1
    with pytest.raises(ConfigError) as info:
        build_backbone(name, weights=None, input_shape=(below, below, spec.channels))
    message = str(info.value)
    assert f"{below}x{below}" in message and f"{spec.min_size}x{spec.min_size}" in message
    assert name in message


def test_efficientnet_glob():
    assert tlzoo.list_backbones("efficientnet*") == sorted(
        [f"efficientnet_b{i}" for i in range(8)]
        + [f"efficientnet_v2_{v}" for v in ("b0", "b1", "b2", "b3", "s", "m", "l")]
    )

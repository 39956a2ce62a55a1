"""TF-Hub backbones in Keras 3: a local TF-Hub-format SavedModel made from MobileNet 0.25 with
the real ImageNet weights, loaded through HubLayer as a ``hub:`` backbone."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import shared_weights_dir

from support import rng_images
from tlzoo.errors import ConfigError
from tlzoo.train.schedule import Stage, apply_stage, make_optimizer
from tlzoo.zoo import build_backbone, layer_groups
from tlzoo.zoo.hub import HubLayer, find_hub_layers, is_batchnorm_variable

SIZE = 64


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    weights = shared_weights_dir()
    if weights is None:
        pytest.skip("needs ../shared/weights (real ImageNet weights); absent on this machine")
    from tlzoo.zoo.hub_savedmodel import keras_to_hub_savedmodel

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLZOO_WEIGHTS_DIR", str(weights))
        return keras_to_hub_savedmodel("mobilenet_025", tmp_path_factory.mktemp("hub") / "mobilenet_025_fv")


@pytest.fixture
def hub_backbone(hub_dir: Path, weights_dir: Path):
    return build_backbone(f"hub:{hub_dir}", "imagenet", (SIZE, SIZE, 3))


def test_outputs_match_the_keras_model(hub_backbone, weights_dir):
    model, spec, record = hub_backbone
    assert record.source == "local" and len(record.sha256) == 64
    assert spec.family == "tfhub" and spec.feature_dim == 256 and spec.preprocess_name.startswith("scale")
    x01 = rng_images(6, SIZE, seed=1).astype("float32") / 255.0
    got = np.asarray(model(x01))
    keras_bb, kspec, _ = build_backbone("mobilenet_025", "imagenet", (SIZE, SIZE, 3))
    want = np.asarray(keras.layers.GlobalAveragePooling2D()(keras_bb(kspec.preprocess(x01 * 255.0))))
    assert got.shape == (6, 256)
    assert np.abs(got - want).max() <= 1e-5
    assert np.abs(want).max() > 0.1  # real features, not zeros


def test_variables_are_the_savedmodels_and_grouped(hub_backbone):
    model, spec, _ = hub_backbone
    layer = find_hub_layers(model)[0]
    restored = layer._loaded.variables
    # Every Keras variable of the layer *is* a restored SavedModel variable (same storage).
    assert len(layer.weights) == len(restored) == 135
    members = layer.member_variables()
    assert all(members[tv.name.split(":")[0]].value is tv for tv in restored)
    assert len(layer.trainable_weights) == 81  # moving statistics are not trainable
    groups = layer_groups(model, spec)
    assert [g.name for g in groups][:3] == ["stem", "block_1", "block_2"] and groups[-1].name == "block_13"
    assert "conv_pw_13/kernel" in groups[-1].layers


def _train_one_step(model, multipliers):
    head = keras.layers.Dense(1, activation="sigmoid")
    inputs = keras.Input((SIZE, SIZE, 3))
    full = keras.Model(inputs, head(model(inputs)))
    full.compile(optimizer=make_optimizer("sgd", 0.5, multipliers), loss="binary_crossentropy")
    x = rng_images(8, SIZE, seed=2).astype("float32") / 255.0
    y = np.array([0, 1] * 4, dtype="float32")
    full.train_on_batch(x, y)


def test_one_step_changes_exactly_the_unfrozen_variables(hub_backbone):
    model, spec, _ = hub_backbone
    layer = find_hub_layers(model)[0]
    groups = layer_groups(model, spec)
    multipliers = apply_stage(model, groups, Stage("top2", 1, 2, 1e-3, lr_decay=0.5))
    top2 = set(groups[-1].layers) | set(groups[-2].layers)
    expected = {n for n in top2 if not is_batchnorm_variable(n)}
    trainable = {n for n, v in layer.member_variables().items() if v.trainable}
    assert trainable == expected == {"conv_dw_12/kernel", "conv_pw_12/kernel",
                                     "conv_dw_13/kernel", "conv_pw_13/kernel"}
    assert layer.batchnorm_training is False
    # layer-wise learning rates come from the same groups: top group x0.5, the next x0.25
    assert multipliers == {"hub/conv_pw_13.kernel": 0.5, "hub/conv_dw_13.kernel": 0.5,
                           "hub/conv_pw_12.kernel": 0.25, "hub/conv_dw_12.kernel": 0.25}
    before = {n: np.array(v.value.numpy()) for n, v in layer.member_variables().items()}
    _train_one_step(model, multipliers)
    after = {n: v.value.numpy() for n, v in layer.member_variables().items()}
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed == expected  # frozen ones (BN statistics included) are bit-identical


def test_frozen_stage_leaves_every_backbone_variable_identical(hub_backbone):
    model, spec, _ = hub_backbone
    layer = find_hub_layers(model)[0]
    apply_stage(model, layer_groups(model, spec), Stage("head", 1, 0))
    assert layer.trainable_weights == []
    before = [np.array(v.numpy()) for v in layer.weights]
    _train_one_step(model, {})
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, layer.weights))


def test_training_reaches_the_savedmodel_only_when_batchnorm_may_train(hub_backbone):
    model, spec, _ = hub_backbone
    layer = find_hub_layers(model)[0]
    x = rng_images(4, SIZE, seed=4).astype("float32") / 255.0
    apply_stage(model, layer_groups(model, spec), Stage("all", 1, "all"))
    # the BN trap: fit's training=True must not put the SavedModel's batch norm in training mode
    np.testing.assert_array_equal(np.asarray(model(x, training=True)), np.asarray(model(x, training=False)))
    apply_stage(model, layer_groups(model, spec), Stage("all", 1, "all", train_batchnorm=True))
    assert layer.batchnorm_training
    assert "conv1_bn/gamma" in {n for n, v in layer.member_variables().items() if v.trainable}
    assert np.abs(np.asarray(model(x, training=True)) - np.asarray(model(x, training=False))).max() > 1e-2


def test_model_keras_round_trip_with_safe_mode(hub_backbone, tmp_path):
    model, _, _ = hub_backbone
    layer = find_hub_layers(model)[0]
    kernel = layer.member_variables()["conv_pw_13/kernel"]
    kernel.assign(kernel.numpy() * 1.5)  # "fine-tuned": the archive must carry this, not the SavedModel's
    x = rng_images(3, SIZE, seed=3).astype("float32") / 255.0
    want = np.asarray(model(x))
    model.save(tmp_path / "m.keras")
    config = json.loads(__import__("zipfile").ZipFile(tmp_path / "m.keras").read("config.json"))
    assert "tlzoo>HubLayer" in json.dumps(config)
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x)), want, atol=1e-6)
    assert isinstance(find_hub_layers(loaded)[0], HubLayer)


def test_hub_backbone_rejects_other_weights(hub_dir, weights_dir):
    with pytest.raises(ConfigError, match="carries its own weights"):
        build_backbone(f"hub:{hub_dir}", None, (SIZE, SIZE, 3))


def test_adapt_and_export_round_trip(hub_dir, weights_dir, scans_npz, tmp_path):
    import yaml

    from support import fast_config
    from tlzoo.deploy.export import export
    from tlzoo.train.recipe import adapt

    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone=f"hub:{hub_dir}",
                   weights="imagenet", label_fraction=0.5))
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["weights"]["source"] == "local" and config["weights"]["path"] == str(hub_dir)
    assert config["backbone"]["layer_groups"][-1] == "block_13"
    assert 0.0 <= result.metrics["test"]["roc_auc"] <= 1.0
    probs = np.load(result.run_dir / "test_predictions.npz")["probs"]
    assert probs.std() > 1e-4  # the prediction depends on the input: parity below means something
    exported = export(result.run_dir, formats=["savedmodel", "onnx", "tflite"], out=tmp_path / "export", verbose=0)
    assert set(exported.parity) == {"savedmodel", "onnx", "tflite"}
    for fmt, summary in exported.parity.items():
        assert summary["passed"], (fmt, summary)
        assert summary["max_abs_diff"] <= 1e-4 and summary["agreement"] == 1.0

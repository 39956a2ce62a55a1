"""The adapt recipe end to end on generated data, its run directory, and its bad-input errors."""
import json

import keras
import numpy as np
import pytest
import yaml

from support import fast_config
from tlzoo.errors import ConfigError, TrainingError
from tlzoo.plugin import PLUGINS, DomainPlugin, register_plugin
from tlzoo.train.recipe import AdaptConfig, adapt, evaluate, load_run


def test_adapt_writes_a_complete_run_directory(default_run, shared_scans_npz):
    result = default_run
    out = result.run_dir
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "metrics.json", "history.csv", "history.json", "best.weights.h5", "model.keras",
            "learning_curves.png", "confusion_matrix.png", "roc_curve.png", "test_predictions.npz"} <= names
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]

    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n"] == 64 and 0 <= test["roc_auc"] <= 1
    assert sum(map(sum, test["confusion_matrix"])) == 64
    # The numbers are the model's: recompute them from the saved predictions.
    pred = np.load(out / "test_predictions.npz")
    from sklearn.metrics import roc_auc_score

    assert test["roc_auc"] == pytest.approx(roc_auc_score(pred["y_true"], pred["probs"].ravel()))

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["adapt"]["model"]["backbone"] == "mobilenet_025" and config["weights"] == {"source": "random"}
    assert config["data"]["fingerprint"] and config["data"]["train"]["n"] == 96
    assert [s["name"] for s in config["schedule"]["stages"]] == ["head", "all"]
    assert [r["stage"] for r in result.history] == ["head", "all"]

    # The saved model reproduces the saved predictions, and `evaluate` agrees with metrics.json.
    _, model = load_run(out)
    from tlzoo.data import read_npz

    x_test = read_npz(shared_scans_npz).test.x
    np.testing.assert_allclose(model.predict(x_test, verbose=0), pred["probs"], atol=1e-5)
    again = evaluate(out)
    assert again["roc_auc"] == pytest.approx(test["roc_auc"], abs=1e-6)


def test_random_init_backbone_trains_its_batchnorm_and_a_pretrained_one_keeps_it(scans_npz, tmp_path, weights_dir):
    from tlzoo.model.assemble import find_backbone
    from tlzoo.train.recipe import load_model

    def moving_means(run_dir):
        backbone = find_backbone(load_model(run_dir / "model.keras"))
        return {layer.name: np.asarray(layer.moving_mean) for layer in backbone.layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    one_stage = {"stages": [{"name": "all", "epochs": 1, "trainable": "all", "learning_rate": 1e-3}]}
    # (whether BN trains follows the weights' source, not the architecture: small_cnn is the random-init case
    # that traces fastest; a random-init mobilenet_025's full stage costs about 9 s of tracing)
    scratch = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "scratch"), backbone="small_cnn",
                                schedule=one_stage))
    # random init: nothing pretrained to keep, so BN layers learn (frozen they would stay mean 0 / variance 1)
    assert all(s["train_batchnorm"] for s in scratch.config["schedule"]["stages"])
    assert any(np.abs(m).max() > 1e-3 for m in moving_means(scratch.run_dir).values())
    pretrained = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "pre"), weights="imagenet",
                                   schedule=one_stage))
    assert not any(s["train_batchnorm"] for s in pretrained.config["schedule"]["stages"])
    from tlzoo.zoo import create_backbone

    reference = {layer.name: np.asarray(layer.moving_mean)
                 for layer in create_backbone("mobilenet_025", "imagenet", (32, 32, 3)).layers
                 if isinstance(layer, keras.layers.BatchNormalization)}
    after = moving_means(pretrained.run_dir)
    assert after.keys() == reference.keys() and all(np.array_equal(after[k], reference[k]) for k in after)


def test_label_subsampling_is_recorded(subsampled_grouped_run):
    result = subsampled_grouped_run  # labels_per_class=10
    assert result.metrics["n_train"] == 20
    assert result.config["data"]["train"]["per_class"] == [10, 10]
    assert any("subsampled: 20 of 96" in n for n in result.config["data"]["notes"])


def test_real_pretrained_backbone_beats_chance_on_generated_scans(scans_npz, tmp_path, weights_dir):
    result = adapt(fast_config(data=str(scans_npz), out=str(tmp_path / "r"), weights="imagenet", input_size=64,
                               schedule={"kind": "fine_tune", "freeze_epochs": 2, "epochs": 3, "base_lr": 2e-3}))
    assert result.config["weights"]["source"] == "mirror"
    assert result.metrics["test"]["roc_auc"] > 0.75


def test_non_finite_loss_stops_and_leaves_nothing(scans_npz, tmp_path):
    @register_plugin(replace=True)
    class Exploding(DomainPlugin):
        name = "test-exploding"
        task = "binary"

        def loss(self, num_classes):
            return lambda y, p: keras.ops.mean(p) * np.nan

    try:
        out = tmp_path / "r"
        with pytest.raises(TrainingError, match="loss became nan in stage 'head'"):
            adapt(fast_config(data=str(scans_npz), out=str(out), plugin="test-exploding"))
        assert not out.exists() and not list(tmp_path.glob(".r.tmp-*"))
    finally:
        PLUGINS.unregister("test-exploding")


def test_config_file_round_trip(default_run, tmp_path):
    first = default_run  # fast_config(..., seed=3)
    cfg = AdaptConfig.from_yaml(first.run_dir / "config.yaml", out=str(tmp_path / "b"))
    assert cfg.seed == 3 and cfg.backbone == "mobilenet_025" and cfg.schedule == fast_config(data="x.npz").schedule
    assert cfg.data == first.config["adapt"]["data"]["source"] and cfg.out == str(tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown key 'epochs': it belongs under `training: schedule:`"):
        AdaptConfig.from_dict({"plugin": "x", "data": "y", "epochs": 3})
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        AdaptConfig.from_dict({"plugin": "x", "data": "y", "epoch": 3})
    assert first.run_dir.name == "run" and first.run_dir.parent.name.startswith("default_run")  # where it was asked

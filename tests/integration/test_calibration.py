"""Calibration (ECE, temperature scaling carried into the model and its exports) and thresholds
chosen for an operating point on validation."""
import importlib
import json
import os

import numpy as np
import pytest
import yaml

from support import fast_config

E = importlib.import_module("tlzoo.deploy.export")


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    from conftest import shared_weights_dir

    from tlzoo.data.synthetic import write_opacity_npz
    from tlzoo.train.recipe import adapt

    if shared_weights_dir() is None:
        pytest.skip("needs ../shared/weights (real ImageNet weights); absent on this machine")
    os.environ.setdefault("TLZOO_WEIGHTS_DIR", str(shared_weights_dir()))
    root = tmp_path_factory.mktemp("calibration")
    data = write_opacity_npz(root / "scans.npz", n_train=96, n_val=64, n_test=64, size=32, contrast=60)
    # pretrained, 12 steps at 1e-3: test probabilities spread over 0.5-1.0 of [0, 1] (ROC-AUC 0.77-0.99 over
    # repeated runs: CPU thread order makes training non-deterministic). At 1e-2 training
    # diverges, the fitted temperature reaches its bound and squeezes every probability within 1e-4 of the
    # threshold: a vacuous calibration test and a parity check decided by float noise
    result = adapt(fast_config(data=str(data), out=str(root / "run"), weights="imagenet",
                               plugin_options={"threshold": "sensitivity:0.9"},
                               schedule={"stages": [{"name": "all", "epochs": 4, "trainable": "all",
                                                     "learning_rate": 1e-3}]}))
    return result


def test_run_records_calibration_and_threshold(calibrated_run) -> None:
    run = calibrated_run.run_dir
    m = json.loads((run / "metrics.json").read_text())
    cal = m["calibration"]
    assert cal["method"] == "temperature" and cal["fitted_on"] == "val" and cal["temperature"] > 0
    assert cal["val"]["nll_after"] <= cal["val"]["nll_before"] + 1e-9  # fitted to minimise it there
    probs = np.load(run / "test_predictions.npz")["probs"]
    assert np.ptp(probs) > 0.2  # a model that learned: its probabilities spread out, not squeezed together
    assert m["test"]["roc_auc"] > 0.6
    assert (run / "reliability.png").stat().st_size > 5000
    assert m["threshold_policy"] == "sensitivity:0.9" and m["val"]["sensitivity"] >= 0.9
    assert m["test"]["threshold"] == m["val"]["threshold"]
    cm = np.array(m["test"]["confusion_matrix"])
    assert cm.sum() == m["test"]["n"] == 64


def test_saved_model_and_exports_return_calibrated_probabilities(calibrated_run, tmp_path) -> None:
    from tlzoo.extensions.calibration import TemperatureScaling
    from tlzoo.train.recipe import load_run

    run = calibrated_run.run_dir
    config, model = load_run(run)
    assert isinstance(model.layers[-1], TemperatureScaling)
    t = json.loads((run / "metrics.json").read_text())["calibration"]["temperature"]
    assert model.layers[-1].temperature == pytest.approx(t)
    stored = np.load(run / "test_predictions.npz")
    from tlzoo.plugin import get_plugin

    x = get_plugin("medical-imaging").read_data(config["adapt"]["data"]["source"], seed=0).test.x
    probs = np.asarray(model.predict(x, verbose=0))
    assert np.abs(probs - stored["probs"]).max() < 1e-5
    uncalibrated = np.asarray(_without_last_layer(model).predict(x, verbose=0))
    assert np.abs(uncalibrated - probs).max() > 1e-3  # the temperature really changes them
    result = E.export(run, formats=["savedmodel", "onnx"], out=tmp_path / "export", verbose=0)
    for fmt in ("savedmodel", "onnx"):
        assert result.parity[fmt]["max_abs_diff"] <= 1e-4
        got = E.load_export(tmp_path / "export", fmt)(x)["probabilities"]
        assert np.abs(got - probs).max() <= 1e-4
    card = (tmp_path / "export" / "model_card.md").read_text()
    assert f"temperature-scaled (T = {t:.4f}" in card and "sensitivity:0.9" in card
    assert "was chosen on the validation split (64 samples) as the highest threshold reaching sensitivity 0.9" in card


def _without_last_layer(model):
    import keras

    return keras.Model(model.inputs, model.layers[-1].input)


def test_cli_operating_point_flags(scans_npz, tmp_path) -> None:
    from tlzoo.cli.main import main

    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "small_cnn",
                 "--weights", "none", "--input-size", "32", "--epochs", "2", "--head-epochs", "0",
                 "--max-false-positive-rate", "0.05", "--calibration", "none", "--out", str(tmp_path / "r")])
    assert code == 0
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert config["plugin"]["options"]["threshold"] == "fpr:0.05" and "calibration" not in config["adapt"]
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    (tn, fp), _ = m["val"]["confusion_matrix"]
    assert fp / (tn + fp) <= 0.05 and m.get("calibration") is None and not (tmp_path / "r" / "reliability.png").exists()
    assert main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--cost-ratio", "5",
                 "--target-sensitivity", "0.9", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()

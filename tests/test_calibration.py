"""Calibration (ECE, temperature scaling carried into the model and its exports) and thresholds
chosen for an operating point on validation."""
import importlib
import json
import os

import numpy as np
import pytest
import yaml
from support import fast_config

from tlzoo.errors import ConfigError
from tlzoo.evaluation import metrics as M
from tlzoo.extensions import calibration as C

E = importlib.import_module("tlzoo.deploy.export")


def _overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities whose true log-odds are 2z, reported as sigmoid(3z): T = 1.5 fixes them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = (2 * y - 1) * 1.0 + rng.normal(0, 1, n)
    return y, 1 / (1 + np.exp(-3 * z))


def test_temperature_recovers_the_planted_scale_and_lowers_ece() -> None:
    y, p = _overconfident(4000)
    t = C.fit_temperature(y[:2000], p[:2000], "binary")
    assert abs(t - 1.5) < 0.1
    after = C.apply_temperature(p[2000:], t, "binary")
    assert C.expected_calibration_error(y[2000:], after, "binary") < 0.5 * C.expected_calibration_error(
        y[2000:], p[2000:], "binary")
    # ranking and the 0.5 decision are untouched
    assert (np.argsort(after, kind="stable") == np.argsort(p[2000:], kind="stable")).all()
    assert ((after >= 0.5) == (p[2000:] >= 0.5)).all()


def test_multiclass_temperature_and_layer_match_numpy() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (500, 4)) * 4
    y = np.array([rng.choice(4, p=np.exp(row / 4) / np.exp(row / 4).sum()) for row in logits])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    t = C.fit_temperature(y, p, "multiclass")
    assert 2.5 < t < 6
    ref = C.apply_temperature(p, t, "multiclass")
    got = np.asarray(C.TemperatureScaling(t, "multiclass")(p.astype("float32")))
    assert np.abs(got - ref).max() < 1e-5 and (got.argmax(1) == p.argmax(1)).all()
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        C.TemperatureScaling(0.0)


def test_ece_of_perfectly_calibrated_scores_is_small() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(int)
    assert C.expected_calibration_error(y, p, "binary") < 0.02
    assert C.expected_calibration_error(y, np.where(p > 0.5, 0.999, 0.001), "binary") > 0.2


def test_operating_point_thresholds() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    t = M.choose_threshold("sensitivity:0.95", y, p)
    sens = lambda thr: ((p >= thr) & (y == 1)).sum() / (y == 1).sum()  # noqa: E731
    assert sens(t) >= 0.95 and sens(np.nextafter(t, 1) + 1e-9) < 0.95  # the highest such threshold
    t = M.choose_threshold("fpr:0.01", y, p)
    assert ((p >= t) & (y == 0)).sum() / (y == 0).sum() <= 0.01
    cost = lambda thr, r: r * ((p < thr) & (y == 1)).sum() + ((p >= thr) & (y == 0)).sum()  # noqa: E731
    t1, t10 = M.choose_threshold("cost:1", y, p), M.choose_threshold("cost:10", y, p)
    assert t10 < t1  # missed positives cost more: a lower threshold
    assert cost(t10, 10) <= min(cost(c, 10) for c in np.linspace(0, 1, 101))
    assert M.choose_threshold(0.3, y, p) == 0.3
    for bad, msg in (("sensitivity:1.5", "target sensitivity must be in"), ("cost:-1", "cost ratio"),
                     ("recall:0.9", "threshold policy 'recall' unknown"), ("fpr:x", "needs a number"),
                     (1.2, r"threshold must be in \(0, 1\)"), ("high", "threshold must be a number")):
        with pytest.raises(ConfigError, match=msg):
            M.choose_threshold(bad, y, p)


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
    # pretrained (BN frozen): 12 steps give spread-out probabilities; a random-init CNN's BatchNorm
    # statistics are far from settled after 12 steps, and its squeezed outputs make a vacuous parity test
    result = adapt(fast_config(data=str(data), out=str(root / "run"), weights="imagenet",
                               plugin_options={"threshold": "sensitivity:0.9"},
                               schedule={"stages": [{"name": "all", "epochs": 4, "trainable": "all",
                                                     "learning_rate": 1e-2}]}))
    return result


def test_run_records_calibration_and_threshold(calibrated_run) -> None:
    run = calibrated_run.run_dir
    m = json.loads((run / "metrics.json").read_text())
    cal = m["calibration"]
    assert cal["method"] == "temperature" and cal["fitted_on"] == "val" and cal["temperature"] > 0
    assert cal["val"]["nll_after"] <= cal["val"]["nll_before"] + 1e-9  # fitted to minimise it there
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

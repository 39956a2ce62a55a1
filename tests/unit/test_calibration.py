"""Calibration (ECE, temperature scaling carried into the model and its exports) and thresholds
chosen for an operating point on validation."""

import numpy as np
import pytest

from tlzoo.errors import ConfigError
from tlzoo.evaluation import metrics as M
from tlzoo.extensions import calibration as C


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
    # the highest such threshold's decisions, set midway between the two validation scores it separates
    assert sens(t) >= 0.95 and sens(np.nextafter(p[p >= t].min(), 1)) < 0.95
    assert t == pytest.approx((p[p >= t].min() + p[p < t].max()) / 2)
    # one float32 step apart (saturated probabilities): no middle survives float32, the score itself is kept
    sat = np.array([0.2, 1 - 2 ** -23, 1 - 2 ** -24], np.float32)
    t_sat = M.choose_threshold("sensitivity:1", np.array([0, 0, 1]), sat)
    assert ((sat >= np.float32(t_sat)) == [False, False, True]).all()
    assert M.midway(np.array([-3.0, -1.0]), -3.0) == -3.0  # nothing below: the threshold stays
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

"""tlzoo rank: LogME mechanics, k-NN / probe scores, ranking real backbones, skipping unavailable weights, the CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlzoo.analysis.rank import (
    knn_loo,
    linear_probe,
    logme,
    logme_target,
    resolve_candidates,
    unavailable_reason,
)
from tlzoo.errors import ConfigError, NotFoundError

RESNET50_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _direct_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) / N from its definition: A = alpha I + beta F^T F, m = beta A^-1 F^T y."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    res = float(((y - f @ m) ** 2).sum())
    return float((d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.linalg.slogdet(a)[1] - beta / 2 * res
                  - alpha / 2 * m @ m - n / 2 * np.log(2 * np.pi)) / n)


@pytest.mark.parametrize("n,d", [(60, 8), (15, 30)])  # more samples than dimensions, and fewer
def test_logme_matches_the_direct_evidence_and_is_its_maximum(n: int, d: int) -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
    evidence, alpha, beta = logme_target(f, y)
    assert evidence == pytest.approx(_direct_evidence(f, y, alpha, beta), abs=1e-9)
    if n > d:  # the fixed point is a stationary point: moving alpha or beta lowers the evidence
        for fa, fb in ((1.2, 1), (1 / 1.2, 1), (1, 1.2), (1, 1 / 1.2)):
            assert _direct_evidence(f, y, alpha * fa, beta * fb) < evidence
    # one-vs-rest over classes, averaged
    labels = y.astype(int)
    per_class = [logme_target(f, (labels == c).astype(float))[0] for c in (0, 1)]
    assert logme(f, labels) == pytest.approx(np.mean(per_class), abs=1e-6)
    # scale-free even where the fixed point would stall: features ~1e-12, as a random-init MobileNet gives
    assert logme(f * 1e-12, labels) == pytest.approx(logme(f, labels), abs=1e-6)
    assert knn_loo(f * 1e-15, labels) == pytest.approx(knn_loo(f, labels))


def test_logme_prefers_separating_features_and_is_invariant_to_scale_and_rotation() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    signal = np.hstack([np.eye(3)[y] * 3 + rng.normal(size=(300, 3)), rng.normal(size=(300, 61))])
    noise = rng.normal(size=(300, 64))
    good, bad = logme(signal, y), logme(noise, y)
    assert good > bad + 0.3
    assert logme(signal * 250.0, y) == pytest.approx(good, abs=1e-6)  # alpha absorbs the scale
    q, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    assert logme(signal @ q, y) == pytest.approx(good, abs=1e-6)  # the prior is isotropic
    assert logme(signal, y.reshape(-1, 1)) == pytest.approx(good)  # MedMNIST-style [N, 1] labels
    with pytest.raises(ConfigError, match="features"):
        logme(signal[:10], y)
    with pytest.raises(ConfigError, match="NaN"):
        logme(np.full((5, 3), np.nan), np.array([0, 1, 0, 1, 0]))


def test_knn_and_linear_probe_scores() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    signal = np.hstack([(y[:, None] * 2 - 1) * 2.0 + rng.normal(size=(200, 1)), rng.normal(size=(200, 15))])
    noise = rng.normal(size=(200, 16))
    assert knn_loo(signal, y) > 0.9
    assert abs(knn_loo(noise, y) - 0.5) < 0.12
    # leave-one-out: a sample never votes for itself (1-NN on noise would otherwise score 1.0) ...
    assert knn_loo(noise, y, k=1) < 0.7
    # ... but an exact duplicate of it does
    twins = np.repeat(noise[:50], 2, axis=0)
    assert knn_loo(twins, np.repeat(y[:50], 2), k=1) == pytest.approx(1.0)
    auc, metric = linear_probe(signal[:150], y[:150], signal[150:], y[150:], "binary")
    assert metric == "roc_auc" and auc > 0.95
    auc_noise, _ = linear_probe(noise[:150], y[:150], noise[150:], y[150:], "binary")
    assert auc_noise < 0.75
    acc, metric = linear_probe(signal[:150], y[:150], signal[150:], y[150:], "multiclass")
    assert metric == "accuracy" and acc > 0.9


def test_candidates_patterns_weights_and_reasons(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TLZOO_OFFLINE", "1")
    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(tmp_path))  # an empty mirror
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cands, skipped = resolve_candidates(["mobilenet_v2*", "mobilenet_v2@none", "ts_fcn"], "imagenet", "image")
    labels = [c.label for c in cands]
    assert "mobilenet_v2@imagenet" in labels and "mobilenet_v2_140@imagenet" in labels and "mobilenet_v2@none" in labels
    assert next(c for c in cands if c.label == "mobilenet_v2@none").weights is None
    assert skipped == [{"candidate": "ts_fcn@imagenet",
                        "reason": "a timeseries backbone; the plugin needs image backbones"}]
    assert resolve_candidates("ts_*", "imagenet", "image") == ([], [])  # glob matches of another modality drop out
    with pytest.raises(ConfigError, match="no backbone matches 'nosuch\\*'"):
        resolve_candidates(["nosuch*"], "imagenet", "image")
    with pytest.raises(NotFoundError, match="mobilenet_v2"):
        resolve_candidates(["mobilenet_v9"], "imagenet", "image")  # did-you-mean
    reason = unavailable_reason("resnet50", "imagenet")
    assert RESNET50_FILE in reason and "TLZOO_OFFLINE=1" in reason and "tlzoo weights fetch resnet50" in reason
    assert unavailable_reason("resnet50", None) is None  # random init needs no file
    assert "small_cnn@none" in unavailable_reason("small_cnn", "imagenet")

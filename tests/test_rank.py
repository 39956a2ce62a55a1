"""tlzoo rank: LogME mechanics, k-NN / probe scores, ranking real backbones, skipping unavailable weights, the CLI."""
from __future__ import annotations

import json
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


def test_rank_orders_pretrained_above_random_and_skips_missing_weights(weights_dir: Path, scans_npz: Path,
                                                                       tmp_path: Path) -> None:
    from tlzoo.analysis.rank import rank

    out = tmp_path / "rank"
    result = rank("medical-imaging", str(scans_npz), ["mobilenet_025", "mobilenet_025@none", "resnet50"],
                  input_size=32, out=str(out), cache_dir=str(tmp_path / "cache"), verbose=0)
    rows = {r.candidate: r for r in result.rows}
    assert list(rows) == [r.candidate for r in sorted(result.rows, key=lambda r: -r.logme)]
    pre, rnd = rows["mobilenet_025@imagenet"], rows["mobilenet_025@none"]
    assert result.rows[0] is pre
    assert pre.logme > rnd.logme and pre.knn > rnd.knn and pre.probe > rnd.probe
    assert pre.feature_dim == 256 and pre.probe_metric == "roc_auc" and 0.5 < pre.probe <= 1.0
    assert pre.weights_source["file"] == "mobilenet_2_5_224_tf_no_top.h5" and rnd.weights_source is None
    assert result.data["n_train"] == 96 and result.data["n_val"] == 48 and result.data["n_scored"] == 144
    assert [s["candidate"] for s in result.skipped] == ["resnet50@imagenet"]
    assert RESNET50_FILE in result.skipped[0]["reason"]
    saved = json.loads((out / "rank.json").read_text())
    assert [r["candidate"] for r in saved["rows"]] == [r.candidate for r in result.rows]
    assert saved["rows"][0]["logme"] == pytest.approx(pre.logme)
    assert (out / "rank.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    # a re-run reads the features from the cache and gives the same scores
    again = rank("medical-imaging", str(scans_npz), ["mobilenet_025"], input_size=32,
                 cache_dir=str(tmp_path / "cache"), verbose=0)
    assert again.rows[0].cached and again.rows[0].logme == pytest.approx(pre.logme, abs=1e-9)


def test_rank_max_samples_and_bad_input(scans_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tlzoo.analysis.rank import rank

    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = rank("medical-imaging", str(scans_npz), "small_cnn@none", input_size=16, max_samples=40, verbose=0)
    assert result.data["n_train"] == 40 and result.data["n_val"] == 40  # stratified caps on both splits
    assert np.isfinite(result.rows[0].logme)
    with pytest.raises(ConfigError) as info:  # nothing left: one error naming every candidate and why
        rank("medical-imaging", str(scans_npz), ["resnet50", "mobilenet_025", "small_cnn"], verbose=0)
    msg = str(info.value)
    assert "no backbone left to rank (3 skipped)" in msg and RESNET50_FILE in msg
    assert "mobilenet_2_5_224_tf_no_top.h5" in msg and "small_cnn@none" in msg
    with pytest.raises(ConfigError, match="timeseries"):
        rank("timeseries-fraud", str(scans_npz), "ts_fcn", verbose=0)
    with pytest.raises(ConfigError, match="max_samples"):
        rank("medical-imaging", str(scans_npz), "small_cnn@none", max_samples=3, verbose=0)


def test_cli_prints_the_ranked_table_and_the_skipped(scans_npz: Path, tmp_path: Path, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tlzoo.cli.main import main

    monkeypatch.setenv("TLZOO_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    out = tmp_path / "r"
    code = main(["rank", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbones", "small_cnn@none",
                 "resnet50", "--input-size", "16", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "backbone"])
    assert "probe val roc_auc" in lines[header] and "seconds" in lines[header]
    assert lines[header + 1].split()[:2] == ["1", "small_cnn@none"]
    assert "1 skipped:" in text and f"resnet50@imagenet: needs the weights file '{RESNET50_FILE}'" in text
    assert (out / "rank.json").is_file() and (out / "rank.png").is_file()
    code = main(["rank", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbones", "resnet50", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and "tlzoo: error: no backbone left to rank" in captured.err and RESNET50_FILE in captured.err

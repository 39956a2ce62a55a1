"""tlzoo rank: LogME mechanics, k-NN / probe scores, ranking real backbones, skipping unavailable weights, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tlzoo.errors import ConfigError

RESNET50_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


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

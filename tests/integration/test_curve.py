"""The label-efficiency report: runs per (condition, budget, seed), resume, the summary's answer,
and the compute budget that shrinks schedules."""
import dataclasses
from pathlib import Path

import pytest

from tlzoo.analysis.curve import CurveConfig, label_curve
from tlzoo.errors import ConfigError
from tlzoo.runs.directory import read_yaml


def test_report_runs_every_condition_and_resumes(weights_dir, scans_npz, tmp_path, capsys) -> None:
    cfg = CurveConfig(plugin="medical-imaging", data=str(scans_npz), out=str(tmp_path / "curve"),
                      fractions=[0.25, 1.0], seeds=[3], backbone="mobilenet_025", input_size=32,
                      plugin_options={"epochs": 1, "head_epochs": 1},
                      scratch_backbone="small_cnn", scratch_schedule={"kind": "full", "head_epochs": 0, "epochs": 2,
                                                                       "lr": 3e-3})
    doc = label_curve(cfg)
    assert doc["complete"] and len(doc["runs"]) == 4
    out = tmp_path / "curve"
    for name in ("curve.json", "curve.csv", "curve.md", "curve.png"):
        assert (out / name).stat().st_size > 100
    transfer = doc["table"]["transfer"]
    assert [r["n_labels"] for r in transfer] == [24, 96]  # 25% and all of the 96 training scans
    assert {r["backbone"] for r in doc["runs"] if r["condition"] == "scratch"} == {"small_cnn"}
    assert all(r["weights"] is None for r in doc["runs"] if r["condition"] == "scratch")
    assert all(r["weights"] == "imagenet" for r in doc["runs"] if r["condition"] == "transfer")
    # the two conditions share the seed's subsample
    subsets = {(r["condition"], r["seed"]): read_yaml(Path(r["run_dir"]) / "config.yaml")["data"]["fingerprint"]
               for r in doc["runs"] if r["fraction"] == 0.25}
    assert subsets[("transfer", 3)] == subsets[("scratch", 3)]
    assert "[4/4]" in capsys.readouterr().out
    stamp = (out / "runs" / "transfer-f1-s3" / "metrics.json").stat().st_mtime
    again = label_curve(cfg)  # finished runs are read, not re-run
    assert (out / "runs" / "transfer-f1-s3" / "metrics.json").stat().st_mtime == stamp
    assert again["table"] == doc["table"]
    with pytest.raises(ConfigError, match="metric 'pr_auc_typo' is not among"):
        label_curve(dataclasses.replace(cfg, metric="pr_auc_typo"))

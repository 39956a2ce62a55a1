"""Flags generated from the config reach the run: schedule flags without --schedule adjust the plugin's
default schedule (they used to be dropped silently), and the resolved config records them."""
from __future__ import annotations

import json

import yaml

from tlzoo.cli.main import main


def test_epoch_flags_without_a_schedule_adjust_the_plugins_default(scans_npz, tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "mobilenet_025",
                 "--weights", "none", "--input-size", "32", "--epochs", "2", "--head-epochs", "1", "--lr", "0.002",
                 "--lr-decay", "0.7", "--patience", "5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["adapt"]["training"]["schedule"] == {"epochs": 2, "head_epochs": 1, "lr": 0.002, "lr_decay": 0.7,
                                                       "patience": 5}
    assert config["adapt"]["model"]["weights"] is None
    stages = config["schedule"]["stages"]  # the medical plugin's fine_tune schedule, adjusted
    assert [(s["name"], s["epochs"]) for s in stages] == [("head", 1), ("all", 2)]
    assert stages[1]["learning_rate"] == 0.002 and stages[1]["lr_decay"] == 0.7 and stages[1]["patience"] == 5
    history = json.loads((out / "history.json").read_text())
    assert [r["stage"] for r in history] == ["head", "all", "all"]

"""tlzoo tune: search space, cached vs naive path, results, resume after a kill, distributed chief + workers."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tlzoo.analysis.tune import tune
from tlzoo.errors import ConfigError
from tlzoo.train.recipe import AdaptConfig, adapt
from tune_support import SMALL, tune_config, write_space


def _events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_cached_path_matches_naive_and_writes_results(scans_npz: Path, tmp_path: Path) -> None:
    cached = tune(tune_config(scans_npz, tmp_path / "cached"))
    naive = tune(tune_config(scans_npz, tmp_path / "naive", cache=False))
    assert [t["path"] for t in cached.trials] == ["cached"] * 3 and [t["path"] for t in naive.trials] == ["naive"] * 3
    # Same seed -> same trials, same head initialisation and data order: the same objective per trial.
    assert [t["learning_rate"] for t in cached.trials] == [t["learning_rate"] for t in naive.trials]
    np.testing.assert_allclose([t["val_auc"] for t in cached.trials], [t["val_auc"] for t in naive.trials], atol=0.01)
    entries = list((tmp_path / "cached" / "features").glob("*/meta.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["images"] == 96 + 48  # train + val: what trials use
    for name in ("trials.csv", "trials.json", "objective.png", "best_config.yaml", "search.json"):
        assert (tmp_path / "cached" / name).is_file(), name
    assert len((tmp_path / "cached" / "trials.csv").read_text().splitlines()) == 4
    best = AdaptConfig.from_yaml(cached.best_config_path)
    assert best.backbone == "small_cnn" and best.schedule["kind"] == "feature_extraction"
    assert best.schedule["lr"] == pytest.approx(cached.trials[int(cached.best["trial"])]["learning_rate"])

    # Re-running the same search continues it: nothing is re-run.
    n_events = len(_events(tmp_path / "cached"))
    again = tune(tune_config(scans_npz, tmp_path / "cached"))
    assert len(_events(tmp_path / "cached")) == n_events and again.best["trial"] == cached.best["trial"]
    # A different search in the same directory is refused, unless asked to overwrite.
    with pytest.raises(ConfigError, match=r"different search \(differs in \['space'\]\)"):
        tune(tune_config(scans_npz, tmp_path / "cached", space={**SMALL, "unfreeze_groups": [0], "epochs": 3}))
    tune(tune_config(scans_npz, tmp_path / "cached", max_trials=1, overwrite=True))
    assert len(_events(tmp_path / "cached")) == 2  # one start, one end: the old search is gone


def test_unfrozen_trials_run_the_adapt_recipe(scans_npz: Path, tmp_path: Path) -> None:
    space = {**SMALL, "unfreeze_groups": [1], "head_epochs": 1, "epochs": 1, "augment_strength": [0.5]}
    result = tune(tune_config(scans_npz, tmp_path / "s", max_trials=1, space=space))
    (row,) = result.trials
    assert row["path"] == "recipe" and np.isfinite(row["val_auc"])
    run = tmp_path / "s" / "tuner" / "trial_0" / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["monitor"]["value"] == pytest.approx(row["val_auc"])
    best = AdaptConfig.from_yaml(result.best_config_path)
    assert best.schedule["kind"] == "top" and best.schedule["groups"] == 1
    assert best.plugin_options["contrast"] == pytest.approx(0.125)  # 0.25 x augment_strength 0.5
    rerun = adapt(AdaptConfig.from_yaml(result.best_config_path, out=str(tmp_path / "rerun"), verbose=0))
    assert rerun.metrics["monitor"]["name"] == "val_auc"


def _cli(args: list[str], **env: str) -> list[str]:
    return [sys.executable, "-m", "tlzoo.cli.main", "tune", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "TLZOO_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **extra}
    for key in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        env.pop(key, None)
    return env


def test_killed_search_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    from tlzoo.data.synthetic import write_opacity_npz

    # Enough images that a naive epoch (backbone over every image) takes a while: the kill lands mid-trial.
    data = write_opacity_npz(tmp_path / "scans.npz", n_train=1500, n_val=200, n_test=64, size=32, contrast=60)
    space = write_space(tmp_path / "space.yaml", backbone=["small_cnn"], unfreeze_groups=[0], epochs=6,
                        learning_rate={"min": 0.003, "max": 0.03, "sampling": "log"})
    out = tmp_path / "search"
    args = ["--plugin", "medical-imaging", "--data", str(data), "--out", str(out), "--max-trials", "2",
            "--weights", "none", "--input-size", "32", "--space", str(space), "--no-cache"]
    proc = subprocess.Popen(_cli(args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = out / "tuner" / "trial_1" / "checkpoint" / "state.json"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file() and json.loads(state.read_text())["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be interrupted:\n" + proc.stdout.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    killed_at = json.loads(state.read_text())["epoch"]
    assert 2 <= killed_at < 6
    before = _events(out)
    assert [(e["event"], e["trial_id"]) for e in before] == [("start", "0"), ("end", "0"), ("start", "1")]

    done = subprocess.run(_cli(args), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = _events(out)[len(before):]
    assert [(e["event"], e["trial_id"]) for e in after] == [("start", "1"), ("end", "1")]  # trial 0 not re-run
    record = json.loads((out / "tuner" / "trial_1" / "tlzoo_trial.json").read_text())
    assert record["resumed_from_epoch"] == killed_at and record["epochs_run"] == 6
    table = json.loads((out / "trials.json").read_text())["trials"]
    assert [t["status"] for t in table] == ["COMPLETED", "COMPLETED"]
    assert "resuming from the checkpoint of epoch" in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_chief_and_two_workers(scans_npz: Path, tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", **{**SMALL, "unfreeze_groups": [0]})
    out = tmp_path / "search"
    oracle = f"127.0.0.1:{_free_port()}"
    common = ["--plugin", "medical-imaging", "--data", str(scans_npz), "--out", str(out), "--max-trials", "4",
              "--weights", "none", "--input-size", "32", "--space", str(space), "--oracle", oracle]
    roles = {"chief": ["--chief"], "worker0": ["--worker", "worker0"], "worker1": ["--worker", "worker1"]}
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in roles}
    procs = {name: subprocess.Popen(_cli(common + extra), env=_env(), stdout=logs[name], stderr=subprocess.STDOUT)
             for name, extra in roles.items()}
    finished: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 300
        while len(finished) < len(procs) and time.monotonic() < deadline:
            for name, proc in procs.items():
                if name not in finished and proc.poll() is not None:
                    finished[name] = time.time()
            time.sleep(0.2)
    finally:
        for name, proc in procs.items():  # leave no process behind, whatever happened
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            logs[name].close()
    outputs = {name: (tmp_path / f"{name}.log").read_text() for name in roles}
    for name, proc in procs.items():
        assert name in finished and proc.returncode == 0, f"{name} exited {proc.returncode}:\n{outputs[name][-3000:]}"
    events = _events(out)
    ended = [e["trial_id"] for e in events if e["event"] == "end"]
    started = [e["trial_id"] for e in events if e["event"] == "start"]
    assert sorted(ended) == ["0", "1", "2", "3"] and sorted(started) == sorted(ended)  # no trial run twice
    assert {e["tuner_id"] for e in events} <= {"worker0", "worker1"}  # the chief only serves the oracle
    table = json.loads((out / "trials.json").read_text())
    assert len(table["trials"]) == 4 and all(t["status"] == "COMPLETED" for t in table["trials"])
    assert (out / "best_config.yaml").is_file()
    assert all("search finished, exiting" in outputs[w] for w in ("worker0", "worker1"))  # told to stop by the oracle
    assert finished["chief"] >= max(e["time"] for e in events)  # the chief outlives every trial of its workers


def test_recipe_resumes_from_its_epoch_checkpoint(scans_npz: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The adapt recipe (unfrozen trials) writes a checkpoint per epoch and continues from it."""
    from support import fast_config
    from tlzoo.train.checkpoints import EpochCheckpoint

    schedule = {"stages": [{"name": "head", "epochs": 2, "trainable": 0, "learning_rate": 1e-3},
                           {"name": "all", "epochs": 2, "trainable": "all", "learning_rate": 1e-3}]}
    cfg = fast_config(data=str(scans_npz), out=str(tmp_path / "run"), backbone="small_cnn", schedule=schedule)
    real_save = EpochCheckpoint.save

    def save_then_die(self, stage, epoch, *args, **kw):
        real_save(self, stage, epoch, *args, **kw)
        if (stage, epoch) == (2, 1):  # interrupted after the first epoch of the second stage
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        adapt(cfg, checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "run").exists()  # nothing half-written
    monkeypatch.setattr(EpochCheckpoint, "save", real_save)
    cfg.verbose = 1
    result = adapt(cfg, checkpoint_dir=tmp_path / "ckpt")
    assert "resuming stage 2 from the checkpoint of its epoch 1" in capsys.readouterr().out
    assert [(row["stage"], row["epoch"]) for row in result.history] == [("head", 1), ("head", 2),
                                                                        ("all", 3), ("all", 4)]
    assert result.metrics["best_epoch"] in (1, 2, 3, 4) and (tmp_path / "run" / "model.keras").is_file()

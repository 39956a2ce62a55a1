"""tf.distribute: TF_CONFIG parsing, the custom multi-worker stage loop against Model.fit, and
two real worker processes on 127.0.0.1 (sync, convergence, fault tolerance, unreachable peers)."""
from __future__ import annotations

import csv
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlzoo.train.distribution import free_ports

adapt_module = importlib.import_module("tlzoo.train.recipe")

# No augmentation and no dropout, so two runs can be compared number for number.
PLAIN = ["--option", "dropout=0", "--option", "rotation_degrees=0", "--option", "zoom=0",
         "--option", "shift=0", "--option", "contrast=0"]
PLAIN_OPTIONS = dict(dropout=0, rotation_degrees=0, zoom=0, shift=0, contrast=0)
WORKER_TIMEOUT_S = 240


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def test_stage_loop_reproduces_fit_exactly(scans_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-worker loop is fit's recipe: with the sample order fixed (fit and the loop draw
    shuffles differently), every logged number of every epoch, across two stages with layer-wise
    learning rates and class weights, is identical."""
    from support import fast_config

    make_dataset = adapt_module.make_dataset
    monkeypatch.setattr(adapt_module, "make_dataset",
                        lambda split, **kw: make_dataset(split, **{**kw, "training": False}))
    histories = {}
    for kind in ("fit", "loop"):
        if kind == "loop":  # the multi-worker code path on this process's one device
            select = adapt_module.select_strategy

            def as_multiworker(name: str, select=select, **kw):  # noqa: ANN202
                d = select("one")
                d.kind = "multiworker"
                return d

            monkeypatch.setattr(adapt_module, "select_strategy", as_multiworker)
        result = adapt_module.adapt(fast_config(data=str(scans_npz), out=str(tmp_path / kind), backbone="small_cnn",
                                                plugin_options=PLAIN_OPTIONS, batch_size=16))
        histories[kind] = [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]
    assert len(histories["fit"]) == 2
    assert histories["loop"] == histories["fit"]


def _spawn(args: list[str], env_extra: dict[str, str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "tlzoo.cli.main", *args], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _run_workers(args: list[str], tmp_path: Path, tag: str, n: int = 2, until: Path | None = None,
                 envs: list[dict[str, str]] | None = None) -> tuple[list[int], list[str]]:
    """Start ``n`` workers; wait for them to exit (or, with ``until``, for that file, then kill them)."""
    ports = free_ports(n)
    logs = [tmp_path / f"{tag}-worker{i}.log" for i in range(n)]
    procs = [_spawn(args, {"TF_CONFIG": tf_config(ports, i), **(envs[i] if envs else {})}, logs[i]) for i in range(n)]
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if until is not None and until.exists():
                _kill(procs)
                break
            time.sleep(0.2)
        assert all(p.poll() is not None for p in procs), f"workers still running after {WORKER_TIMEOUT_S} s"
    finally:
        _kill(procs)
    return [p.returncode for p in procs], [log.read_text() for log in logs]


def _digests(logs: list[str]) -> list[str]:
    return [m for log in logs for m in re.findall(r"final weights sha256 ([0-9a-f]{64})", log)]


def _history(run: Path) -> list[dict[str, str]]:
    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


def test_two_workers_stay_in_sync_converge_and_match_one_process(scans_npz: Path, tmp_path: Path,
                                                                 weights_dir: Path) -> None:
    common = ["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "mobilenet_025",
              "--input-size", "32", "--batch-size", "32", "--schedule", "fine_tune", "--head-epochs", "1",
              "--epochs", "4", *PLAIN]
    codes, logs = _run_workers([*common, "--out", str(tmp_path / "mw"), "--strategy", "multiworker"], tmp_path, "sync")
    assert codes == [0, 0], logs
    digests = _digests(logs)
    assert len(digests) == 2 and digests[0] == digests[1], "the two workers ended with different weights"
    assert not (tmp_path / "mw.backup").exists()  # removed after a finished run
    config = (tmp_path / "mw" / "config.yaml").read_text()
    assert "kind: multiworker" in config and "replicas: 2" in config

    history = _history(tmp_path / "mw")
    losses = [float(r["loss"]) for r in history]
    assert len(history) == 5 and losses[-1] < losses[0] - 0.05

    single = adapt_module.adapt(plugin="medical-imaging", data=str(scans_npz), backbone="mobilenet_025",
                                input_size=32, batch_size=32, plugin_options=PLAIN_OPTIONS, verbose=0,
                                schedule={"kind": "fine_tune", "freeze_epochs": 1, "epochs": 4},
                                out=str(tmp_path / "one"), strategy="one")
    # Epoch 1 sees the same samples in the same order: only the all-reduce's summation order
    # differs, so it agrees to float precision.
    assert float(history[0]["loss"]) == pytest.approx(single.history[0]["loss"], abs=1e-5)
    assert float(history[0]["val_auc"]) == pytest.approx(single.history[0]["val_auc"], abs=1e-5)
    # Later epochs: Model.fit draws its shuffles differently (it makes an extra iterator per
    # epoch), so the order differs; the outcome must still be the same within 0.05 AUC
    # (64 test images; one image is 0.016 of accuracy).
    mw_metrics = json.loads((tmp_path / "mw" / "metrics.json").read_text())["test"]
    assert mw_metrics["roc_auc"] == pytest.approx(single.metrics["test"]["roc_auc"], abs=0.05)
    assert mw_metrics["roc_auc"] > 0.85


def test_a_dead_worker_stops_the_chief_and_a_restart_resumes(scans_npz: Path, tmp_path: Path) -> None:
    args = ["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "small_cnn",
            "--weights", "none", "--input-size", "32", "--batch-size", "32", "--schedule", "full", "--head-epochs",
            "1", "--epochs", "5", *PLAIN, "--out", str(tmp_path / "ft"), "--strategy", "multiworker"]
    backup = tmp_path / "ft.backup"
    # Kill worker 1 once the chief has committed the checkpoint of a stage-2 epoch.
    marker = backup / "state.json"
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    ports = free_ports(2)
    logs = [tmp_path / f"first-worker{i}.log" for i in range(2)]
    procs = [_spawn(args, {"TF_CONFIG": tf_config(ports, i)}, logs[i]) for i in range(2)]
    try:
        while time.monotonic() < deadline:
            if marker.exists() and json.loads(marker.read_text())["stage"] == 2:
                break
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            time.sleep(0.05)
        else:
            pytest.fail("no stage-2 checkpoint appeared")
        _kill(procs[1:])
        chief_code = procs[0].wait(120)  # the chief notices the missing heartbeats and stops
    finally:
        _kill(procs)
    chief_log = logs[0].read_text()
    assert chief_code == 2 and "a peer worker stopped during epoch" in chief_log, chief_log
    saved = json.loads(marker.read_text())
    assert not (tmp_path / "ft").exists()  # nothing half-written

    codes, out = _run_workers(args, tmp_path, "restart")
    assert codes == [0, 0], out
    assert all(f"resuming stage 2 from the checkpoint of its epoch {saved['epoch']}" in log for log in out)
    digests = _digests(out)
    assert len(digests) == 2 and digests[0] == digests[1]
    history = _history(tmp_path / "ft")
    assert [r["epoch"] for r in history] == [str(i) for i in range(1, 7)]  # 1 head + 5 full, none twice
    assert not backup.exists()


def test_unreachable_peer_times_out_naming_the_address(tmp_path: Path, scans_npz: Path) -> None:
    ports = free_ports(2)
    log = tmp_path / "alone.log"
    proc = _spawn(["adapt", "--plugin", "medical-imaging", "--data", str(scans_npz), "--backbone", "small_cnn",
                   "--weights", "none", "--input-size", "32", "--out", str(tmp_path / "x"),
                   "--strategy", "multiworker"],
                  {"TF_CONFIG": tf_config(ports, 0), "TLZOO_CONNECT_TIMEOUT_S": "8"}, log)
    try:
        code = proc.wait(90)
    finally:
        _kill([proc])
    text = log.read_text()
    assert code == -signal.SIGKILL, text  # ended by the watchdog, not by the test's timeout
    assert f"could not reach 127.0.0.1:{ports[1]} within 8 s" in text
    assert not (tmp_path / "x").exists()


def test_two_workers_each_decode_only_their_shard_of_a_folder(tmp_path: Path) -> None:
    """File sources under multiworker: each worker decodes its own half of the training files (seen
    through a per-worker on-disk cache, which holds exactly what that worker decoded)."""
    from layouts import mixed_class_folders
    from tlzoo.data import read_source
    from tlzoo.data.stream import cache_keys

    root = mixed_class_folders(tmp_path / "scans", n_per_class=24)
    args = ["adapt", "--plugin", "medical-imaging", "--data", str(root), "--backbone", "mobilenet_025", "--weights",
            "none", "--input-size", "32", "--batch-size", "16", "--schedule", "feature_extraction", "--epochs", "2",
            "--calibration", "none", *PLAIN, "--out", str(tmp_path / "mw"), "--strategy", "multiworker"]
    caches = [tmp_path / f"cache{i}" for i in range(2)]
    codes, logs = _run_workers(args, tmp_path, "files", envs=[{"TLZOO_DATA_CACHE": str(c)} for c in caches])
    assert codes == [0, 0], logs
    digests = _digests(logs)
    assert len(digests) == 2 and digests[0] == digests[1]
    train = read_source(str(root), options={"verbose": False}).set_input_size(32).train.x
    keys = {str(k) for k in cache_keys(train, caches[0])}  # worker 0's names; worker 1's differ by folder only
    decoded = [{str(c / Path(k).relative_to(caches[0])) for k in keys if (c / Path(k).relative_to(caches[0])).exists()}
               for c in caches]
    shares = [len(d) for d in decoded]
    # disjoint halves of train (an odd count repeats one sample so both workers run the same steps)
    assert len(train) <= sum(shares) <= len(train) + 1 and abs(shares[0] - shares[1]) <= 1, shares

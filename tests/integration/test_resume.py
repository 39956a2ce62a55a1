"""Resume and TensorBoard, the extensions added through the protocol: a real `adapt` killed with kill -9
mid-stage continues with --resume from its last finished epoch; TensorBoard logs hold per-epoch scalars and
each layer group's learning rate."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlzoo.errors import ConfigError

# head 1 epoch, then all layer groups 3 epochs: the kill lands in the second stage
SCHEDULE = {"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-3},
                       {"name": "all", "epochs": 3, "trainable": "all", "learning_rate": 1e-4, "lr_decay": 0.8}]}
CHILD = """
import json, sys
import tlzoo
tlzoo.adapt(plugin="medical-imaging", data=sys.argv[1], out=sys.argv[2], backbone="mobilenet_025",
            input_size=32, batch_size=16, seed=0, verbose=0, resume=sys.argv[3] == "1", checkpoint_interval=0,
            schedule=json.loads(sys.argv[4]))
"""


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    from tlzoo.data.synthetic import write_opacity_npz

    return write_opacity_npz(tmp_path_factory.mktemp("resume") / "scans.npz", n_train=192, n_val=48, n_test=64,
                             size=32, contrast=60)


def _child(scans: Path, out: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(scans), str(out), "1" if resume else "0",
                             json.dumps(SCHEDULE)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_mid_stage_then_resume_finishes_like_an_uninterrupted_run(scans, tmp_path, weights_dir):
    import tlzoo

    out = tmp_path / "runs" / "r"
    state = out.parent / ".r.checkpoints" / "state.json"
    proc = _child(scans, out, resume=False)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # wait for the first epoch of stage 2
        if state.is_file():
            record = json.loads(state.read_text())
            if (record["stage"], record["epoch"]) >= (2, 1):
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.communicate()[0][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())
    assert killed_at["stage"] == 2 and 1 <= killed_at["epoch"] < 3 and not out.exists()
    assert list(out.parent.glob(".r.tmp-*"))  # kill -9 leaves the partial directory; --resume clears it

    resumed = _child(scans, out, resume=True)
    log = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, log[-3000:]
    history = json.loads((out / "history.json").read_text())
    # every epoch once, in order: the finished ones from the checkpoint, the rest trained after the resume
    assert [(r["stage"], r["epoch"]) for r in history] == [("head", 1)] + [("all", e) for e in (2, 3, 4)]
    assert not (out.parent / ".r.checkpoints").exists() and not list(out.parent.glob(".r.tmp-*"))

    baseline = tlzoo.adapt(plugin="medical-imaging", data=str(scans), out=str(tmp_path / "b"), backbone="mobilenet_025",
                           input_size=32, batch_size=16, seed=0, verbose=0, schedule=SCHEDULE)
    resumed_metrics = json.loads((out / "metrics.json").read_text())
    print(f"killed after stage {killed_at['stage']} epoch {killed_at['epoch']}; test ROC-AUC resumed "
          f"{resumed_metrics['test']['roc_auc']:.4f}, uninterrupted {baseline.metrics['test']['roc_auc']:.4f}")
    # Within the seed noise: the resumed run reshuffles from its restart, so it is not bit-identical.
    assert abs(resumed_metrics["test"]["roc_auc"] - baseline.metrics["test"]["roc_auc"]) <= 0.1
    assert resumed_metrics["test"]["roc_auc"] > 0.8 and baseline.metrics["test"]["roc_auc"] > 0.8


def test_resume_refuses_a_checkpoint_of_other_settings(scans, tmp_path):
    import tlzoo
    from tlzoo.extensions.resume import CONFIG_KEY_FILE, checkpoint_dir, config_key
    from tlzoo.train.config import AdaptConfig

    out = tmp_path / "r"
    first = AdaptConfig(plugin="medical-imaging", data=str(scans), out=str(out), backbone="mobilenet_025", weights=None,
                        input_size=32, batch_size=16, schedule=SCHEDULE)
    directory = checkpoint_dir(out)
    directory.mkdir(parents=True)
    (directory / CONFIG_KEY_FILE).write_text(json.dumps(config_key(first)))
    (directory / "state.json").write_text(json.dumps({"stage": 1, "epoch": 1, "tag": "x", "state": {}}))
    with pytest.raises(ConfigError, match=r"written with other settings \(sections \['training'\] differ\)"):
        tlzoo.adapt(plugin="medical-imaging", data=str(scans), out=str(out), backbone="mobilenet_025", weights=None,
                    input_size=32, batch_size=8, schedule=SCHEDULE, resume=True, verbose=0)
    assert (directory / "state.json").is_file()  # kept for a resume with the right settings


def test_tensorboard_logs_scalars_and_each_groups_learning_rate(scans, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import tlzoo
    from tlzoo.train.checkpoints import EpochCheckpoint

    saved, real_save = [], EpochCheckpoint.save

    def spy(self, stage, epoch, *args, **kwargs):
        saved.append((stage, epoch))
        return real_save(self, stage, epoch, *args, **kwargs)

    monkeypatch.setattr(EpochCheckpoint, "save", spy)

    run = tlzoo.adapt(plugin="medical-imaging", data=str(scans), out=str(tmp_path / "r"), backbone="mobilenet_025",
                      weights=None, input_size=32, batch_size=32, seed=0, verbose=0, tensorboard=True,
                      schedule={"stages": [{"name": "head", "epochs": 1, "trainable": 0, "learning_rate": 1e-3,
                                            "schedule": "constant"},
                                           {"name": "top2", "epochs": 2, "trainable": 2, "learning_rate": 1e-3,
                                            "lr_decay": 0.5, "schedule": "constant"}]})
    logs = run.run_dir / "tensorboard"
    acc = EventAccumulator(str(logs), size_guidance={"tensors": 0}).Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"train_loss", "val_loss", "val_auc", "learning_rate/head"} <= tags
    groups = run.config["backbone"]["layer_groups"]

    def series(tag: str) -> list[tuple[int, float]]:
        import tensorflow as tf

        return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]

    assert [s for s, _ in series("val_loss")] == [1, 2, 3]  # epochs across stages, one curve
    assert series("learning_rate/head") == [(1, pytest.approx(1e-3)), (2, pytest.approx(1e-3)),
                                            (3, pytest.approx(1e-3))]
    top, second, bottom = groups[-1], groups[-2], groups[0]
    assert series(f"learning_rate/{top}") == [(1, 0.0), (2, pytest.approx(5e-4)), (3, pytest.approx(5e-4))]
    assert series(f"learning_rate/{second}")[1] == (2, pytest.approx(2.5e-4))
    assert all(v == 0.0 for _, v in series(f"learning_rate/{bottom}"))  # frozen throughout
    assert run.config["tensorboard"]["log_dir"] == "tensorboard"
    assert [r["val_loss"] for r in run.history] == pytest.approx([v for _, v in series("val_loss")], rel=1e-5)
    # epochs far shorter than the 30 s checkpoint interval: checkpoints at the end of each stage only
    assert saved == [(1, 1), (2, 2)] and not (tmp_path / ".r.checkpoints").exists()

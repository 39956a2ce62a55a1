"""Resume: every run keeps per-epoch checkpoints (weights, optimizer state, history) in a hidden sibling of
its directory, ``.NAME.checkpoints/``, removed once the run is written. A run that was killed (kill -9,
SIGTERM, a lost machine) continues from its last finished epoch with ``--resume`` (``resume:`` in YAML);
without it, a new run with the same output starts over and says so.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from tlzoo.errors import ConfigError
from tlzoo.extensions.base import Extension, Run

CONFIG_KEY_FILE = "config.json"
# Settings that may change between the interrupted run and its continuation.
_FREE = ("output", "resume", "tensorboard")


def checkpoint_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.checkpoints"


def config_key(cfg: Any) -> dict[str, Any]:
    """What must match for a checkpoint to continue a run: every section but output, resume, TensorBoard."""
    sections = {k: v for k, v in cfg.to_sections().items() if k not in _FREE}
    text = json.dumps(sections, sort_keys=True, default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "sections": json.loads(text)}


class Resume(Extension):
    """Writes checkpoints for every run (so any run can be resumed); restores them with ``resume``."""

    name = "resume"
    custom_recipe = True  # a plugin's own recipe has no epochs to checkpoint: nothing to do

    @classmethod
    def is_active(cls, cfg: Any) -> bool:
        return True

    def prepare(self, run: Run) -> None:
        self.owned = None
        if run.checkpoint_dir is not None:  # the caller's own (a tuner trial, a multi-worker cluster)
            return
        directory = checkpoint_dir(run.out)
        key = config_key(self.cfg)
        state = directory / "state.json"
        if self.cfg.resume:
            if state.is_file():
                saved = (json.loads((directory / CONFIG_KEY_FILE).read_text())
                         if (directory / CONFIG_KEY_FILE).is_file() else {})
                if saved.get("sha256") != key["sha256"]:
                    changed = sorted(k for k in set(saved.get("sections", {})) | set(key["sections"])
                                     if saved.get("sections", {}).get(k) != key["sections"].get(k))
                    raise ConfigError(f"--resume: the checkpoint in {str(directory)!r} was written with other settings "
                                      f"(sections {changed} differ); resume with the same settings, or drop --resume "
                                      "to start over")
                for stale in run.out.parent.glob(f".{run.out.name}.tmp-*"):  # the killed run's partial directory
                    shutil.rmtree(stale, ignore_errors=True)
                if self.cfg.verbose:
                    record = json.loads(state.read_text())
                    print(f"resuming {str(run.out)!r} after stage {record['stage']}, epoch {record['epoch']}",
                          flush=True)
            elif self.cfg.verbose:
                print(f"--resume: no checkpoint of {str(run.out)!r} to continue from; starting from the first epoch",
                      flush=True)
        elif state.is_file():
            if self.cfg.verbose:
                print(f"an interrupted run of {str(run.out)!r} left checkpoints; starting over "
                      "(--resume would continue it)", flush=True)
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_KEY_FILE).write_text(json.dumps(key, default=str))
        run.checkpoint_dir = self.owned = directory
        run.owns_checkpoints = True

    def finish(self, run: Run, ok: bool) -> None:
        if ok and self.owned is not None:  # the run is written: nothing left to resume
            shutil.rmtree(self.owned, ignore_errors=True)

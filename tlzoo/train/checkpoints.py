"""Per-epoch training checkpoints: weights, optimizer variables and the training state, so an
interrupted training resumes from its last finished epoch instead of from zero.

At the end of an epoch the variables are copied to host memory (milliseconds) and written to disk by a
background thread while the next epoch trains: a checkpoint costs training almost nothing. The files of
epoch ``k`` are written first and ``state.json`` (naming ``k``) is replaced last: it is the commit point,
so a kill at any moment leaves the previous complete checkpoint in force.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.errors import ConfigError
from tlzoo.runs.directory import write_text_atomic

STATE_FILE = "state.json"


class EpochCheckpoint:
    """Checkpoints of ``weights_model`` (the layers to restore) and an optimizer in ``directory``."""

    def __init__(self, directory: str | Path, weights_model: Any) -> None:
        self.dir = Path(directory)
        self.weights_model = weights_model
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self._best: tuple[int, int] | None = None  # (mtime_ns, size) of the best-weights file last copied
        self._best_name: str | None = None
        self._last_save = time.monotonic()

    def record(self) -> dict[str, Any] | None:
        """``{"stage": i, "epoch": k, "state": {...}}`` of the last checkpoint, or None."""
        self.wait()
        path = self.dir / STATE_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, stage: int, epoch: int, optimizer: Any, state: dict[str, Any],
             best_weights: Path | None = None) -> None:
        """Snapshot now, write in the background (after the previous write has finished)."""
        self.wait()
        tag = f"epoch-s{stage}e{epoch}"
        weights = [np.array(v) for v in self.weights_model.weights]
        slots = [np.array(v) for v in optimizer.variables]
        record = {"stage": stage, "epoch": epoch, "tag": tag, "state": json.loads(json.dumps(state, default=float))}
        if best_weights is not None and best_weights.is_file():
            # the best weights change only when an epoch improves: copied then (here, before the next
            # epoch may overwrite them), and named in the record
            stamp = best_weights.stat()
            key = (stamp.st_mtime_ns, stamp.st_size)
            name = f"best-s{stage}e{epoch}.weights.h5"
            if key != self._best:
                shutil.copyfile(best_weights, self.dir / name)
                self._best, self._best_name = key, name
            record["best"] = self._best_name
        self._writer = threading.Thread(target=self._write, args=(tag, weights, slots, record), daemon=True)
        self._writer.start()

    def _write(self, tag: str, weights: list[np.ndarray], slots: list[np.ndarray], record: dict[str, Any]) -> None:
        try:
            np.savez(self.dir / f"{tag}.weights.npz", *weights)
            np.savez(self.dir / f"{tag}.optimizer.npz", *slots)
            write_text_atomic(self.dir / STATE_FILE, json.dumps(record))  # commit
            keep = {f"{tag}.weights.npz", f"{tag}.optimizer.npz", record.get("best")}
            for old in [*self.dir.glob("epoch-*"), *self.dir.glob("best-*")]:
                if old.name not in keep:
                    old.unlink(missing_ok=True)
        except BaseException as exc:  # raised in the training thread by the next wait()
            self._error = exc

    def wait(self) -> None:
        """Let the write in flight finish (a run that stops keeps its last finished epoch)."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            raise ConfigError(f"cannot write the checkpoint in {str(self.dir)!r}: {error}") from error

    def restore(self, model: Any, optimizer: Any, state: dict[str, Any], best_weights: Path | None = None) -> int:
        """Load the last checkpoint into the weights, the (compiled) optimizer and ``state``; its epoch."""
        record = self.record()
        if record is None:
            return 0
        tag = record["tag"]
        weights = _arrays(self.dir / f"{tag}.weights.npz")
        variables = self.weights_model.weights
        if len(weights) != len(variables):
            raise ConfigError(f"checkpoint {str(self.dir)!r} does not match this model ({len(weights)} saved weights, "
                              f"{len(variables)} now); delete it to start over")
        for var, value in zip(variables, weights):
            var.assign(value)
        optimizer.build(model.trainable_variables)
        arrays = _arrays(self.dir / f"{tag}.optimizer.npz")
        if len(arrays) != len(optimizer.variables):
            raise ConfigError(f"checkpoint {str(self.dir)!r} does not match this training's optimizer "
                              f"({len(arrays)} saved variables, {len(optimizer.variables)} now); "
                              "delete it to start over")
        for var, value in zip(optimizer.variables, arrays):
            var.assign(value)
        if best_weights is not None and record.get("best") and (self.dir / record["best"]).is_file():
            shutil.copyfile(self.dir / record["best"], best_weights)
        state.clear()
        state.update(record["state"])
        return int(record["epoch"])

    def callback(self, stage: int, optimizer: Any, state: dict[str, Any], best_weights: Path | None = None, *,
                 interval_s: float = 0.0, last_epoch: int | None = None) -> Any:
        """Saves a checkpoint at the end of an epoch once ``interval_s`` seconds have passed since the last one
        (0: every epoch), and after ``last_epoch``, the stage's last (put it after the callbacks that update
        ``state``). Short epochs then cost no checkpoint each, and a kill loses at most the interval."""
        import keras

        ckpt = self

        class _Save(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                now = time.monotonic()
                if epoch + 1 == last_epoch or now - ckpt._last_save >= interval_s:
                    ckpt.save(stage, epoch + 1, optimizer, state, best_weights)
                    ckpt._last_save = now

            def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
                ckpt.wait()

        return _Save()


def _arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]

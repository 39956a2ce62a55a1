"""Per-epoch training checkpoints: weights, optimizer variables and the training state, so an
interrupted training resumes from its last finished epoch instead of from zero.

Files of epoch ``k`` are written first and ``state.json`` (naming ``k``) is replaced last: it is the
commit point, so a kill at any moment leaves the previous complete checkpoint in force.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tlzoo.errors import ConfigError
from tlzoo.runs.directory import write_text_atomic

STATE_FILE = "state.json"


class EpochCheckpoint:
    """Checkpoints of ``weights_model`` (the layers to restore) and ``optimizer`` in ``directory``."""

    def __init__(self, directory: str | Path, weights_model: keras.Model) -> None:
        self.dir = Path(directory)
        self.weights_model = weights_model
        self.dir.mkdir(parents=True, exist_ok=True)

    def record(self) -> dict[str, Any] | None:
        """``{"stage": i, "epoch": k, "state": {...}}`` of the last checkpoint, or None."""
        path = self.dir / STATE_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, stage: int, epoch: int, optimizer: keras.optimizers.Optimizer, state: dict[str, Any],
             best_weights: Path | None = None) -> None:
        tag = f"epoch-s{stage}e{epoch}"
        self.weights_model.save_weights(self.dir / f"{tag}.weights.h5")
        np.savez(self.dir / f"{tag}.optimizer.npz", *[np.asarray(v) for v in optimizer.variables])
        if best_weights is not None and best_weights.is_file():
            shutil.copyfile(best_weights, self.dir / f"{tag}.best.weights.h5")
        write_text_atomic(self.dir / STATE_FILE,  # commit
                          json.dumps({"stage": stage, "epoch": epoch, "tag": tag, "state": state}, default=float))
        for old in self.dir.glob("epoch-*"):
            if not old.name.startswith(f"{tag}."):
                old.unlink(missing_ok=True)

    def restore(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, state: dict[str, Any],
                best_weights: Path | None = None) -> int:
        """Load the last checkpoint into the weights, the (compiled) optimizer and ``state``; its epoch."""
        record = self.record()
        if record is None:
            return 0
        tag = record["tag"]
        self.weights_model.load_weights(self.dir / f"{tag}.weights.h5")
        optimizer.build(model.trainable_variables)
        saved = np.load(self.dir / f"{tag}.optimizer.npz")
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(arrays) != len(optimizer.variables):
            raise ConfigError(f"checkpoint {str(self.dir)!r} does not match this training's optimizer "
                              f"({len(arrays)} saved variables, {len(optimizer.variables)} now); "
                              f"delete it to start over")
        for var, value in zip(optimizer.variables, arrays):
            var.assign(value)
        if best_weights is not None and (self.dir / f"{tag}.best.weights.h5").is_file():
            shutil.copyfile(self.dir / f"{tag}.best.weights.h5", best_weights)
        state.clear()
        state.update(record["state"])
        return int(record["epoch"])

    def callback(self, stage: int, optimizer: keras.optimizers.Optimizer, state: dict[str, Any],
                 best_weights: Path | None = None) -> keras.callbacks.Callback:
        """Saves a checkpoint at the end of every epoch (put it after the callbacks that update ``state``)."""
        ckpt = self

        class _Save(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                ckpt.save(stage, epoch + 1, optimizer, state, best_weights)

        return _Save()

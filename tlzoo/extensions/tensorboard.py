"""TensorBoard logs: per-epoch training and validation scalars, and the learning rate of the head and of
each backbone layer group (frozen groups at 0), in ``RUN/tensorboard``. Steps are epochs counted across
the schedule's stages, so a run's stages read as one curve."""
from __future__ import annotations

from typing import Any

from tlzoo.extensions.base import Extension, Run

LOG_DIR = "tensorboard"


def group_learning_rates(run: Run, stage: Any, lr: float) -> dict[str, float]:
    """The learning rate of each layer group and of the head at the stage's current base rate ``lr``."""
    from tlzoo.train.schedule import group_multipliers

    multipliers = group_multipliers(run.groups, stage)
    return {**{g.name: lr * multipliers.get(g.name, 0.0) for g in run.groups}, "head": lr}


class TensorBoard(Extension):
    name = "tensorboard"

    def prepare(self, run: Run) -> None:
        self.writer = None

    def callbacks(self, run: Run, index: int, stage: Any) -> list[Any]:
        import keras
        import tensorflow as tf

        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(run.run_dir / LOG_DIR))
        ext = self

        class _Scalars(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                step = len(run.state["history"]) + 1  # this epoch's history row comes next
                lr = float(keras.ops.convert_to_numpy(run.optimizer.learning_rate))
                with ext.writer.as_default(step=step):
                    for key, value in (logs or {}).items():
                        tf.summary.scalar(key if key.startswith("val_") else f"train_{key}", float(value))
                    for group, rate in group_learning_rates(run, stage, lr).items():
                        tf.summary.scalar(f"learning_rate/{group}", rate)
                    tf.summary.text("stage", f"{index}: {stage.name}")
                ext.writer.flush()

        return [_Scalars()]

    def after_training(self, run: Run) -> None:
        if self.writer is not None:
            self.writer.close()  # before the run directory is renamed into place

    def record(self, run: Run) -> dict[str, Any]:
        return {"tensorboard": {"log_dir": LOG_DIR, "view": f"tensorboard --logdir {run.out / LOG_DIR}"}}

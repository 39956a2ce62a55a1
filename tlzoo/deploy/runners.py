"""Runners: one call per format, ``runner(x) -> {output name: numpy array}``, each honouring the
contract the same way. Inputs are checked before any runtime sees them (one clear error), an
empty batch returns empty outputs without calling the runtime, and a runtime error never leaves a
runner in a bad state (the TFLite runner rebuilds its interpreter)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.deploy.contract import Contract, serving_function
from tlzoo.errors import ConfigError, DataError, ExportError


def check_batch(x: Any, contract: Contract) -> np.ndarray:
    """``x`` as the exported graph takes it, or ``DataError`` naming what is wrong with it.

    Images: uint8 (or integers within 0-255) ``[N, H, W, C]`` with C 1-4, or a gray batch ``[N, H, W]``."""
    a = np.asarray(x)
    if not contract.images:
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise DataError(f"this model takes {contract.dtype} input of shape {contract.shape}; got dtype {a.dtype}")
        want = contract.shape[1:]
        if a.ndim != len(contract.shape) or any(w is not None and w != g for w, g in zip(want, a.shape[1:])):
            raise DataError(f"this model takes input of shape {contract.shape} (batch first); got {list(a.shape)}")
        if a.size and not np.isfinite(a).all():
            raise DataError(f"the input holds {int((~np.isfinite(a)).sum())} NaN or infinite value(s)")
        return np.ascontiguousarray(a, np.float32)
    if a.ndim == 3:  # a gray batch [N, H, W], as MedMNIST stores it
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"this model takes a batch of images [N, H, W, C] (C = 1 gray, 2 gray + alpha, 3 RGB, "
                        f"4 RGBA) or a gray batch [N, H, W]; got an array of shape {list(np.shape(x))}")
    if len(a) and (a.shape[1] < 1 or a.shape[2] < 1):
        raise DataError(f"images of size {a.shape[1]}x{a.shape[2]}: height and width must be at least 1")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"this model takes uint8 pixels (0-255); got dtype {a.dtype}. Images scaled to 0-1 "
                            f"must be multiplied by 255 first: np.clip(np.round(x * 255), 0, 255).astype(np.uint8)")
        if a.size and (a.min() < 0 or a.max() > 255):
            raise DataError(f"this model takes pixels within 0-255; got {a.dtype} values from {a.min()} to {a.max()}")
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


def empty_outputs(contract: Contract) -> dict[str, np.ndarray]:
    """Every output of the contract for a batch of none."""
    return {name: np.zeros([0, *[d or 0 for d in spec["shape"][1:]]], spec["dtype"])
            for name, spec in contract.outputs().items()}


class Runner:
    """Runs one format on a numpy batch; subclasses implement ``run`` on a checked, non-empty batch."""

    name = ""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract

    def __call__(self, x: Any) -> dict[str, np.ndarray]:
        x = check_batch(x, self.contract)
        if len(x) == 0:
            return empty_outputs(self.contract)
        return self.run(x)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class KerasRunner(Runner):
    """The Keras model through the exported serving function, run eagerly: the parity reference."""

    name = "keras"

    def __init__(self, model: Any, contract: Contract) -> None:
        super().__init__(contract)
        self.model, self._serve = model, serving_function(model, contract)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import tensorflow as tf

        return {k: np.asarray(v) for k, v in self._serve(tf.constant(x)).items()}


def load_runner(fmt: Any, path: Path, contract: Contract, num_threads: int | None = None) -> Runner:
    """A runner for one format's artefact."""
    from tlzoo.deploy.formats import ExportFormat, runner_class

    fmt = ExportFormat.parse(fmt)
    try:
        runner = runner_class(fmt)(path, contract, num_threads)
    except (ExportError, ConfigError):
        raise
    except Exception as exc:
        raise ExportError(f"cannot load the {fmt.value} artefact {str(path)!r}: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    runner.name = fmt.value
    return runner

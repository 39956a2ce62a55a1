"""LiteRT / TFLite, converted from the SavedModel's serving signature: float32, or dynamic-range int8."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.deploy.contract import SIGNATURE, Contract
from tlzoo.deploy.runners import Runner
from tlzoo.errors import ExportError


def export_tflite(saved_model_dir: Path, path: Path, fmt: Any, options: dict[str, Any] | None = None) -> None:
    """LiteRT / TFLite from the SavedModel's serving signature, at the format's precision."""
    import tensorflow as tf

    from tlzoo.deploy.formats import ExportFormat

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SIGNATURE])
    if fmt is ExportFormat.TFLITE_INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        flat = converter.convert()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the TFLite converter cannot convert this model ({fmt.value}): {first}") from exc
    path.write_bytes(flat)


def tflite_interpreter_class() -> tuple[Any, str]:
    """LiteRT's interpreter (``ai-edge-litert``); ``tf.lite.Interpreter`` (deprecated) only without it."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite (deprecated; pip install ai-edge-litert)"


class TFLiteRunner(Runner):
    """The signature runner; after a runtime error the interpreter is rebuilt, so that one failed
    call (a shape a delegate cannot take) never changes what later calls return."""

    name = "tflite"

    def __init__(self, path: Path, contract: Contract, num_threads: int | None = None) -> None:
        super().__init__(contract)
        self.path, self.num_threads = path, num_threads
        self._load()

    def _load(self) -> None:
        interpreter_cls, self.interpreter_name = tflite_interpreter_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.interpreter = interpreter_cls(model_path=str(self.path), num_threads=self.num_threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return {k: np.array(v) for k, v in self.runner(**{self.contract.input_name: x}).items()}
        except Exception as exc:
            self._load()
            raise ExportError(f"LiteRT failed on a batch of shape {list(x.shape)}: {exc}") from exc

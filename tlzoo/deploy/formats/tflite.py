"""LiteRT / TFLite, converted from the SavedModel's serving signature: float32, float16 weights,
dynamic-range int8 (weights), or full-integer int8 (weights and activations, their ranges calibrated on
training samples). Every variant takes the contract's input (uint8 images of any size) and returns its
named outputs in their dtypes, and carries ``labels.txt`` and ``tlzoo_contract.json`` as associated
files (``tlzoo.deploy.formats.metadata``).

Outputs by name: the ``serving_default`` signature runner's keys are the contract's output names
(``interpreter.get_signature_runner()(image=x)["probabilities"]``). The raw interpreter does not name
them: ``get_output_details()`` calls every output tensor ``StatefulPartitionedCall:N``, where N is the
output's place among the names sorted (TensorFlow flattens the signature's outputs in sorted key order:
``label`` is ``:0``, ``probabilities`` ``:1``), and lists them in the converter's order, which is not
that one (a classifier's: ``probabilities``, then ``label``). ``export.json`` records, for every TFLite
format, ``outputs``: for each index of ``get_output_details()``, its signature name and tensor name.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.deploy.contract import SIGNATURE, Contract
from tlzoo.deploy.formats.metadata import append_to_tflite
from tlzoo.deploy.runners import Runner
from tlzoo.errors import ExportError

# Training samples the full-integer conversion calibrates the activations' ranges on (the converter's
# guidance: about 100-500; more only slows the conversion on 2 cores).
REPRESENTATIVE_SAMPLES = 128


def export_tflite(saved_model_dir: Path, path: Path, fmt: Any, contract: Contract,
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    """LiteRT / TFLite from the SavedModel's serving signature, at the format's precision, with the
    metadata appended; returns the format's export.json additions (``outputs``, and for full-integer
    int8 the number of representative samples and, where some ops had no int8 kernel, the precision)."""
    from tlzoo.deploy.formats import ExportFormat

    entry: dict[str, Any] = {}
    if fmt is ExportFormat.TFLITE_INT8_FULL:
        representative = (options or {}).get("representative")
        if representative is None or not len(representative):
            raise ExportError("tflite_int8_full needs representative training samples to calibrate on "
                              "(options['representative']); none were given")
        entry["representative_samples"] = len(representative)
        try:
            flat = _convert(saved_model_dir, fmt, contract, representative, int8_only=True)
        except ExportError as exc:  # some op has no int8 kernel: those ops alone run in float32
            flat = _convert(saved_model_dir, fmt, contract, representative, int8_only=False)
            entry["precision"] = (f"{fmt.precision}; float32 kernels for the ops without an int8 one "
                                  f"(int8 alone: {str(exc).split(': ', 1)[-1]})")
    else:
        flat = _convert(saved_model_dir, fmt, contract)
    path.write_bytes(flat)
    append_to_tflite(path, contract)
    entry["outputs"] = output_names(path, contract)
    return entry


def _convert(saved_model_dir: Path, fmt: Any, contract: Contract, representative: Any = None,
             int8_only: bool = True) -> bytes:
    import tensorflow as tf

    from tlzoo.deploy.formats import ExportFormat

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SIGNATURE])
    if fmt is not ExportFormat.TFLITE:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt is ExportFormat.TFLITE_FP16:
        converter.target_spec.supported_types = [tf.float16]
    if fmt is ExportFormat.TFLITE_INT8_FULL:
        # one sample per step, at its stored size: the graph resizes it as it will at inference
        converter.representative_dataset = lambda: ([representative[i:i + 1]] for i in range(len(representative)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
            [] if int8_only else [tf.lite.OpsSet.TFLITE_BUILTINS])
        # the contract's dtypes at the boundary (uint8 images in, float32 out); int8 inside
        converter.inference_input_type = tf.as_dtype(contract.dtype)
        converter.inference_output_type = tf.float32
    try:
        return converter.convert()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the TFLite converter cannot convert this model ({fmt.value}): {first}") from exc


def output_names(path: Path, contract: Contract) -> list[dict[str, str]]:
    """For each index of the interpreter's ``get_output_details()``, the output's signature name and tensor
    name; checks that the signature takes the contract's input dtype and names every contract output."""
    interpreter_cls, _ = tflite_interpreter_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = interpreter_cls(model_path=str(path))
    runner = interpreter.get_signature_runner(SIGNATURE)
    got = np.dtype(runner.get_input_details()[contract.input_name]["dtype"])
    if got != np.dtype(contract.dtype):
        raise ExportError(f"{path.name} takes {got} input, the contract {contract.dtype}")
    by_index = {d["index"]: name for name, d in runner.get_output_details().items()}
    outputs = [{"name": by_index.get(d["index"], ""), "tensor": d["name"]} for d in interpreter.get_output_details()]
    missing = sorted(set(contract.outputs()) - {o["name"] for o in outputs})
    if missing:
        raise ExportError(f"{path.name} lacks the outputs {', '.join(missing)} (it has {outputs})")
    return outputs


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

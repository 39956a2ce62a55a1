"""OpenVINO IR (``openvino/model.xml`` + ``model.bin``, float32), converted from the SavedModel's serving
signature (from the ONNX model if OpenVINO's TensorFlow frontend cannot read it): the contract's input
with dynamic batch, height, width and channels, its named outputs, and the contract, class names and
tlzoo version in the IR's runtime info (``<rt_info><tlzoo>`` in model.xml); runs in OpenVINO Runtime."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from tlzoo._version import __version__
from tlzoo.deploy.contract import Contract
from tlzoo.deploy.formats import require
from tlzoo.deploy.runners import Runner
from tlzoo.errors import ExportError

MODEL_XML = "model.xml"  # inside the format's folder; model.bin beside it


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def export_openvino(saved_model_dir: Path, onnx_path: Callable[[], Path], contract: Contract, folder: Path) -> None:
    """The IR of the serving signature in ``folder``; ``onnx_path()`` (called only if the TensorFlow
    frontend fails) gives an ONNX model of the same function to convert instead."""
    ov = require("openvino")
    # The contract's input, stated rather than inferred, so that every frontend keeps the same free dims.
    spec = (contract.input_name, ov.PartialShape([-1 if d is None else d for d in contract.input_shape()]),
            ov.Type.u8 if contract.dtype == "uint8" else ov.Type.f32)
    try:
        model, source = ov.convert_model(str(saved_model_dir), input=[spec]), "savedmodel serving_default"
    except Exception as tf_exc:
        try:
            model, source = ov.convert_model(str(onnx_path()), input=[spec]), "onnx"
        except Exception as onnx_exc:
            raise ExportError(f"OpenVINO cannot convert this model: from the SavedModel {_first_line(tf_exc)}; "
                              f"from ONNX {_first_line(onnx_exc)}") from onnx_exc
    names = {n for o in model.outputs for n in o.get_names()}
    missing = [n for n in contract.outputs() if n not in names]
    if missing:
        raise ExportError(f"the OpenVINO model converted from {source} lacks the output(s) {', '.join(missing)} "
                          f"(it has {', '.join(sorted(names))})")
    rt = model.get_rt_info()
    if "conversion_parameters" in rt:  # the temporary path converted from: meaningless once the export is renamed
        del rt["conversion_parameters"]
    for key, value in (("contract", json.dumps(contract.to_dict())), ("class_names", json.dumps(contract.class_names)),
                       ("version", __version__), ("converted_from", source)):
        model.set_rt_info(value, ["tlzoo", key])
    folder.mkdir(parents=True, exist_ok=True)
    # float32 weights, as the format's precision and bound say (OpenVINO's default rounds them to fp16)
    ov.save_model(model, str(folder / MODEL_XML), compress_to_fp16=False)


class OpenVinoRunner(Runner):
    """The IR compiled for the CPU. OpenVINO would take a float batch for the uint8 input without a
    word; the base class has refused any such batch before ``run`` is called."""

    name = "openvino"

    def __init__(self, path: Path, contract: Contract, num_threads: int | None = None) -> None:
        super().__init__(contract)
        ov = require("openvino")
        # f32 explicitly: on CPUs with bf16 / fp16 units (AVX512-BF16, AMX) OpenVINO's default precision
        # hint is bf16, which moved a probability by 1e-4 and flipped borderline labels (seen on Xeon)
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.compiled = ov.Core().compile_model(str(Path(path) / MODEL_XML), "CPU", config)
        self.outputs = [(o, o.get_any_name()) for o in self.compiled.outputs]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        result = self.compiled(x)  # outputs copied out of the infer request (share_outputs=False)
        # labels come back int64, as converted (checked with OpenVINO 2026.4): no cast
        return {name: np.asarray(result[o]) for o, name in self.outputs}

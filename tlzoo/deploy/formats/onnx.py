"""ONNX through tf2onnx, from the serving function: explicit input signature, dynamic batch, height,
width and channels, named dimensions, the contract in ``metadata_props``; runs in ONNX Runtime."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo._version import __version__
from tlzoo.compat import patch_tf2onnx
from tlzoo.deploy.contract import Contract, serving_function
from tlzoo.deploy.formats import require
from tlzoo.deploy.runners import Runner
from tlzoo.errors import ConfigError, ExportError

DEFAULT_OPSET = 17
MIN_OPSET = 13
# Names of the free dimensions, per tensor (tf2onnx calls them "unk__N").
DIM_NAMES = {"image": ("batch", "height", "width", "channels"), "series": ("batch", "time", "features"),
             "anomaly_map": ("batch", "map_height", "map_width")}


class _Tf2onnxLog(logging.Handler):
    """Collects tf2onnx's "op is not supported" errors (it logs them and carries on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.unsupported: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "is not supported" in msg:
            self.unsupported.append(msg.replace("Tensorflow op ", "").replace(" is not supported", ""))


def _patch_tf2onnx() -> None:
    # Keras' own compatibility patch of tf2onnx for numpy 2 (what Model.export(format="onnx") runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()
    _register_erfc()


_erfc_registered = False


def _register_erfc() -> None:
    """A tf2onnx handler for TensorFlow's Erfc, which it lacks: exact GELU (every ViT's MLP) is
    ``0.5 * x * erfc(-x / sqrt(2))`` in TensorFlow. ONNX has Erf, and erfc(x) = 1 - erf(x)."""
    global _erfc_registered
    if _erfc_registered:
        return
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx: Any, node: Any, **kwargs: Any) -> None:
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.output[0]))
            node.type = "Erf"
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{node.name}_erfc"),
                                          inputs=[one.output[0], node.output[0]])

    _erfc_registered = True


def fold_captured_constants(proto: Any, concrete: Any) -> None:
    """Eager tensors a layer keeps as attributes (KerasHub ViT's ``position_ids``) are captured by the traced
    function, and tf2onnx turns each into a graph input no caller can feed. They become initializers here."""
    import tensorflow as tf
    from onnx import numpy_helper

    args = len(concrete.inputs) - len(concrete.captured_inputs)
    captured = {placeholder.name: value for placeholder, value in zip(concrete.inputs[args:], concrete.captured_inputs)
                if value.dtype != tf.resource}
    consumed = {name for node in proto.graph.node for name in node.input}
    for graph_input in [i for i in proto.graph.input if i.name in captured]:
        if graph_input.name in consumed:  # else tf2onnx folded its uses away and left the input dangling
            proto.graph.initializer.append(numpy_helper.from_array(np.asarray(captured[graph_input.name]),
                                                                   graph_input.name))
        proto.graph.input.remove(graph_input)


def check_opset(opset: int) -> int:
    try:
        from tf2onnx.constants import OPSET_TO_IR_VERSION
        highest = max(OPSET_TO_IR_VERSION)
    except ImportError:
        highest = 18
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= highest:
        raise ConfigError(f"ONNX opset must be an integer from {MIN_OPSET} to {highest} (tf2onnx's newest); "
                          f"got {opset!r}")
    return opset


def export_onnx(model: Any, contract: Contract, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """ONNX through tf2onnx, from the same serving function."""
    import tensorflow as tf

    tf2onnx, onnx = require("tf2onnx"), require("onnx")
    _patch_tf2onnx()
    spec = contract.tensor_spec()
    fn = tf.function(serving_function(model, contract), input_signature=[spec])
    catcher = _Tf2onnxLog()
    tf2onnx_log = logging.getLogger("tf2onnx")
    tf2onnx_log.addHandler(catcher)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=opset)
    except Exception as exc:
        detail = f"; unsupported: {', '.join(catcher.unsupported)}" if catcher.unsupported else ""
        raise ExportError(f"tf2onnx cannot convert model {model.name!r} to ONNX (opset {opset}): "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{detail}") from exc
    finally:
        tf2onnx_log.removeHandler(catcher)
    if catcher.unsupported:
        raise ExportError(
            f"tf2onnx cannot convert model {model.name!r} to ONNX (opset {opset}): TensorFlow op(s) with no ONNX "
            f"equivalent: {', '.join(sorted(set(catcher.unsupported)))}; replace the layer(s) using them, try "
            f"another --opset, or export without onnx"
        )
    fold_captured_constants(proto, fn.get_concrete_function(spec))
    name_dynamic_dims(proto)
    for key, value in (("tlzoo_contract", json.dumps(contract.to_dict())), ("tlzoo_version", __version__),
                       ("class_names", json.dumps(contract.class_names))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = f"tlzoo {__version__} via {proto.producer_name} {proto.producer_version}"
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"the ONNX model tf2onnx made of {model.name!r} does not check: {exc}") from exc
    onnx.save(proto, str(path))


def name_dynamic_dims(proto: Any) -> None:
    """Every free dimension of the inputs and outputs gets a name ("batch", "height" ...) instead of
    tf2onnx's "unk__N"."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        names = DIM_NAMES.get(value.name, ("batch",))
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_param = names[i] if i < len(names) else f"{value.name}_{i}"


class OnnxRunner(Runner):
    name = "onnx"

    def __init__(self, path: Path, contract: Contract, num_threads: int | None = None) -> None:
        super().__init__(contract)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, {self.input: x})))

"""Deployment exports of a run directory: SavedModel, ONNX and LiteRT / TFLite, each checked for
numerical parity with the Keras model, with a model card and a manifest of sha256 hashes.

Every format takes the same raw input the deployment has (for image plugins: ``uint8`` images
``[batch, H, W, C]`` at the data's resolution, batch dynamic), does the plugin's preprocessing
inside (cast, channel handling, resize, the backbone's ``preprocess_input``: all already layers of
the Keras model) and returns two named outputs:

- ``probabilities`` (float32): the model's head;
- ``label`` (int64): ``probabilities >= threshold`` for binary / multilabel tasks (the run's
  threshold from ``metrics.json``), ``argmax`` for multiclass.

The export directory is written to a temporary sibling and renamed into place only after every
format passed its parity check; ``manifest.json`` (written last) lists every file with its sha256.
``verify`` re-checks the hashes and re-runs parity on the stored sample inputs.

    tlzoo export runs/pneumonia --format savedmodel onnx tflite --out exports/pneumonia
    tlzoo verify exports/pneumonia
"""
from __future__ import annotations

import datetime
import json
import logging
import platform
import shutil
import time
import warnings
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tlzoo._version import __version__
from tlzoo.compat import functional_input_structure, patch_tf2onnx
from tlzoo.data import is_lazy
from tlzoo.deploy.manifest import check_manifest, write_manifest
from tlzoo.errors import (
    ConfigError,
    DataError,
    ExportError,
    IntegrityError,
    ParityError,
)
from tlzoo.runs import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from tlzoo.runs.directory import atomic_dir, read_yaml, write_json
from tlzoo.train.config import recorded
from tlzoo.train.recipe import load_model

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
REQUIRED_RUN_FILES = (CONFIG_FILE, METRICS_FILE, MODEL_FILE)

EXPORT_FILE = "export.json"  # what verify needs: formats, files, input/output contract, bounds
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
SAMPLE_INPUTS = "samples/inputs.npy"
SAMPLE_OUTPUTS = "samples/keras_outputs.npz"  # every output of the Keras model on the sample inputs
EXPORT_SCHEMA = "tlzoo.export/1"
SIGNATURE = "serving_default"
INPUT_NAME = "image"

DEFAULT_OPSET = 17
MIN_OPSET = 13

# Parity bounds against the Keras model, on probabilities.
FLOAT32_BOUNDS = {"max_abs_diff": 1e-4}
# Dynamic-range int8 (weights int8, activations quantised on the fly) is not a small perturbation:
# measured on the PneumoniaMNIST run (MobileNetV2 ImageNet, 96 px, 624 test images) it differed
# from Keras by max 0.68 / mean 0.043 on probabilities, agreed on 96.0% of the labels, and kept
# test ROC-AUC at 0.9666 (Keras 0.9673). On the 97 parity inputs: max 0.27, mean 0.04.
# The bounds are set from that with margin: mean 0.10 is the working gate (a broken conversion,
# e.g. per-tensor weights, measured mean 0.49 / agreement 33%); max 0.80 only catches gross failure.
INT8_BOUNDS = {"max_abs_diff": 0.8, "mean_abs_diff": 0.1}


class ExportFormat(str, Enum):
    """The export formats (one exporter function per format)."""

    SAVEDMODEL = "savedmodel"
    ONNX = "onnx"
    TFLITE = "tflite"  # LiteRT, float32
    TFLITE_INT8 = "tflite_int8"  # LiteRT, dynamic-range int8 weights

    @classmethod
    def parse(cls, value: "str | ExportFormat") -> "ExportFormat":
        if isinstance(value, cls):
            return value
        key = str(value).strip().lower().replace("-", "_")
        key = {"saved_model": "savedmodel", "litert": "tflite", "litert_int8": "tflite_int8",
               "tflite_float32": "tflite"}.get(key, key)
        try:
            return cls(key)
        except ValueError:
            raise ConfigError(
                f"unknown export format {str(value)!r}; choose from {', '.join(f.value for f in cls)}"
            ) from None

    @property
    def artefact(self) -> str:
        """File (or, for SavedModel, folder) name inside the export directory."""
        return {"savedmodel": "saved_model", "onnx": "model.onnx", "tflite": "model.tflite",
                "tflite_int8": "model_int8.tflite"}[self.value]

    @property
    def precision(self) -> str:
        return "int8 dynamic-range (weights), float32 activations" if self is ExportFormat.TFLITE_INT8 else "float32"

    @property
    def bounds(self) -> dict[str, float]:
        return dict(INT8_BOUNDS if self is ExportFormat.TFLITE_INT8 else FLOAT32_BOUNDS)


DEFAULT_FORMATS = (ExportFormat.SAVEDMODEL, ExportFormat.ONNX, ExportFormat.TFLITE)


def parse_formats(formats: Iterable["str | ExportFormat"] | str | None) -> list[ExportFormat]:
    if formats is None:
        return list(DEFAULT_FORMATS)
    if isinstance(formats, (str, ExportFormat)):
        formats = [formats]
    out: list[ExportFormat] = []
    for f in formats:
        fmt = ExportFormat.parse(f)
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise ConfigError(f"no export format given; choose from {', '.join(f.value for f in ExportFormat)}")
    return out


# ---------------------------------------------------------------- the input / output contract


@dataclass
class Contract:
    """What every exported format takes and returns."""

    dtype: str  # "uint8" for image data, else "float32"
    shape: list[int | None]  # [None, H, W, C]
    task: str
    threshold: float
    num_outputs: int
    class_names: list[str]
    input_name: str = INPUT_NAME
    # Further float32 outputs a model returns by name beside "probabilities" (e.g. an anomaly map):
    # {name: {"dtype": "float32", "shape": [...]}}; passed through and checked for parity too.
    extra_outputs: dict[str, Any] = field(default_factory=dict)
    # Multi-task models: one head per task, {name: {"task", "threshold", "num_outputs", "class_names"}};
    # each returns its probabilities as output NAME and its label as NAME_label (instead of
    # "probabilities" / "label").
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def heads(self) -> list[tuple[str, str, str, float, int]]:
        """(probabilities output, label output, task, threshold, number of outputs) per head."""
        if self.tasks:
            return [(name, f"{name}_label", t["task"], float(t["threshold"]), int(t["num_outputs"]))
                    for name, t in self.tasks.items()]
        return [("probabilities", "label", self.task, float(self.threshold), self.num_outputs)]

    def tensor_spec(self) -> Any:
        import tensorflow as tf

        return tf.TensorSpec(self.shape, getattr(tf, self.dtype), name=self.input_name)

    def outputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for probs, label, task, threshold, k in self.heads():
            out[probs] = {"dtype": "float32", "shape": [None, k]}
            out[label] = {"dtype": "int64", "shape": [None, k] if task == "multilabel" else [None],
                          "rule": label_rule(probs, task, threshold, k)}
        return {**out, **self.extra_outputs}

    def to_dict(self) -> dict[str, Any]:
        return {"input": {"name": self.input_name, "dtype": self.dtype, "shape": self.shape},
                "outputs": self.outputs(), "task": self.task, "threshold": self.threshold,
                "num_outputs": self.num_outputs, "class_names": self.class_names, "signature": SIGNATURE,
                **({"tasks": self.tasks} if self.tasks else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Contract":
        tasks = d.get("tasks") or {}
        heads = {"probabilities", "label"} | {n for t in tasks for n in (t, f"{t}_label")}
        return cls(dtype=d["input"]["dtype"], shape=list(d["input"]["shape"]), task=d["task"],
                   threshold=float(d["threshold"]), num_outputs=int(d["num_outputs"]),
                   class_names=list(d["class_names"]), input_name=d["input"]["name"],
                   extra_outputs={k: v for k, v in d.get("outputs", {}).items() if k not in heads}, tasks=tasks)


def label_rule(probs: str, task: str, threshold: float, k: int) -> str:
    if task == "multiclass" or (task == "binary" and k > 1):
        return f"argmax({probs})"
    return f"{probs} >= {threshold:g}"


def labels_from(probs: np.ndarray, task: str, threshold: float) -> np.ndarray:
    """A head's label output, computed in numpy exactly as the exported graph does."""
    probs = np.asarray(probs, np.float32)
    if task == "multiclass" or (task == "binary" and probs.shape[-1] > 1):
        return probs.argmax(-1).astype(np.int64)
    if task == "binary":
        return (probs[:, 0] >= np.float32(threshold)).astype(np.int64)
    return (probs >= np.float32(threshold)).astype(np.int64)


def head_outputs(out: Any, contract: Contract) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's output -> ({probabilities output name: tensor} per head, {other named outputs})."""
    if contract.tasks:
        return {name: out[name] for name in contract.tasks}, {k: v for k, v in out.items() if k not in contract.tasks}
    probs, extras = split_outputs(out)
    return {"probabilities": probs}, extras


def split_outputs(out: Any) -> tuple[Any, dict[str, Any]]:
    """A model's output -> (probabilities, {other named outputs}); models with one output have none."""
    if isinstance(out, dict):
        return out["probabilities"], {k: v for k, v in out.items() if k != "probabilities"}
    if isinstance(out, (list, tuple)) and len(out) == 1:  # a functional model built with outputs=[...]
        out = out[0]
    return out, {}


def model_inputs(model: Any, x: Any) -> Any:
    """``x`` in the structure the functional model was built with (a list of one, usually)."""
    return [x] if isinstance(functional_input_structure(model), list) else x


def serving_function(model: Any, contract: Contract) -> Any:
    """raw input -> {"probabilities", "label"}: the one function every format exports."""
    import tensorflow as tf

    def label(probs: Any, task: str, threshold: float, k: int) -> Any:
        if task == "multiclass" or (task == "binary" and k > 1):
            return tf.argmax(probs, axis=-1, output_type=tf.int64)
        if task == "binary":
            return tf.cast(probs[:, 0] >= tf.constant(threshold, tf.float32), tf.int64)
        return tf.cast(probs >= tf.constant(threshold, tf.float32), tf.int64)

    def serve(image: Any) -> dict[str, Any]:
        heads, extras = head_outputs(model(model_inputs(model, tf.cast(image, tf.float32)), training=False), contract)
        out = {}
        for probs_name, label_name, task, threshold, k in contract.heads():
            out[probs_name] = tf.cast(heads[probs_name], tf.float32)
            out[label_name] = label(out[probs_name], task, threshold, k)
        return {**out, **{k: tf.cast(v, tf.float32) for k, v in extras.items()}}

    return serve


# ---------------------------------------------------------------- exporters (one per format)


def export_savedmodel(model: Any, contract: Contract, path: Path) -> None:
    """A SavedModel whose ``serving_default`` signature takes the raw input; needs only TensorFlow.

    A plain ``tf.Module`` holding the model's TensorFlow variables and the serving function
    (Keras' ``ExportArchive`` stored every variable twice here, doubling the size)."""
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]
    module.serve = tf.function(serving_function(model, contract), input_signature=[contract.tensor_spec()])
    try:
        tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve.get_concrete_function()})
    except Exception as exc:
        raise ExportError(f"cannot write the SavedModel of {model.name!r}: {type(exc).__name__}: {exc}") from exc


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
    """ONNX through tf2onnx, from the same serving function: explicit input signature, dynamic batch."""
    import tensorflow as tf

    tf2onnx, onnx = _require("tf2onnx"), _require("onnx")
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
    _name_dynamic_dims(proto)
    for key, value in (("tlzoo_contract", json.dumps(contract.to_dict())), ("tlzoo_version", __version__)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = f"tlzoo {__version__} via {proto.producer_name} {proto.producer_version}"
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"the ONNX model tf2onnx made of {model.name!r} does not check: {exc}") from exc
    onnx.save(proto, str(path))


def _name_dynamic_dims(proto: Any) -> None:
    """tf2onnx names the free batch dimension "unk__N"; call it "batch" on every input and output."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def export_tflite(saved_model_dir: Path, path: Path, int8: bool = False) -> None:
    """LiteRT / TFLite from the SavedModel's serving signature; ``int8``: dynamic-range quantisation."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SIGNATURE])
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        flat = converter.convert()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the TFLite converter cannot convert this model{' (int8)' if int8 else ''}: "
                          f"{first}") from exc
    path.write_bytes(flat)


def _run_exporter(fmt: ExportFormat, model: Any, contract: Contract, root: Path, opset: int,
                  scratch: dict[str, Path]) -> None:
    """Calls the format's exporter (looked up at call time, so each can be replaced in tests)."""
    target = root / fmt.artefact
    if fmt is ExportFormat.SAVEDMODEL:
        export_savedmodel(model, contract, target)
        scratch["saved_model"] = target
    elif fmt is ExportFormat.ONNX:
        export_onnx(model, contract, target, opset)
    else:
        if "saved_model" not in scratch:  # TFLite converts from a SavedModel; make one off to the side
            scratch["saved_model"] = root / ".work" / "saved_model"
            scratch["saved_model"].parent.mkdir(parents=True, exist_ok=True)
            export_savedmodel(model, contract, scratch["saved_model"])
        export_tflite(scratch["saved_model"], target, int8=fmt is ExportFormat.TFLITE_INT8)


# ---------------------------------------------------------------- runners: one call per format


class Runner:
    """Runs one format on a numpy batch: ``runner(x) -> {"probabilities": ..., "label": ...}``."""

    name = ""

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class KerasRunner(Runner):
    name = "keras"

    def __init__(self, model: Any, contract: Contract) -> None:
        self.model, self.contract = model, contract

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        heads, extras = head_outputs(self.model(model_inputs(self.model, np.asarray(x, np.float32)), training=False),
                                     self.contract)
        out = {}
        for probs_name, label_name, task, threshold, _ in self.contract.heads():
            out[probs_name] = np.asarray(heads[probs_name], np.float32)
            out[label_name] = labels_from(out[probs_name], task, threshold)
        return {**out, **{k: np.asarray(v, np.float32) for k, v in extras.items()}}


class SavedModelRunner(Runner):
    name = ExportFormat.SAVEDMODEL.value

    def __init__(self, path: Path, contract: Contract) -> None:
        import tensorflow as tf

        self._tf, self.contract = tf, contract
        self._loaded = tf.saved_model.load(str(path))  # keep a reference: the signature needs it alive
        self._fn = self._loaded.signatures[SIGNATURE]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self._fn(**{self.contract.input_name: self._tf.constant(x)})
        return {k: v.numpy() for k, v in out.items()}


class OnnxRunner(Runner):
    name = ExportFormat.ONNX.value

    def __init__(self, path: Path, contract: Contract, num_threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, {self.input: x})))


def tflite_interpreter_class() -> tuple[Any, str]:
    """LiteRT's interpreter (``ai-edge-litert``); ``tf.lite.Interpreter`` (deprecated) only without it."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite (deprecated; pip install ai-edge-litert)"


class TFLiteRunner(Runner):
    name = ExportFormat.TFLITE.value

    def __init__(self, path: Path, contract: Contract, num_threads: int | None = None) -> None:
        interpreter_cls, self.interpreter_name = tflite_interpreter_class()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.interpreter = interpreter_cls(model_path=str(path), num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.contract = contract

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.runner(**{self.contract.input_name: x}).items()}


def load_runner(fmt: "ExportFormat | str", path: Path, contract: Contract, num_threads: int | None = None) -> Runner:
    fmt = ExportFormat.parse(fmt)
    try:
        if fmt is ExportFormat.SAVEDMODEL:
            runner: Runner = SavedModelRunner(path, contract)
        elif fmt is ExportFormat.ONNX:
            runner = OnnxRunner(path, contract, num_threads)
        else:
            runner = TFLiteRunner(path, contract, num_threads)
    except (ExportError, ConfigError):
        raise
    except Exception as exc:
        raise ExportError(f"cannot load the {fmt.value} artefact {str(path)!r}: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    runner.name = fmt.value
    return runner


def load_export(export_dir: str | Path, fmt: "ExportFormat | str" = ExportFormat.SAVEDMODEL,
                num_threads: int | None = None) -> Runner:
    """A runner for one format of an export, after its files were checked against ``manifest.json``
    (an export whose hashes do not match is refused)."""
    root = Path(export_dir)
    check_manifest(root)
    info = _read_export_info(root)
    fmt = ExportFormat.parse(fmt)
    if fmt.value not in info["formats"]:
        raise ConfigError(f"{str(root)!r} has no {fmt.value} export; it has {', '.join(info['formats'])}")
    return load_runner(fmt, root / info["formats"][fmt.value]["path"], Contract.from_dict(info["contract"]),
                       num_threads)


# ---------------------------------------------------------------- parity


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray],
            heads: Sequence[tuple[str, str]] = (("probabilities", "label"),)) -> dict[str, Any]:
    """Max / mean absolute difference of every head's probabilities, and agreement of all its labels,
    against the reference. ``heads``: (probabilities output, label output) pairs."""
    n = len(next(iter(reference.values())))
    missing = [name for pair in heads for name in pair if name not in got]
    if missing:
        return {"n": n, "error": f"outputs {sorted(got)} lack {', '.join(missing)}",
                "max_abs_diff": float("inf"), "mean_abs_diff": float("inf"), "agreement": 0.0}
    diffs, same, finite = [], np.ones(n, bool), True
    for probs_name, label_name in heads:
        ref_p, p = np.asarray(reference[probs_name], np.float64), np.asarray(got[probs_name], np.float64)
        if p.shape != ref_p.shape:
            return {"n": n, "error": f"{probs_name} of shape {p.shape}, expected {ref_p.shape}",
                    "max_abs_diff": float("inf"), "mean_abs_diff": float("inf"), "agreement": 0.0}
        diffs.append(np.abs(p - ref_p).reshape(-1))
        finite = finite and bool(np.isfinite(p).all())
        ref_l, lab = np.asarray(reference[label_name]), np.asarray(got[label_name])
        same &= (lab == ref_l).reshape(n, -1).all(-1) if lab.shape == ref_l.shape else np.zeros(n, bool)
    diff = np.concatenate(diffs)
    out = {"n": int(n),
           "max_abs_diff": float(diff.max()) if finite else float("inf"),
           "mean_abs_diff": float(diff.mean()) if finite else float("inf"),
           "agreement": float(same.mean()), "label_dtype": str(np.asarray(got[heads[0][1]]).dtype)}
    # further outputs: reported, not bounded
    for name in sorted(set(reference) - {name for pair in heads for name in pair}):
        ref_e, got_e = np.asarray(reference[name], np.float64), got.get(name)
        ok = got_e is not None and np.shape(got_e) == ref_e.shape and bool(np.isfinite(got_e).all())
        out[f"{name}_max_abs_diff"] = float(np.abs(np.asarray(got_e, np.float64) - ref_e).max()) if ok else float("inf")
    return out


def summarise(cases: dict[str, dict[str, Any]], bounds: dict[str, float]) -> dict[str, Any]:
    """Pool the cases of one format, and check the format's bounds."""
    n = sum(c["n"] for c in cases.values())
    pooled = {
        "max_abs_diff": max(c["max_abs_diff"] for c in cases.values()),
        "mean_abs_diff": sum(c["mean_abs_diff"] * c["n"] for c in cases.values()) / n,
        "agreement": sum(c["agreement"] * c["n"] for c in cases.values()) / n,
    }
    failed = {k: pooled[k] for k, bound in bounds.items() if not pooled[k] <= bound}
    errors = [f"{name}: {c['error']}" for name, c in cases.items() if "error" in c]
    return {**pooled, "n": n, "bounds": bounds, "passed": not failed and not errors, "failed": failed,
            "errors": errors, "cases": cases}


def _parity_message(fmt: str, summary: dict[str, Any], against: str) -> str:
    if summary["errors"]:
        return f"{fmt}: {'; '.join(summary['errors'])}"
    worst = max(summary["cases"].items(), key=lambda kv: kv[1]["max_abs_diff"])
    parts = [f"{k.replace('_', ' ')} {v:.3g} > bound {summary['bounds'][k]:g}" for k, v in summary["failed"].items()]
    return (f"{fmt} differs from {against}: {', '.join(parts)} "
            f"(worst case {worst[0]!r}, agreement {summary['agreement']:.1%})")


def run_parity(runners: dict[str, Runner], cases: dict[str, np.ndarray], reference: dict[str, dict[str, np.ndarray]],
               bounds: dict[str, dict[str, float]], contract: Contract) -> dict[str, Any]:
    heads = [(probs, label) for probs, label, *_ in contract.heads()]
    out = {}
    for name, runner in runners.items():
        per_case = {case: compare(reference[case], runner(x), heads) for case, x in cases.items()}
        out[name] = summarise(per_case, bounds[name])
    return out


# ---------------------------------------------------------------- the run directory


@dataclass
class _Run:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    plugin: Any
    model: Any


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def check_run_dir(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's config and metrics, after checking it is complete and from this tlzoo version."""
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    missing = [f for f in REQUIRED_RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{str(run_dir)!r} is not a complete tlzoo run directory: {', '.join(missing)} missing "
                          f"(an interrupted or foreign run?); run `tlzoo adapt` again")
    config = read_yaml(run_dir / CONFIG_FILE)
    if not isinstance(config, dict) or not isinstance(config.get("adapt"), dict):
        raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} has no 'adapt' section: not a tlzoo run configuration")
    made_by = (config.get("environment") or {}).get("tlzoo")
    ours = __version__
    if not made_by:
        raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} records no environment.tlzoo version; "
                          f"only runs written by tlzoo {'.'.join(_major_minor(ours))}.x can be exported")
    if _major_minor(made_by) != _major_minor(ours):
        raise ConfigError(f"{str(run_dir)!r} was written by tlzoo {made_by}, this is tlzoo {ours}: "
                          f"major.minor differ ({'.'.join(_major_minor(made_by))} vs {'.'.join(_major_minor(ours))}); "
                          f"export it with tlzoo {'.'.join(_major_minor(made_by))}.x or re-run `tlzoo adapt`")
    try:
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
    except ValueError as exc:
        raise ConfigError(f"{str(run_dir / METRICS_FILE)!r} is not valid JSON: {exc}") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
        raise ConfigError(f"{str(run_dir / METRICS_FILE)!r} has no test metrics: the run did not finish")
    for key in ("data", "backbone", "schedule"):
        if key not in config:
            raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} lacks the {key!r} section: "
                              f"not a complete run configuration")
    return config, metrics


def _open_run(run_dir: Path) -> _Run:
    config, metrics = check_run_dir(run_dir)
    from tlzoo.train.recipe import run_plugin

    plugin = run_plugin(recorded(config))  # registers the plugin's layers
    model = load_model(run_dir / MODEL_FILE)
    history_path = run_dir / HISTORY_FILE
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return _Run(run_dir, config, metrics, history, plugin, model)


def _read_data(run: _Run, data: str | None) -> tuple[Any, bool | None]:
    """The run's splits (label subsampling redone), and whether their fingerprint is the run's."""
    from tlzoo.train.recipe import prepare_data

    cfg = recorded(run.config)
    cfg.data = data or cfg.data
    try:
        splits, _ = prepare_data(cfg, run.plugin)
    except DataError as exc:
        raise DataError(f"{exc}; the export checks parity on the run's held-out test split: "
                        f"pass --data SOURCE (data=...) where it now lives") from None
    fingerprint = (run.config.get("data") or {}).get("fingerprint")
    return splits, (splits.fingerprint() == fingerprint) if fingerprint else None


def _contract(run: _Run, test_x: Any = None) -> Contract:
    """The run's contract; with ``test_x`` (the data now read), checked against it. Without data the
    input is taken as the run recorded it (uint8 for images)."""
    shape = (run.config.get("data") or {}).get("train", {}).get("shape")
    if test_x is None:
        if not shape:
            raise ConfigError(f"{str(run.path)!r} does not record its input shape (data.train.shape in "
                              f"{CONFIG_FILE}); re-run `tlzoo adapt` with this version")
        test_x = np.zeros((0, *shape), np.uint8 if run.plugin.modality == "image" else np.float32)
    shape = shape or list(test_x.shape[1:])
    if list(shape) != list(test_x.shape[1:]):
        raise DataError(f"the run was trained on samples of shape {list(shape)}, the data now read has "
                        f"{list(test_x.shape[1:])}; pass the run's data with --data")
    lazy = is_lazy(test_x)  # image files: decoded to uint8 by the stream's rule
    integral = lazy or np.issubdtype(test_x.dtype, np.integer) or bool(np.all(test_x == np.round(test_x)))
    in_range = lazy or test_x.size == 0 or (float(test_x.min()) >= 0 and float(test_x.max()) <= 255)
    dtype = "uint8" if run.plugin.modality == "image" and integral and in_range else "float32"
    if run.metrics.get("tasks"):  # multi-task: one head per task
        tasks = {t["name"]: {"task": t["kind"],
                             "threshold": float(run.metrics["test"][t["name"]].get("threshold", 0.5)),
                             "num_outputs": int(run.model.output[t["name"]].shape[-1]), "class_names": t["class_names"]}
                 for t in run.metrics["tasks"]}
        first = next(iter(tasks.values()))
        return Contract(dtype=dtype, shape=[None, *map(int, shape)], task="multitask", threshold=first["threshold"],
                        num_outputs=first["num_outputs"], class_names=list(tasks), tasks=tasks)
    names = list(run.metrics.get("class_names") or run.config.get("data", {}).get("classes") or [])
    probs_out, extras = split_outputs(run.model.output)
    num_outputs = int(probs_out.shape[-1])
    extra_outputs = {k: {"dtype": "float32", "shape": [None, *v.shape[1:]]} for k, v in extras.items()}
    return Contract(dtype=dtype, shape=[None, *map(int, shape)], task=run.plugin.task,
                    threshold=float(run.metrics["test"].get("threshold", 0.5)), num_outputs=num_outputs,
                    class_names=[str(n) for n in names], extra_outputs=extra_outputs)


# ---------------------------------------------------------------- export


@dataclass
class ExportResult:
    out: Path
    formats: list[str]
    parity: dict[str, Any]
    test_metrics: dict[str, Any]
    card: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def export(
    run: Any,
    formats: Sequence["str | ExportFormat"] | str | None = None,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
    data: str | None = None,
    heldout: int = 64,
    samples: int = 16,
    test_metrics: bool = True,
    verbose: int = 1,
) -> ExportResult:
    """Export a run directory (or a ``RunResult``) to deployment formats, verified for parity.

    ``tlzoo.export("runs/pneumonia", formats=["savedmodel", "onnx", "tflite"], out="exports/pneumonia")``

    Parity: Keras and every format run on ``heldout`` test images, a batch of one and the largest
    batch the run used; an export whose maximum absolute difference exceeds the format's bound
    (1e-4 for float32 formats) fails and writes nothing. ``test_metrics``: also recompute the test
    metrics from every format on the whole test split. ``samples`` test images and the Keras outputs
    on them are stored for ``verify``.
    """
    t_start = time.perf_counter()
    fmts = parse_formats(formats)
    run_dir = Path(getattr(run, "run_dir", run))
    out = Path(out) if out else run_dir.with_name(run_dir.name + "-export")
    if out.exists() and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} exists; pass --overwrite (overwrite=True) "
                          f"or choose another --out")
    if out.resolve() == run_dir.resolve() or run_dir.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"output directory {str(out)!r} would replace the run directory {str(run_dir)!r}; "
                          f"choose another --out")
    if heldout < 1 or samples < 1:
        raise ConfigError(f"heldout and samples must be >= 1, got {heldout} and {samples}")
    if ExportFormat.ONNX in fmts:
        check_opset(opset)
        _require("tf2onnx"), _require("onnx"), _require("onnxruntime")

    run_ = _open_run(run_dir)
    splits, fingerprint_ok = _read_data(run_, data)
    test = splits.test
    contract = _contract(run_, test.x)
    np_dtype = np.dtype(contract.dtype)
    settings = recorded(run_.config)
    seed, batch_size = int(settings.seed), int(settings.batch_size)
    order = np.random.default_rng(seed).permutation(len(test))
    cases = {
        f"heldout_{min(heldout, len(test))}": test.x[order[:heldout]].astype(np_dtype),
        "batch_1": test.x[order[:1]].astype(np_dtype),
        f"largest_batch_{batch_size}": test.x[np.resize(order, batch_size)].astype(np_dtype),
    }
    sample_x = test.x[order[:samples]].astype(np_dtype)
    keras_runner = KerasRunner(run_.model, contract)
    reference = {name: keras_runner(x) for name, x in cases.items()}
    say = print if verbose else (lambda *a, **k: None)
    if fingerprint_ok is False:
        say(f"note: the data read from {splits.source} does not match the run's fingerprint; parity is checked on "
            f"it anyway, and the model card records the mismatch", flush=True)

    with atomic_dir(out, overwrite) as tmp:
        artefacts: dict[str, dict[str, Any]] = {}
        scratch: dict[str, Path] = {}
        for fmt in fmts:
            t0 = time.perf_counter()
            _run_exporter(fmt, run_.model, contract, tmp, opset, scratch)
            artefacts[fmt.value] = {"path": fmt.artefact, "precision": fmt.precision, "bounds": fmt.bounds,
                                    "bytes": _size(tmp / fmt.artefact), "seconds": round(time.perf_counter() - t0, 2),
                                    **({"opset": opset} if fmt is ExportFormat.ONNX else {})}
            say(f"exported {fmt.value:12} -> {fmt.artefact} ({artefacts[fmt.value]['bytes'] / 1e6:.1f} MB, "
                f"{artefacts[fmt.value]['seconds']:.1f} s)", flush=True)
        shutil.rmtree(tmp / ".work", ignore_errors=True)

        runners = {fmt.value: load_runner(fmt, tmp / fmt.artefact, contract) for fmt in fmts}
        parity = run_parity(runners, cases, reference, {f.value: f.bounds for f in fmts}, contract)
        failures = [_parity_message(name, s, "Keras") for name, s in parity.items() if not s["passed"]]
        if failures:
            raise ParityError("parity check failed, nothing written: " + "; ".join(failures))

        metrics_by_format: dict[str, Any] = {}
        if test_metrics:
            for name, runner in {"keras": keras_runner, **runners}.items():
                batches = [runner(test.x[i:i + batch_size].astype(np_dtype)) for i in range(0, len(test), batch_size)]
                probs = {head: np.concatenate([b[head] for b in batches]) for head, *_ in contract.heads()}
                if contract.tasks:
                    thresholds = {t: float(c["threshold"]) for t, c in contract.tasks.items()}
                    metrics_by_format[name] = run_.plugin.evaluate(test.y, probs, threshold=thresholds)
                else:
                    metrics_by_format[name] = run_.plugin.evaluate(test.y, probs["probabilities"],
                                                                   threshold=contract.threshold)

        (tmp / "samples").mkdir()
        np.save(tmp / SAMPLE_INPUTS, sample_x, allow_pickle=False)
        np.savez(tmp / SAMPLE_OUTPUTS, **keras_runner(sample_x))

        exported_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        info = {
            "schema": EXPORT_SCHEMA,
            "tlzoo_version": __version__,
            "exported_at": exported_at,
            "run_dir": str(run_dir.resolve()),
            "model_name": run_.model.name,
            "contract": contract.to_dict(),
            "formats": artefacts,
            "parity": parity,
            "parity_inputs": {"source": splits.source, "split": "test", "selection": f"permutation(seed={seed})",
                              "cases": {k: int(len(v)) for k, v in cases.items()}},
            "samples": {"inputs": SAMPLE_INPUTS, "keras_outputs": SAMPLE_OUTPUTS, "n": int(len(sample_x))},
            "test_metrics": {"run": run_.metrics["test"], **metrics_by_format},
            "data_fingerprint_matches_run": fingerprint_ok,
            "versions": library_versions(),
        }
        write_json(tmp / EXPORT_FILE, info)

        from tlzoo.deploy.card import build_card, write_card

        card = build_card(run_dir=run_dir, config=run_.config, metrics=run_.metrics, history=run_.history,
                          plugin=run_.plugin, export_info=info)
        write_card(tmp, card)
        manifest = write_manifest(tmp)  # last: a directory without it is not a complete export
    say(f"export written to {out} ({len(manifest['files'])} files, {time.perf_counter() - t_start:.0f} s)", flush=True)
    return ExportResult(out, [f.value for f in fmts], parity, info["test_metrics"], card, manifest)


# ---------------------------------------------------------------- verify


def _read_export_info(root: Path) -> dict[str, Any]:
    try:
        info = json.loads((root / EXPORT_FILE).read_text())
        info["formats"], info["contract"]  # noqa: B018
    except FileNotFoundError:
        raise IntegrityError(f"{str(root)!r} has no {EXPORT_FILE}: not a tlzoo export") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{str(root / EXPORT_FILE)!r} is not a valid export description: {exc}") from None
    return info


def verify(export_dir: str | Path, *, parity: bool = True, num_threads: int | None = None) -> dict[str, Any]:
    """Re-check an export: every file's sha256 against ``manifest.json``, then every format's outputs
    on the stored sample inputs (as one batch and a batch of one) against the stored Keras outputs,
    within the format's bound. Raises ``IntegrityError`` / ``ParityError``; returns the figures."""
    root = Path(export_dir)
    manifest = check_manifest(root)
    info = _read_export_info(root)
    report: dict[str, Any] = {"export_dir": str(root), "files_checked": len(manifest["files"]), "hashes": "ok"}
    if not parity:
        return report
    contract = Contract.from_dict(info["contract"])
    x = np.load(root / SAMPLE_INPUTS, allow_pickle=False)
    with np.load(root / SAMPLE_OUTPUTS, allow_pickle=False) as stored:
        ref = {k: stored[k] for k in stored.files}
    cases = {f"samples_{len(x)}": x, "batch_1": x[:1]}
    reference = {f"samples_{len(x)}": ref, "batch_1": {k: v[:1] for k, v in ref.items()}}
    runners, bounds = {}, {}
    for name, entry in info["formats"].items():
        fmt = ExportFormat.parse(name)
        runners[fmt.value] = load_runner(fmt, root / entry["path"], contract, num_threads)
        bounds[fmt.value] = fmt.bounds  # this library's bounds, not the (editable) recorded ones
    results = run_parity(runners, cases, reference, bounds, contract)
    failures = [_parity_message(n, s, "the stored Keras outputs") for n, s in results.items() if not s["passed"]]
    if failures:
        raise ParityError(f"{str(root)!r} fails verification: " + "; ".join(failures))
    report["parity"] = results
    return report


# ---------------------------------------------------------------- helpers


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"this export needs the {module!r} package: pip install 'tlzoo[export]'") from None


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "tlzoo": __version__}
    for dist in ("tensorflow", "keras", "numpy", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["tflite_interpreter"] = tflite_interpreter_class()[1] if versions["ai-edge-litert"] else "tf.lite"
    return versions

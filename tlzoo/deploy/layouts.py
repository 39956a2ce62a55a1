"""Serving layouts: where an export puts its artefacts so that a model server can read the directory.

- ``plain``: ``saved_model/``, ``model.onnx``, ``model.tflite`` at the top of the export;
- ``tf-serving``: the SavedModel at ``saved_model/<version>/``, the version folder TensorFlow Serving
  expects under a model's base path (``--model_base_path=<export>/saved_model``);
- ``triton``: a Triton model repository, ``triton/<model>/config.pbtxt`` and
  ``triton/<model>/<version>/model.onnx``, served by the ONNX Runtime backend; ``config.pbtxt`` is
  generated from the ONNX graph's own inputs and outputs.

Neither server runs here: the layouts are checked by loading the SavedModel with TensorFlow and by
parsing ``config.pbtxt`` against (a subset of) Triton's ``ModelConfig`` schema and the ONNX graph.
Every other format stays where the plain layout puts it; ``export.json`` records every artefact's path.
"""
from __future__ import annotations

import functools
import re
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from tlzoo.deploy.formats import ExportFormat
from tlzoo.errors import ConfigError, ExportError, IntegrityError

TRITON_CONFIG = "config.pbtxt"
TRITON_PLATFORM = "onnxruntime_onnx"
# ONNX TensorProto element types -> Triton data types (the ones an export can hold).
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32", 7: "TYPE_INT64",
                9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64"}


class Layout(str, Enum):
    """How an export directory is laid out for a model server."""

    PLAIN = "plain"
    TF_SERVING = "tf-serving"
    TRITON = "triton"

    @classmethod
    def parse(cls, value: "str | Layout | None") -> "Layout":
        if value is None or isinstance(value, cls):
            return value or cls.PLAIN
        key = str(value).strip().lower().replace("_", "-")
        try:
            return cls({"tfserving": "tf-serving", "tensorflow-serving": "tf-serving"}.get(key, key))
        except ValueError:
            raise ConfigError(f"unknown export layout {str(value)!r}; choose from "
                              f"{', '.join(v.value for v in cls)}") from None

    @property
    def needs(self) -> ExportFormat | None:
        """The format the layout serves (it must be among the exported formats)."""
        return {Layout.TF_SERVING: ExportFormat.SAVEDMODEL, Layout.TRITON: ExportFormat.ONNX}.get(self)


def check_layout(layout: Layout, formats: Iterable[ExportFormat], version: int) -> None:
    """Up front, before any work: the layout's format is requested and the version is a positive integer."""
    formats = list(formats)
    if layout.needs is not None and layout.needs not in formats:
        raise ConfigError(f"the {layout.value} layout serves the {layout.needs.value} format, which was not "
                          f"requested (formats: {', '.join(f.value for f in formats)}); add {layout.needs.value} "
                          f"to --format")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"the model version must be a positive integer (a server's version folder), "
                          f"got {version!r}")


def model_dir_name(name: str) -> str:
    """A model name usable as a Triton model directory (letters, digits, '_', '.', '-')."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)).strip(".") or "model"
    return safe


def artefact_path(layout: Layout, fmt: ExportFormat, model_name: str, version: int) -> str:
    """Where the layout puts a format's artefact, relative to the export directory."""
    if layout is Layout.TF_SERVING and fmt is ExportFormat.SAVEDMODEL:
        return f"saved_model/{version}"
    if layout is Layout.TRITON and fmt is ExportFormat.ONNX:
        return f"triton/{model_dir_name(model_name)}/{version}/model.onnx"
    return fmt.artefact


def write_layout_files(layout: Layout, root: Path, paths: dict[str, str], model_name: str,
                       max_batch_size: int) -> dict[str, Any]:
    """The layout's own files (Triton: ``config.pbtxt``), after the artefacts were written; what
    ``export.json`` records of the layout."""
    record: dict[str, Any] = {"name": layout.value}
    if layout is Layout.TRITON:
        onnx_rel = paths[ExportFormat.ONNX.value]
        config_rel = f"{Path(onnx_rel).parent.parent.as_posix()}/{TRITON_CONFIG}"
        (root / config_rel).write_text(triton_config(root / onnx_rel, model_dir_name(model_name), max_batch_size))
        record.update(model_repository="triton", model_name=model_dir_name(model_name), config=config_rel,
                      version=int(Path(onnx_rel).parent.name), max_batch_size=max_batch_size)
    elif layout is Layout.TF_SERVING:
        sm_rel = paths[ExportFormat.SAVEDMODEL.value]
        record.update(model_base_path=Path(sm_rel).parent.as_posix(), version=int(Path(sm_rel).name))
    return record


# ---------------------------------------------------------------- Triton


def _graph_tensors(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ONNX graph's inputs and outputs: name, element type and dims (None where dynamic)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}

    def tensors(values: Any) -> list[dict[str, Any]]:
        return [{"name": v.name, "elem_type": v.type.tensor_type.elem_type,
                 "dims": [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]}
                for v in values if v.name not in initializers]

    return tensors(graph.input), tensors(graph.output)


def triton_tensor(t: dict[str, Any]) -> dict[str, Any]:
    """One tensor as Triton's config describes it with batching on: data type, dims without the batch
    dimension (-1 where dynamic); a tensor that is only the batch becomes dims [1] reshaped to []."""
    if t["elem_type"] not in TRITON_TYPES:
        raise ExportError(f"ONNX tensor {t['name']!r} has element type {t['elem_type']}, which the Triton layout "
                          f"does not map; export without --layout triton")
    if not t["dims"] or t["dims"][0] is not None:
        raise ExportError(f"ONNX tensor {t['name']!r} has shape {t['dims']}: Triton's batching needs a dynamic "
                          f"first (batch) dimension on every input and output")
    dims = [-1 if d is None else int(d) for d in t["dims"][1:]]
    out = {"name": t["name"], "data_type": TRITON_TYPES[t["elem_type"]], "dims": dims or [1]}
    if not dims:
        out["reshape"] = []
    return out


def triton_config(onnx_path: Path, model_name: str, max_batch_size: int) -> str:
    """``config.pbtxt`` (protobuf text format) for Triton's ONNX Runtime backend, from the graph itself."""
    if max_batch_size < 1:
        raise ConfigError(f"Triton's max_batch_size must be >= 1 for dynamic batching, got {max_batch_size}")
    inputs, outputs = _graph_tensors(onnx_path)

    def block(kind: str, tensors: list[dict[str, Any]]) -> list[str]:
        lines = [f"{kind} ["]
        for i, t in enumerate(triton_tensor(t) for t in tensors):
            lines += ["  {", f'    name: "{t["name"]}"', f"    data_type: {t['data_type']}",
                      f"    dims: [ {', '.join(map(str, t['dims']))} ]"]
            if "reshape" in t:  # a batch-only tensor: Triton's idiom for "no dims beyond the batch"
                lines.append("    reshape: { shape: [ ] }")
            lines.append("  }" + ("," if i < len(tensors) - 1 else ""))
        return lines + ["]"]

    lines = [f"# Written by tlzoo from the ONNX graph of {model_name}: Triton, ONNX Runtime backend.",
             f'name: "{model_name}"', f'platform: "{TRITON_PLATFORM}"',
             f"max_batch_size: {int(max_batch_size)}"]
    lines += block("input", inputs) + block("output", outputs)
    lines += ["dynamic_batching { }", ""]
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def _model_config_class() -> Any:
    """A protobuf message class for the part of Triton's ``inference.ModelConfig`` this layout writes,
    with Triton's field names and numbers, so ``config.pbtxt`` is parsed as Triton's own parser would
    (unknown fields and enum values are errors)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="tlzoo_triton_model_config.proto", package="inference",
                                             syntax="proto3")
    dtype = fdp.enum_type.add(name="DataType")
    for number, name in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                                   "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64",
                                   "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]):
        dtype.value.add(name=name, number=number)

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("ModelTensorReshape", ("shape", 1, F.TYPE_INT64, many, ""))
    message("ModelInput", ("name", 1, F.TYPE_STRING, one, ""),
            ("data_type", 2, F.TYPE_ENUM, one, ".inference.DataType"), ("dims", 4, F.TYPE_INT64, many, ""),
            ("reshape", 5, F.TYPE_MESSAGE, one, ".inference.ModelTensorReshape"))
    message("ModelOutput", ("name", 1, F.TYPE_STRING, one, ""),
            ("data_type", 2, F.TYPE_ENUM, one, ".inference.DataType"), ("dims", 3, F.TYPE_INT64, many, ""),
            ("reshape", 5, F.TYPE_MESSAGE, one, ".inference.ModelTensorReshape"))
    message("ModelDynamicBatching", ("preferred_batch_size", 1, F.TYPE_INT32, many, ""),
            ("max_queue_delay_microseconds", 2, F.TYPE_UINT64, one, ""))
    message("ModelConfig", ("name", 1, F.TYPE_STRING, one, ""), ("platform", 2, F.TYPE_STRING, one, ""),
            ("max_batch_size", 4, F.TYPE_INT32, one, ""), ("input", 5, F.TYPE_MESSAGE, many, ".inference.ModelInput"),
            ("output", 6, F.TYPE_MESSAGE, many, ".inference.ModelOutput"),
            ("dynamic_batching", 11, F.TYPE_MESSAGE, one, ".inference.ModelDynamicBatching"),
            ("backend", 17, F.TYPE_STRING, one, ""))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def read_triton_config(text: str) -> dict[str, Any]:
    """``config.pbtxt`` parsed by protobuf's text-format parser into the ModelConfig subset, as a dict
    (dynamic_batching present or not, reshape [] for batch-only tensors)."""
    from google.protobuf import text_format

    msg = _model_config_class()()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise IntegrityError(f"{TRITON_CONFIG} is not a valid Triton model configuration: {exc}") from None
    dtype_name = msg.DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_number

    def tensor(t: Any) -> dict[str, Any]:
        out = {"name": t.name, "data_type": dtype_name[t.data_type].name, "dims": list(t.dims)}
        if t.HasField("reshape"):
            out["reshape"] = list(t.reshape.shape)
        return out

    return {"name": msg.name, "platform": msg.platform, "max_batch_size": msg.max_batch_size,
            "input": [tensor(t) for t in msg.input], "output": [tensor(t) for t in msg.output],
            "dynamic_batching": msg.HasField("dynamic_batching")}


def check_triton_config(config_path: Path, onnx_path: Path) -> dict[str, Any]:
    """``config.pbtxt`` agrees with the ONNX graph beside it: every input and output by name, data type
    and dims, the ONNX Runtime platform, batching on; else ``IntegrityError``. Returns the parsed config."""
    config = read_triton_config(Path(config_path).read_text())
    inputs, outputs = _graph_tensors(onnx_path)
    problems = []
    if config["platform"] != TRITON_PLATFORM:
        problems.append(f"platform {config['platform']!r}, not {TRITON_PLATFORM!r}")
    if config["name"] != Path(config_path).parent.name:
        problems.append(f"name {config['name']!r} is not the model directory's {Path(config_path).parent.name!r}")
    if config["max_batch_size"] < 1 or not config["dynamic_batching"]:
        problems.append("batching is off (max_batch_size < 1 or no dynamic_batching)")
    for kind, graph in (("input", inputs), ("output", outputs)):
        want = [triton_tensor(t) for t in graph]
        if config[kind] != want:
            problems.append(f"{kind}s {config[kind]} differ from the graph's {want}")
    if problems:
        raise IntegrityError(f"{str(config_path)!r} does not match {str(onnx_path)!r}: {'; '.join(problems)}")
    return config

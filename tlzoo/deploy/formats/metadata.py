"""What a deployment engineer needs without tlzoo, inside every artefact: the class names
(``labels.txt``, one per line) and the contract (``tlzoo_contract.json``: input, preprocessing,
outputs, threshold, class names).

- SavedModel: both as SavedModel assets (``saved_model/assets/``), tracked by the loaded object
  (``tf.saved_model.load(path).labels_file.asset_path``);
- TFLite: both as associated files, the way MediaPipe Model Maker and tflite-support attach them: a
  zip archive appended to the flatbuffer (``zipfile.ZipFile("model.tflite").read("labels.txt")``);
  the interpreter ignores the bytes after the flatbuffer;
- ONNX: the contract in ``metadata_props`` (``tlzoo.deploy.formats.onnx``).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tlzoo.deploy.contract import Contract
from tlzoo.errors import ExportError

LABELS_FILE = "labels.txt"
CONTRACT_FILE = "tlzoo_contract.json"


def labels(contract: Contract) -> list[str]:
    """The class names, in output order; multi-task models: ``TASK/CLASS`` for every task's classes."""
    if contract.tasks:
        return [f"{task}/{name}" for task, t in contract.tasks.items() for name in t["class_names"]]
    return [str(name) for name in contract.class_names]


def metadata_files(contract: Contract) -> dict[str, bytes]:
    """{file name: content} of the files every format carries."""
    names = labels(contract)
    bad = [n for n in names if "\n" in n or "\r" in n]
    if bad:
        raise ExportError(f"class names must not contain line breaks ({LABELS_FILE} holds one per line): {bad!r}")
    return {LABELS_FILE: "".join(f"{n}\n" for n in names).encode(),
            CONTRACT_FILE: (json.dumps(contract.to_dict(), indent=2) + "\n").encode()}


def write_metadata(directory: Path, contract: Contract) -> dict[str, Path]:
    """The metadata files written into ``directory``; {file name: path}."""
    paths = {}
    for name, content in metadata_files(contract).items():
        paths[name] = directory / name
        paths[name].write_bytes(content)
    return paths


def append_to_tflite(path: Path, contract: Contract) -> None:
    """The metadata files as associated files of a .tflite model: a zip archive appended to it."""
    if zipfile.is_zipfile(path):  # a flatbuffer whose tail happens to read as a zip directory
        raise ExportError(f"{str(path)!r} already reads as a zip archive; its associated files cannot be attached")
    with zipfile.ZipFile(path, "a") as archive:  # a file that is no zip: the archive is appended to it
        for name, content in metadata_files(contract).items():
            archive.writestr(name, content)


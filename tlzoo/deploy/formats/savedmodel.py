"""SavedModel: a ``serving_default`` signature over the raw input; runs with TensorFlow alone. The class
names and the contract travel as assets: ``assets/labels.txt`` and ``assets/tlzoo_contract.json``."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.deploy.contract import SIGNATURE, Contract, serving_function
from tlzoo.deploy.formats.metadata import CONTRACT_FILE, LABELS_FILE, write_metadata
from tlzoo.deploy.runners import Runner
from tlzoo.errors import ExportError


def export_savedmodel(model: Any, contract: Contract, path: Path) -> None:
    """A SavedModel whose ``serving_default`` signature takes the raw input; needs only TensorFlow.

    A plain ``tf.Module`` holding the model's TensorFlow variables and the serving function
    (Keras' ``ExportArchive`` stored every variable twice here, doubling the size). The metadata files
    are tracked assets: copied into ``assets/`` and found again by ``tf.saved_model.load(path).labels_file``
    and ``.contract_file``."""
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]
    module.serve = tf.function(serving_function(model, contract), input_signature=[contract.tensor_spec()])
    with tempfile.TemporaryDirectory(prefix="tlzoo-assets-") as assets:  # save() copies them into assets/
        files = write_metadata(Path(assets), contract)
        module.labels_file = tf.saved_model.Asset(str(files[LABELS_FILE]))
        module.contract_file = tf.saved_model.Asset(str(files[CONTRACT_FILE]))
        try:
            tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve.get_concrete_function()})
        except Exception as exc:
            raise ExportError(f"cannot write the SavedModel of {model.name!r}: {type(exc).__name__}: {exc}") from exc


class SavedModelRunner(Runner):
    name = "savedmodel"

    def __init__(self, path: Path, contract: Contract, num_threads: int | None = None) -> None:
        import tensorflow as tf

        super().__init__(contract)
        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))  # keep a reference: the signature needs it alive
        self._fn = self._loaded.signatures[SIGNATURE]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self._fn(**{self.contract.input_name: self._tf.constant(x)})
        return {k: v.numpy() for k, v in out.items()}

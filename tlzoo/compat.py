"""The one module that touches private Keras and TensorFlow API.

Everything here leans on names Keras / TensorFlow do not promise to keep (``keras.src...``, members with a
leading underscore). Each use is checked against Keras 3.15 (3.15.1) and TensorFlow 2.21, says why no public
API does the job, and is a small function the rest of tlzoo imports, so a Keras upgrade breaks here and in
``tests/unit/test_compat.py`` instead of somewhere in a training run. ``PRIVATE_USES`` lists them all; the
test resolves each one on the installed Keras.

Private modules are imported inside the functions: importing this module does not import Keras.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

KERAS_CHECKED = "3.15"
TENSORFLOW_CHECKED = "2.21"


@dataclass(frozen=True)
class PrivateUse:
    """One private name tlzoo depends on, the function here that uses it, and why no public API does."""

    function: str  # the function in this module
    target: str  # "module:attribute" (resolvable without an instance) or "Class.attribute"
    why: str
    checked: str = KERAS_CHECKED


PRIVATE_USES: tuple[PrivateUse, ...] = (
    PrivateUse("keras_file_utils", "keras.src.utils.file_utils:get_file",
               "keras.applications look get_file up on this module at call time; replacing it there is the only "
               "way to route their weight downloads through the mirror (keras.utils.get_file is a separate binding)"),
    PrivateUse("save_weights_to_hdf5_group", "keras.src.legacy.saving.legacy_h5_format:save_weights_to_hdf5_group",
               "writes the h5 layout keras.applications load by layer name; Model.save_weights in Keras 3 only "
               "writes the .weights.h5 layout, which those loaders do not read"),
    PrivateUse("patch_tf2onnx", "keras.src.export.tf2onnx_lib:patch_tf2onnx",
               "Keras' own numpy>=2 fix-up of tf2onnx (what Model.export(format='onnx') runs); tlzoo converts its "
               "own serving function with tf2onnx and needs the same fix-up"),
    PrivateUse("unscale_loss_for_distribution", "keras.src.losses.loss:unscale_loss_for_distribution",
               "a custom train_step must report the loss the way Keras' own train_step does under a distribution "
               "strategy (the loss is pre-scaled by the number of replicas)"),
    PrivateUse("compute_loss", "Model._compute_loss",
               "Keras' train_step calls this wrapper, not compute_loss, so overrides of compute_loss without the "
               "training argument keep working; a custom train_step should do the same"),
    PrivateUse("loss_tracker", "Model._loss_tracker",
               "the Mean metric behind logs['loss']; a custom train_step updates it as Keras' own does"),
    PrivateUse("optimizer_variable_index", "Optimizer._get_variable_index",
               "maps a variable to its slot index inside update_step (per-variable learning-rate multipliers)"),
    PrivateUse("track_variable", "Layer._track_variable",
               "tracks an existing variable on a layer; add_weight always creates a new one"),
    PrivateUse("flatten_layers", "Layer._flatten_layers",
               "every nested layer, including those held by subclassed layers (model.layers is one level deep)"),
    PrivateUse("last_call_node", "Operation._inbound_nodes",
               "the call site of a nested model inside a functional graph; model.input/output raise once a "
               "model has been called more than once"),
    PrivateUse("functional_input_structure", "Functional._inputs_struct",
               "whether a functional model was built with inputs=[x] (call it with a list) or inputs=x"),
    PrivateUse("adopt_variable", "Variable._initialize",
               "a Keras variable whose storage is an existing tf.Variable (a restored SavedModel's) instead of a "
               "copy: the TF backend keeps a tf.Variable handed to _initialize as is"),
    PrivateUse("function_has_argument", "tf.function.function_spec",
               "whether a restored tf.function takes a training argument; TF has no public signature inspection "
               "for restored functions (function_spec; _function_spec in older TF)", TENSORFLOW_CHECKED),
)


# ---- weight files ---------------------------------------------------------------------------------------------
def keras_file_utils() -> Any:
    """The module whose ``get_file`` keras.applications call to fetch weights (replace its ``get_file``
    attribute to intercept them; restore it afterwards)."""
    from keras.src.utils import file_utils

    return file_utils


def save_weights_to_hdf5_group(group: Any, model: Any) -> None:
    """Write ``model``'s weights into an open ``h5py`` group in the layout keras.applications load."""
    from keras.src.legacy.saving import legacy_h5_format

    legacy_h5_format.save_weights_to_hdf5_group(group, model)


# ---- export ---------------------------------------------------------------------------------------------------
def patch_tf2onnx() -> bool:
    """Apply Keras' numpy>=2 patch to tf2onnx; False when this Keras has no such patch (nothing done)."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx as patch
    except ImportError:
        return False
    patch()
    return True


def functional_input_structure(model: Any) -> Any:
    """The ``inputs`` structure a functional model was built with (None for other models)."""
    return getattr(model, "_inputs_struct", None)


# ---- custom training steps ------------------------------------------------------------------------------------
def unscale_loss_for_distribution(value: Any) -> Any:
    """The loss as reported in logs, undoing the scaling by the number of replicas."""
    from keras.src.losses import loss as loss_module

    return loss_module.unscale_loss_for_distribution(value)


def compute_loss(model: Any, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                 training: bool = True) -> Any:
    """``model``'s total loss as Keras' own train_step computes it."""
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


def loss_tracker(model: Any) -> Any:
    """The metric behind ``logs["loss"]`` of a compiled model."""
    return model._loss_tracker


def optimizer_variable_index(optimizer: Any, variable: Any) -> int:
    """The index of ``variable`` in the optimizer's built variable list (inside ``update_step``)."""
    return optimizer._get_variable_index(variable)


# ---- layers and graphs ----------------------------------------------------------------------------------------
def track_variable(layer: Any, variable: Any) -> None:
    """Make an existing variable one of ``layer``'s weights."""
    layer._track_variable(variable)


def flatten_layers(model: Any, include_self: bool = False) -> list[Any]:
    """Every layer inside ``model``, recursively."""
    return list(model._flatten_layers(include_self=include_self))


def last_call_node(layer: Any) -> Any:
    """The node of ``layer``'s most recent call in a functional graph (``input_tensors``, ``output_tensors``)."""
    return layer._inbound_nodes[-1]


@functools.cache
def _adopted_variable_class() -> Any:
    import keras

    class AdoptedVariable(keras.Variable):
        def _initialize(self, value: Any) -> None:
            super()._initialize(value() if callable(value) else value)

    return AdoptedVariable


def adopt_variable(tf_variable: Any, *, trainable: bool, name: str) -> Any:
    """A ``keras.Variable`` backed by ``tf_variable`` itself (no copy), e.g. a restored SavedModel's."""
    return _adopted_variable_class()(
        initializer=lambda shape=None, dtype=None: tf_variable, shape=tuple(tf_variable.shape),
        dtype=tf_variable.dtype.name, trainable=trainable, name=name,
    )


def function_has_argument(fn: Any, name: str) -> bool:
    """Whether a (restored) ``tf.function`` takes an argument called ``name``."""
    spec = getattr(fn, "function_spec", None) or getattr(fn, "_function_spec", None)
    argspec = getattr(spec, "fullargspec", None)
    return bool(argspec) and (name in argspec.args or name in argspec.kwonlyargs)


def resolve(target: str) -> Any:
    """Look up a ``"module:attribute"`` target of ``PRIVATE_USES`` on the installed Keras (ImportError or
    AttributeError when it is gone). Members of classes are checked by calling their function."""
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)

"""TF-Hub / TF2 SavedModel backbones for Keras 3, fine-tunable by variable groups.

``tensorflow_hub.KerasLayer`` is a Keras 2 layer that Keras 3 models reject
(tensorflow/hub#903) and ``keras.layers.TFSMLayer`` is an opaque block. ``HubLayer`` loads the
SavedModel with ``tf.saved_model.load`` and adopts each restored ``tf.Variable`` as the storage
of a Keras variable of the layer: the optimizer's update of the Keras variable *is* the update
of the variable the SavedModel's functions read, so ``trainable=True`` really fine-tunes it,
and freeze stages can unfreeze it variable by variable (``group_members``).

Handles resolve as ``tlzoo.zoo.hub_catalogue`` says; the catalogue, handle resolution and specs live
there (no Keras needed to list or resolve them) and are re-exported here.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import keras

from tlzoo.compat import adopt_variable, flatten_layers, function_has_argument, track_variable
from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo.hub_catalogue import (  # noqa: F401  (the names older code imports from here)
    CATALOGUE,
    DEFAULT_GROUP_RULES,
    FAMILY,
    HUB_SUBDIR,
    META_FILE,
    PREFIX,
    HubModel,
    cache_key,
    catalogue_specs,
    is_batchnorm_variable,
    local_candidates,
    make_spec,
    mirror_path,
    read_meta,
    resolve_handle,
    scale_to_range,
    spec_for_ref,
)
from tlzoo.zoo.spec import BackboneSpec
from tlzoo.zoo.weights import ResolvedWeights, sha256_of_tree


def load_savedmodel(path: Path, handle: str) -> Any:
    import tensorflow as tf

    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:
        raise WeightsError(f"hub backbone {handle!r}: cannot load the SavedModel at {path}: "
                           f"{type(exc).__name__}: {exc}") from None


def _input_specs(fn: Any) -> list[Any]:
    """TensorSpecs of the first positional input of each traced concrete function."""
    specs = []
    for cf in getattr(fn, "concrete_functions", ()) or ():
        args, kwargs = cf.structured_input_signature
        first = args[0] if args else next(iter(kwargs.values()), None)
        if hasattr(first, "shape"):
            specs.append(first)
    return specs


@keras.saving.register_keras_serializable(package="tlzoo")
class HubLayer(keras.layers.Layer):
    """A TF-Hub handle, URL or local TF2 SavedModel as a Keras 3 layer.

    The config holds the handle; a saved ``model.keras`` reloads the SavedModel from it and then
    overwrites its variables with the archive's (fine-tuned) values. The SavedModel is called
    with ``training=True`` only while ``batchnorm_training`` is set (a SavedModel cannot keep
    its batch norm in inference mode on its own; see the BN trap in freeze.py).
    """

    def __init__(self, handle: str, trainable: bool = True, output_key: str | None = None,
                 signature: str | None = None, **kwargs: Any) -> None:
        super().__init__(trainable=trainable, **kwargs)
        self.handle, self.output_key, self.signature = handle, output_key, signature
        path, self.source = resolve_handle(handle)
        self.savedmodel_dir = path
        self._loaded = load_savedmodel(path, handle)
        self._func, self._signature_mode = self._pick_function(self._loaded)
        self._has_training = (not self._signature_mode) and function_has_argument(self._func, "training")
        self.batchnorm_training = False
        # The reusable format lists what may train; other SavedModels only have the variables' own flag.
        listed = getattr(self._loaded, "trainable_variables", None)
        trainable_refs = {v.ref() for v in listed} if listed is not None else None
        self._members: dict[str, keras.Variable] = {}
        with keras.name_scope(self.name, caller=self):
            for tf_var in self._restored_variables():
                base = member = tf_var.name.split(":")[0]
                while member in self._members:  # some exporters reuse names; keep each variable addressable
                    member = f"{base}_{len(self._members)}"
                kv = adopt_variable(  # the SavedModel's own variable, not a copy
                    tf_var,
                    trainable=tf_var.trainable and (trainable_refs is None or tf_var.ref() in trainable_refs),
                    name=member.replace("/", "."),
                )
                kv.trainable_by_default = kv.trainable  # what the SavedModel lets train
                track_variable(self, kv)
                self._members[member] = kv
        self.built = True

    def _pick_function(self, loaded: Any) -> tuple[Any, bool]:
        if self.signature:
            sigs = getattr(loaded, "signatures", {})
            if self.signature not in sigs:
                raise ConfigError(f"hub backbone {self.handle!r} has no signature {self.signature!r}; "
                                  f"it has {sorted(sigs)}")
            return sigs[self.signature], True
        if callable(loaded) and _input_specs(loaded.__call__):
            return loaded.__call__, False
        sigs = getattr(loaded, "signatures", {}) or {}
        if "serving_default" in sigs:
            return sigs["serving_default"], True
        raise ConfigError(
            f"hub backbone {self.handle!r}: the SavedModel at {self.savedmodel_dir} has no usable signature: no traced "
            f"__call__ (TF-Hub reusable format) and no 'serving_default' signature (it has {sorted(sigs) or 'none'})"
        )

    def _restored_variables(self) -> list[Any]:
        variables = list(getattr(self._loaded, "variables", []) or [])
        if not variables and self._signature_mode:
            variables = list(self._func.variables)
        return variables

    # ---- what the freeze schedule reads
    def group_members(self) -> list[str]:
        """The SavedModel's variable names, in its order: what layer-group rules match."""
        return list(self._members)

    def member_variables(self) -> dict[str, keras.Variable]:
        return dict(self._members)

    def input_spec_shapes(self) -> list[tuple[int | None, ...]]:
        fn = self._func
        if self._signature_mode:
            args, kwargs = fn.structured_input_signature
            specs = [s for s in list(args) + list(kwargs.values()) if hasattr(s, "shape")]
        else:
            specs = _input_specs(fn)
        return [tuple(s.shape.as_list()) for s in specs]

    def check_input_shape(self, shape: Sequence[int | None]) -> None:
        """Raise if the SavedModel was traced for no input of this (H, W, C)."""
        import tensorflow as tf

        accepted = self.input_spec_shapes()
        want = tf.TensorShape([None, *shape])
        if accepted and not any(tf.TensorShape(s).is_compatible_with(want) for s in accepted):
            raise ConfigError(
                f"hub backbone {self.handle!r} does not accept input of size {tuple(shape)}: its signature takes "
                f"{', '.join(str(s) for s in accepted)}; use --input-size matching it"
            )

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        import tensorflow as tf

        inputs = tf.cast(inputs, tf.float32)
        if self._signature_mode:
            out = self._func(inputs)
        elif self._has_training:
            out = self._func(inputs, training=bool(training and self.trainable and self.batchnorm_training))
        else:
            out = self._func(inputs)
        if isinstance(out, dict):
            if self.output_key:
                if self.output_key not in out:
                    raise ConfigError(f"hub backbone {self.handle!r} has no output {self.output_key!r}; "
                                      f"it has {sorted(out)}")
                return out[self.output_key]
            if len(out) != 1:
                raise ConfigError(f"hub backbone {self.handle!r} returns several outputs {sorted(out)}; set output_key")
            return next(iter(out.values()))
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "handle": self.handle, "output_key": self.output_key,
                "signature": self.signature}


def build_hub_model(handle: str, input_shape: Sequence[int | None] | None) -> keras.Model:
    """``Input(input_shape) -> HubLayer``: a backbone model like the keras.applications ones."""
    shape = tuple(input_shape or (None, None, 3))
    layer = HubLayer(handle, name="hub")
    layer.check_input_shape(shape)
    inputs = keras.Input(shape=shape, name="hub_input")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", handle.rstrip("/").split("/")[-1] or "savedmodel")
    return keras.Model(inputs, layer(inputs), name=f"hub_{safe}")


def find_hub_layers(model: keras.Model) -> list[HubLayer]:
    return [layer for layer in flatten_layers(model) if isinstance(layer, HubLayer)]


def build_hub_backbone(spec: BackboneSpec, weights: Any,
                       shape: Sequence[int | None]) -> tuple[keras.Model, ResolvedWeights]:
    """Build a hub backbone; its weights are the SavedModel's own."""
    if weights is None or (isinstance(weights, str) and weights not in (*spec.weight_names, "savedmodel")) \
            or isinstance(weights, os.PathLike):
        raise ConfigError(
            f"hub backbone {spec.name!r} carries its own weights in the SavedModel; use weights='imagenet' "
            f"(got {str(weights)!r}). For random init pick a keras.applications backbone with weights=None"
        )
    handle = spec.builder_kwargs["handle"]
    model = spec.builder(input_shape=shape)
    layer = find_hub_layers(model)[0]
    record = ResolvedWeights(file=handle, path=str(layer.savedmodel_dir), source=layer.source,
                             sha256=sha256_of_tree(layer.savedmodel_dir), origin=handle)
    return model, record

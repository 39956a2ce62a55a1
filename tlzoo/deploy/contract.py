"""The one input / output contract every export format honours, and the serving function that
implements it (the same function is exported to every format and run eagerly as the Keras reference).

Input (image plugins): ``uint8`` images ``[batch, height, width, channels]`` of any height and width,
gray (1 channel), gray + alpha (2), RGB (3) or RGBA (4). Inside the graph, by the rule the training
stream uses (``tlzoo.data.images``): alpha dropped; gray repeated into RGB, or RGB to gray by
ITU-R 601-2 luma, rounded; a bilinear resize to the run's resolution, rounded to 0-255. Runners
(``tlzoo.deploy.runners``) also take a gray batch ``[batch, height, width]``.
Time-series plugins take ``float32`` series ``[batch, time, features]`` of any length, named
``series``; the model's own layers scale them as in training.

Outputs, by kind of model:

- classifiers: ``probabilities`` (float32 ``[batch, k]``) and ``label`` (int64): ``probabilities >=
  threshold`` for binary / multilabel tasks, ``argmax`` for multiclass; multi-task models one pair
  per task (``NAME``, ``NAME_label``);
- anomaly detectors: ``raw_score`` (the detector's distance), ``score`` (normalised so that the
  threshold maps to 0.5, anomalib's convention: ``clip((raw - threshold) / (max - min) + 0.5, 0, 1)``
  with ``min`` / ``max`` the raw scores' range over the held-out normal images), ``label`` (``raw_score
  >= threshold``) and ``anomaly_map`` ``[batch, map_height, map_width]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INPUT_NAME = "image"
SERIES_INPUT = "series"  # time-series models: float32 [batch, time, features], any length
SIGNATURE = "serving_default"
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's "L" and the training stream

CLASSIFIER, ANOMALY = "classifier", "anomaly"
ANOMALY_OUTPUTS = ("score", "raw_score", "label", "anomaly_map")


@dataclass
class Contract:
    """What every exported format takes and returns."""

    dtype: str  # "uint8" for image data, else "float32"
    shape: list[int | None]  # the model's own input [None, H, W, C]: images are resized to it inside
    task: str
    threshold: float
    num_outputs: int
    class_names: list[str]
    input_name: str = INPUT_NAME
    kind: str = CLASSIFIER
    # Further float32 outputs a model returns by name beside its head (e.g. an anomaly map):
    # {name: {"dtype": "float32", "shape": [...]}}; passed through and checked for parity too.
    extra_outputs: dict[str, Any] = field(default_factory=dict)
    # Multi-task models: one head per task, {name: {"task", "threshold", "num_outputs", "class_names"}};
    # each returns its probabilities as output NAME and its label as NAME_label.
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Anomaly detectors: {"min": ..., "max": ...} of the raw scores on held-out normal images.
    score_range: dict[str, float] = field(default_factory=dict)

    @property
    def images(self) -> bool:
        """Image input: uint8 of any size and channel count, converted inside the graph."""
        return self.dtype == "uint8" and len(self.shape) == 4

    def input_shape(self) -> list[int | None]:
        """The exported input's shape: any height, width and channels for images."""
        return [None, None, None, None] if self.images else list(self.shape)

    def heads(self) -> list[tuple[str, str, str, float, int]]:
        """(score / probabilities output, label output, task, threshold, number of outputs) per head."""
        if self.tasks:
            return [(name, f"{name}_label", t["task"], float(t["threshold"]), int(t["num_outputs"]))
                    for name, t in self.tasks.items()]
        if self.kind == ANOMALY:
            return [("score", "label", "anomaly", 0.5, 1)]
        return [("probabilities", "label", self.task, float(self.threshold), self.num_outputs)]

    def tensor_spec(self) -> Any:
        import tensorflow as tf

        return tf.TensorSpec(self.input_shape(), getattr(tf, self.dtype), name=self.input_name)

    def outputs(self) -> dict[str, Any]:
        if self.kind == ANOMALY:
            lo, hi = self.score_range.get("min", 0.0), self.score_range.get("max", 0.0)
            return {
                "score": {"dtype": "float32", "shape": [None],
                          "rule": f"clip((raw_score - {self.threshold:g}) / ({hi:g} - {lo:g}) + 0.5, 0, 1)"},
                "raw_score": {"dtype": "float32", "shape": [None]},
                "label": {"dtype": "int64", "shape": [None], "rule": f"raw_score >= {self.threshold:g}"},
                **self.extra_outputs,
            }
        out: dict[str, Any] = {}
        for probs, label, task, threshold, k in self.heads():
            out[probs] = {"dtype": "float32", "shape": [None, k]}
            out[label] = {"dtype": "int64", "shape": [None, k] if task == "multilabel" else [None],
                          "rule": label_rule(probs, task, threshold, k)}
        return {**out, **self.extra_outputs}

    def to_dict(self) -> dict[str, Any]:
        preprocessing = (
            f"uint8 [batch, height, width, 1-4 channels], any size: alpha dropped, "
            f"{'RGB -> gray (ITU-R 601-2 luma, rounded)' if self.shape[-1] == 1 else 'gray -> RGB'}, "
            f"bilinear resize to {self.shape[1]}x{self.shape[2]} rounded to 0-255, then the model's own layers"
            if self.images else
            f"{self.dtype} [batch, time, {self.shape[-1]} features], any length: the model's own layers scale "
            f"the features as in training" if self.input_name == SERIES_INPUT else
            f"{self.dtype} {self.shape}, as the model was trained")
        return {"input": {"name": self.input_name, "dtype": self.dtype, "shape": self.input_shape(),
                          "model_shape": self.shape, "preprocessing": preprocessing},
                "outputs": self.outputs(), "kind": self.kind, "task": self.task, "threshold": self.threshold,
                "num_outputs": self.num_outputs, "class_names": self.class_names, "signature": SIGNATURE,
                **({"tasks": self.tasks} if self.tasks else {}),
                **({"score_range": self.score_range} if self.score_range else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Contract":
        tasks = d.get("tasks") or {}
        kind = d.get("kind", CLASSIFIER)
        own = set(ANOMALY_OUTPUTS) - {"anomaly_map"} if kind == ANOMALY else \
            {"probabilities", "label"} | {n for t in tasks for n in (t, f"{t}_label")}
        return cls(dtype=d["input"]["dtype"], shape=list(d["input"].get("model_shape", d["input"]["shape"])),
                   task=d["task"], threshold=float(d["threshold"]), num_outputs=int(d["num_outputs"]),
                   class_names=list(d["class_names"]), input_name=d["input"]["name"], kind=kind,
                   extra_outputs={k: v for k, v in d.get("outputs", {}).items() if k not in own}, tasks=tasks,
                   score_range=dict(d.get("score_range") or {}))


def label_rule(probs: str, task: str, threshold: float, k: int) -> str:
    if task == "multiclass" or (task == "binary" and k > 1):
        return f"argmax({probs})"
    return f"{probs} >= {threshold:g}"


def labels_from(probs: np.ndarray, task: str, threshold: float) -> np.ndarray:
    """A head's label output, computed in numpy exactly as the exported graph does."""
    probs = np.asarray(probs, np.float32)
    if task == "anomaly":
        return (probs >= np.float32(threshold)).astype(np.int64)
    if task == "multiclass" or (task == "binary" and probs.shape[-1] > 1):
        return probs.argmax(-1).astype(np.int64)
    if task == "binary":
        return (probs[:, 0] >= np.float32(threshold)).astype(np.int64)
    return (probs >= np.float32(threshold)).astype(np.int64)


def head_outputs(out: Any, contract: Contract) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's output -> ({head output name: tensor} per head, {other named outputs})."""
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
    from tlzoo.compat import functional_input_structure

    return [x] if isinstance(functional_input_structure(model), list) else x


def prepare_images(image: Any, contract: Contract) -> Any:
    """uint8 [N, H, W, 1-4] of any size -> float32 [N, h, w, c] at the model's size and channels, by the
    training stream's rule. Branch-free (gather and where, no conditionals), so that every converter
    (tf2onnx, TFLite, OpenVINO) keeps height, width and channels dynamic."""
    import tensorflow as tf

    _, h, w, c = contract.shape
    x = tf.cast(image, tf.float32)
    channels = tf.shape(x)[-1]
    colour = channels >= 3  # RGB or RGBA; else gray or gray + alpha
    rgb = tf.gather(x, tf.where(colour, tf.range(3), tf.zeros(3, tf.int32)), axis=-1)  # alpha dropped
    if c == 1:
        weights = tf.where(colour, tf.constant(LUMA, tf.float32), tf.constant((1.0, 0.0, 0.0)))
        x = tf.round(tf.reduce_sum(rgb * weights, axis=-1, keepdims=True))
    else:
        x = rgb
    x = tf.image.resize(x, (int(h), int(w)), method="bilinear")
    return tf.clip_by_value(tf.round(x), 0.0, 255.0)


def serving_function(model: Any, contract: Contract) -> Any:
    """raw input -> the contract's named outputs: the one function every format exports."""
    import tensorflow as tf

    def label(probs: Any, task: str, threshold: float, k: int) -> Any:
        if task == "multiclass" or (task == "binary" and k > 1):
            return tf.argmax(probs, axis=-1, output_type=tf.int64)
        if task == "binary":
            return tf.cast(probs[:, 0] >= tf.constant(threshold, tf.float32), tf.int64)
        return tf.cast(probs >= tf.constant(threshold, tf.float32), tf.int64)

    def serve(image: Any) -> dict[str, Any]:
        x = prepare_images(image, contract) if contract.images else tf.cast(image, tf.float32)
        heads, extras = head_outputs(model(model_inputs(model, x), training=False), contract)
        extras = {k: tf.cast(v, tf.float32) for k, v in extras.items()}
        if contract.kind == ANOMALY:
            raw = tf.reshape(tf.cast(heads["probabilities"], tf.float32), [-1])
            t, lo, hi = contract.threshold, contract.score_range["min"], contract.score_range["max"]
            score = tf.clip_by_value((raw - t) / max(hi - lo, 1e-12) + 0.5, 0.0, 1.0)
            return {"score": score, "raw_score": raw, "label": tf.cast(raw >= t, tf.int64), **extras}
        out = {}
        for probs_name, label_name, task, threshold, k in contract.heads():
            out[probs_name] = tf.cast(heads[probs_name], tf.float32)
            out[label_name] = label(out[probs_name], task, threshold, k)
        return {**out, **extras}

    return serve

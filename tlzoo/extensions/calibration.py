"""Calibration: expected calibration error, reliability diagrams and temperature scaling.

Temperature scaling (Guo et al., ICML 2017) divides the model's logits by one scalar T fitted on
the validation split by minimising the negative log-likelihood; it changes confidence, never the
ranking (ROC-AUC and argmax are unchanged). The fitted T becomes a layer of the saved model, so
every export returns the calibrated probabilities.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from scipy.optimize import minimize_scalar

from tlzoo.errors import ConfigError
from tlzoo.evaluation.text import fmt as _fmt

EPS = 1e-7
METHODS = ("temperature", "none")


def _logits(probs: np.ndarray, task: str) -> np.ndarray:
    """Logits recovered from probabilities (binary: log-odds; multiclass: log p, equal up to a constant)."""
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p) if task == "binary" else np.log(p)


def apply_temperature(probs: np.ndarray, temperature: float, task: str) -> np.ndarray:
    z = _logits(probs, task) / temperature
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(y: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Mean negative log-likelihood of the true labels."""
    y = np.asarray(y).astype(int).reshape(-1)
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    if task == "binary":
        p = p.reshape(-1)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def fit_temperature(y: np.ndarray, probs: np.ndarray, task: str) -> float:
    """The T in [0.05, 20] minimising the NLL of ``apply_temperature(probs, T)`` on (y, probs)."""
    if task not in ("binary", "multiclass"):
        raise ConfigError(f"temperature scaling needs a binary or multiclass task, got {task!r}")
    res = minimize_scalar(lambda log_t: nll(y, apply_temperature(probs, float(np.exp(log_t)), task), task),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def _confidence(y: np.ndarray, probs: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and whether the top label is right (binary: max(p, 1 - p))."""
    y = np.asarray(y).astype(int).reshape(-1)
    p = np.asarray(probs, np.float64)
    if task == "binary":
        p = p.reshape(-1)
        return np.maximum(p, 1 - p), ((p >= 0.5).astype(int) == y)
    return p.max(axis=-1), (p.argmax(axis=-1) == y)


def reliability(y: np.ndarray, probs: np.ndarray, task: str, n_bins: int = 15) -> dict[str, Any]:
    """Equal-width bins of top-label confidence: count, mean confidence and accuracy per bin, and
    ECE = sum over bins of (bin share) x |accuracy - confidence|."""
    conf, correct = _confidence(y, probs, task)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        if n:
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += n / len(conf) * abs(acc - mean_conf)
        else:
            acc = mean_conf = float("nan")
        bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": n, "accuracy": acc,
                     "confidence": mean_conf})
    return {"ece": float(ece), "bins": bins}


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, task: str, n_bins: int = 15) -> float:
    return reliability(y, probs, task, n_bins)["ece"]


def calibration_report(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray, task: str,
                       method: str = "temperature") -> tuple[float, dict[str, Any]]:
    """Fit on validation, measure before / after on validation and test: (temperature, report)."""
    if method not in METHODS:
        raise ConfigError(f"calibration must be one of {METHODS}, got {method!r}")
    temperature = fit_temperature(y_val, p_val, task) if method == "temperature" else 1.0
    report: dict[str, Any] = {"method": method, "temperature": temperature, "fitted_on": "val"}
    for split, y, p in (("val", y_val, p_val), ("test", y_test, p_test)):
        after = apply_temperature(p, temperature, task)
        report[split] = {"ece_before": expected_calibration_error(y, p, task),
                         "ece_after": expected_calibration_error(y, after, task),
                         "nll_before": nll(y, p, task), "nll_after": nll(y, after, task), "n": int(len(y))}
    return temperature, report


@keras.saving.register_keras_serializable(package="tlzoo")
class TemperatureScaling(keras.layers.Layer):
    """probabilities -> probabilities with logits divided by ``temperature`` (a fixed constant)."""

    def __init__(self, temperature: float = 1.0, task: str = "binary", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.task = float(temperature), task

    def call(self, probs: Any) -> Any:
        ops = keras.ops
        p = ops.clip(ops.cast(probs, "float32"), EPS, 1 - EPS)
        if self.task == "binary":
            # log(1 - p), not log1p: tf2onnx has no Log1p
            return ops.sigmoid((ops.log(p) - ops.log(1.0 - p)) / self.temperature)
        return ops.softmax(ops.log(p) / self.temperature, axis=-1)

    def compute_output_spec(self, probs: Any) -> Any:
        return keras.KerasTensor(probs.shape, dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature, "task": self.task}


def calibrated_model(model: keras.Model, temperature: float, task: str) -> keras.Model:
    """``model`` with a TemperatureScaling layer on its (single) probabilities output."""
    out = TemperatureScaling(temperature, task, name="calibrated_probabilities")(model.outputs[0])
    return keras.Model(model.inputs, out, name=model.name)


def markdown_lines(cal: dict[str, Any] | None) -> list[str]:
    if not cal:
        return []
    lines = ["## Calibration and decision threshold", ""]
    if cal.get("per_task"):  # multi-task: one temperature per task
        lines.append("Probabilities are temperature-scaled per task (fitted on the validation split; layers of the "
                     "exported model).")
        lines += ["", "| task | T | ECE test before | ECE test after |", "|---|---|---|---|"]
        lines += [f"| {t} | {_fmt(r['temperature'])} | {_fmt(r['test']['ece_before'])} "
                  f"| {_fmt(r['test']['ece_after'])} |"
                  for t, r in cal["per_task"].items()]
    elif cal.get("method") == "temperature":
        lines.append(f"Probabilities are temperature-scaled (T = {cal['temperature']:.4f}, fitted on the validation "
                     "split; a layer of the exported model, so every format returns them).")
        lines += ["", "| split | ECE before | ECE after | NLL before | NLL after |", "|---|---|---|---|---|"]
        lines += [f"| {split} | {_fmt(cal[split]['ece_before'])} | {_fmt(cal[split]['ece_after'])} | "
                  f"{_fmt(cal[split]['nll_before'])} | {_fmt(cal[split]['nll_after'])} |"
                  for split in ("val", "test") if split in cal]
    else:
        lines.append("Probabilities are not recalibrated.")
    # how the threshold was set (fixed, or chosen on the validation split) is stated under Known limitations
    lines += ["", f"Decision rule: {cal.get('decision')!s} (threshold {_fmt(cal.get('threshold'))}).", ""]
    return lines


# ---------------------------------------------------------------- extension

from tlzoo.extensions.base import Extension, Run  # noqa: E402


class Calibration(Extension):
    """Temperature scaling fitted on the validation split, carried into the saved model as a layer (so
    every export returns calibrated probabilities), with ``reliability.png``. On by default; binary and
    multiclass heads (multi-task heads calibrate per task in ``tlzoo.model.multitask``)."""

    name = "calibration"
    card_key = "calibration"
    custom_recipe = True  # on by default; a plugin's own recipe calibrates (or not) itself

    def on_predictions(self, run: Run, p_val: Any, p_test: Any) -> tuple[Any, Any]:
        from tlzoo.evaluation import plots

        task, data = run.plugin.task, run.data
        if task not in ("binary", "multiclass"):
            return p_val, p_test
        temperature, run.state["calibration"] = calibration_report(data.val.y, p_val, data.test.y, p_test, task,
                                                                   self.cfg.calibration)
        layer = TemperatureScaling(temperature, task)
        raw_val = p_val
        p_val, p_test = np.asarray(layer(p_val)), np.asarray(layer(p_test))  # what every export returns
        plots.reliability_diagram({"val, before": (data.val.y, raw_val), "val, after": (data.val.y, p_val),
                                   "test, after": (data.test.y, p_test)}, task, run.run_dir / "reliability.png",
                                  title=f"temperature {temperature:.3f} (fitted on val)")
        run.model = calibrated_model(run.model, temperature, task)
        return p_val, p_test

    @classmethod
    def card_section(cls, config: dict[str, Any], metrics: dict[str, Any], contract: dict[str, Any]) -> Any:
        return {"decision": metrics.get("threshold_policy"), "threshold": contract["threshold"],
                **(metrics.get("calibration") or {"method": "none"})}

    @classmethod
    def card_markdown(cls, section: Any) -> list[str]:
        return markdown_lines(section)

"""Parity: every format's outputs against the Keras model's, on the same inputs. The bounds cover the
values (max / mean absolute difference of each head's probabilities or score) and the labels
(``min_agreement``: 1.0 for float formats). The parity inputs include the held-out samples the
labels hang on most narrowly, so that a moved threshold or a swapped class cannot pass."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tlzoo.deploy.contract import ANOMALY, Contract
from tlzoo.deploy.runners import Runner


def borderline(outputs: dict[str, np.ndarray], contract: Contract, n: int) -> np.ndarray:
    """Indices of the ``n`` samples nearest a label change: binary / multilabel / anomaly, the
    probabilities (score) nearest the threshold, half from each side where there are; multiclass,
    the smallest top-2 margin. ``outputs``: the Keras outputs on the candidates."""
    margins = []
    for probs_name, _, task, threshold, k in contract.heads():
        p = np.asarray(outputs[probs_name], np.float64).reshape(len(outputs[probs_name]), -1)
        if task == "multiclass" or (task == "binary" and k > 1):
            top2 = np.sort(p, axis=-1)[:, -2:]
            margins.append(top2[:, 1] - top2[:, 0])
        else:
            margins.append(np.abs(p - threshold).min(-1))
    margin = np.min(margins, axis=0)
    probs_name, _, task, threshold, k = contract.heads()[0]
    if task in ("binary", "anomaly") and k == 1:  # both sides of the threshold
        p = np.asarray(outputs[probs_name], np.float64).reshape(-1)
        above, below = np.flatnonzero(p >= threshold), np.flatnonzero(p < threshold)
        above, below = above[np.argsort(margin[above])], below[np.argsort(margin[below])]
        take_above = min(len(above), max(n // 2, n - len(below)))
        return np.concatenate([above[:take_above], below[:n - take_above]]).astype(int)
    return np.argsort(margin, kind="stable")[:n]


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
    diff = np.concatenate(diffs) if n else np.zeros(1)
    out = {"n": int(n),
           "max_abs_diff": float(diff.max()) if finite else float("inf"),
           "mean_abs_diff": float(diff.mean()) if finite else float("inf"),
           "agreement": float(same.mean()) if n else 1.0, "label_dtype": str(np.asarray(got[heads[0][1]]).dtype)}
    # further outputs: reported, not bounded
    for name in sorted(set(reference) - {name for pair in heads for name in pair}):
        ref_e, got_e = np.asarray(reference[name], np.float64), got.get(name)
        ok = got_e is not None and np.shape(got_e) == ref_e.shape and bool(np.isfinite(got_e).all())
        out[f"{name}_max_abs_diff"] = (float(np.abs(np.asarray(got_e, np.float64) - ref_e).max()) if n else 0.0) \
            if ok else float("inf")
    return out


def summarise(cases: dict[str, dict[str, Any]], bounds: dict[str, float]) -> dict[str, Any]:
    """Pool the cases of one format, and check the format's bounds (``max_abs_diff`` and
    ``mean_abs_diff`` at most, ``min_agreement`` at least)."""
    n = max(sum(c["n"] for c in cases.values()), 1)
    pooled = {
        "max_abs_diff": max(c["max_abs_diff"] for c in cases.values()),
        "mean_abs_diff": sum(c["mean_abs_diff"] * c["n"] for c in cases.values()) / n,
        "agreement": sum(c["agreement"] * c["n"] for c in cases.values()) / n,
    }
    failed = {}
    for key, bound in bounds.items():
        if key == "min_agreement":
            if not pooled["agreement"] >= bound:
                failed[key] = pooled["agreement"]
        elif not pooled[key] <= bound:
            failed[key] = pooled[key]
    errors = [f"{name}: {c['error']}" for name, c in cases.items() if "error" in c]
    return {**pooled, "n": sum(c["n"] for c in cases.values()), "bounds": bounds,
            "passed": not failed and not errors, "failed": failed, "errors": errors, "cases": cases}


def describe_bounds(bounds: dict[str, float]) -> str:
    """``max_abs_diff <= 0.8, min_agreement >= 0.75``: the bounds as they are checked."""
    return ", ".join(f"{k} {'>=' if k == 'min_agreement' else '<='} {v:g}" for k, v in bounds.items())


def parity_message(fmt: str, summary: dict[str, Any], against: str) -> str:
    if summary["errors"]:
        return f"{fmt}: {'; '.join(summary['errors'])}"
    worst = max(summary["cases"].items(), key=lambda kv: kv[1]["max_abs_diff"])
    parts = []
    for key, value in summary["failed"].items():
        if key == "min_agreement":
            parts.append(f"label agreement {value:.1%} < {summary['bounds'][key]:.1%}")
        else:
            parts.append(f"{key.replace('_', ' ')} {value:.3g} > bound {summary['bounds'][key]:g}")
    return (f"{fmt} differs from {against}: {', '.join(parts)} "
            f"(worst case {worst[0]!r}, label agreement {summary['agreement']:.1%})")


def run_parity(runners: dict[str, Runner], cases: dict[str, np.ndarray], reference: dict[str, dict[str, np.ndarray]],
               bounds: dict[str, dict[str, float]], contract: Contract) -> dict[str, Any]:
    # anomaly detectors: bounded on the raw score, as the Keras model gives it (the normalised score
    # stretches float32 noise by the threshold over the normal scores' range; it is reported as well)
    heads = [("raw_score", "label")] if contract.kind == ANOMALY else \
        [(probs, label) for probs, label, *_ in contract.heads()]
    out = {}
    for name, runner in runners.items():
        per_case = {case: compare(reference[case], runner(x), heads) for case, x in cases.items()}
        out[name] = summarise(per_case, bounds[name])
    return out

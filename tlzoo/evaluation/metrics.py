"""Evaluation metrics on numpy predictions (what ends up in ``metrics.json``)."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from tlzoo.errors import ConfigError


def midway(scores: np.ndarray, threshold: float) -> float:
    """The middle of the gap in which ``threshold`` sits among the validation ``scores``: every
    threshold in (highest score below it, lowest score at or above it] makes the same ``score >=
    threshold`` decisions on them, and a threshold placed on a score itself would leave a sample that
    scores the same (a duplicate image, a saturated probability) to the last bit another runtime
    computes differently. Where the gap is too narrow for a middle that survives float32 (exported
    models compare in float32), the lowest score at or above it, as before."""
    s = np.unique(np.asarray(scores, np.float64).reshape(-1))
    above, below = s[s >= threshold], s[s < threshold]
    hi = float(above[0]) if len(above) else max(float(threshold), 1.0)
    lo = float(below[-1]) if len(below) else min(0.0, hi)
    mid = lo + (hi - lo) / 2
    if lo < mid <= hi and np.float32(lo) < np.float32(mid) <= np.float32(hi):
        return mid
    return hi if len(above) else float(threshold)


def youden_threshold(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (chosen on validation data)."""
    fpr, tpr, thr = skm.roc_curve(y_true, probs.reshape(-1))
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(midway(probs, thr[best]), 1e-6, 1 - 1e-6))


def threshold_for_max_fpr(y_true: np.ndarray, probs: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on (y_true, probs) stays within ``max_fpr``
    (set midway in its gap between validation scores, as every rule here)."""
    if not 0 <= max_fpr < 1:
        raise ConfigError(f"a maximum false-positive rate must be in [0, 1), got {max_fpr}")
    neg = np.sort(probs.reshape(-1)[y_true.reshape(-1) == 0])[::-1]
    k = int(np.floor(max_fpr * len(neg)))  # negatives allowed at or above the threshold
    if k >= len(neg):
        return midway(probs, neg[-1])
    return midway(probs, min(np.nextafter(neg[k], np.inf), 1.0))


def threshold_for_sensitivity(y_true: np.ndarray, probs: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on (y_true, probs) reaches ``target``."""
    if not 0 < target <= 1:
        raise ConfigError(f"a target sensitivity must be in (0, 1], got {target}")
    pos = np.sort(probs.reshape(-1)[y_true.reshape(-1) == 1])  # ascending
    k = int(np.ceil(target * len(pos)))  # positives that must score at or above the threshold
    return midway(probs, pos[len(pos) - k])


def threshold_for_cost(y_true: np.ndarray, probs: np.ndarray, cost_ratio: float) -> float:
    """The threshold minimising ``cost_ratio`` x false negatives + false positives on (y_true, probs):
    ``cost_ratio`` is what a missed positive costs relative to a false alarm."""
    if not cost_ratio > 0:
        raise ConfigError(f"a cost ratio (false negative : false positive) must be > 0, got {cost_ratio}")
    y, p = y_true.reshape(-1).astype(int), probs.reshape(-1)
    candidates = np.unique(np.concatenate([p, [1.0]]))
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    fn = np.searchsorted(pos, candidates, side="left")  # positives scoring below each candidate
    fp = len(neg) - np.searchsorted(neg, candidates, side="left")  # negatives at or above it
    return midway(p, candidates[int(np.argmin(cost_ratio * fn + fp))])


POLICIES = {"sensitivity": threshold_for_sensitivity, "fpr": threshold_for_max_fpr, "cost": threshold_for_cost}


def choose_threshold(policy: Any, y_val: np.ndarray, p_val: np.ndarray) -> float:
    """A binary decision threshold from a policy, chosen on validation data: a number in (0, 1),
    ``"youden"``, ``"sensitivity:0.95"`` (the highest threshold reaching that sensitivity),
    ``"fpr:0.01"`` (the lowest threshold within that false-positive rate) or ``"cost:5"`` (a missed
    positive costs five false alarms)."""
    if policy == "youden":
        return youden_threshold(y_val, p_val)
    if isinstance(policy, str) and ":" in policy:
        kind, _, value = policy.partition(":")
        if kind not in POLICIES:
            raise ConfigError(f"threshold policy {kind!r} unknown; use youden, a number, or one of "
                              f"{[k + ':X' for k in POLICIES]}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"threshold policy {policy!r} needs a number after ':'") from None
        return POLICIES[kind](y_val, p_val, number)
    try:
        t = float(policy)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number in (0, 1), 'youden', 'sensitivity:X', 'fpr:X' or 'cost:X', "
                          f"got {policy!r}") from None
    if not 0 < t < 1:
        raise ConfigError(f"threshold must be in (0, 1), got {t}")
    return t


def binary_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    y = y_true.astype(int).reshape(-1)
    p = probs.astype(float).reshape(-1)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "accuracy": float((tp + tn) / len(y)),
        # at 0.5 whatever the chosen threshold: what MedMNIST and most papers report as ACC
        "accuracy_at_0.5": float(((p >= 0.5).astype(int) == y).mean()),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "precision": float(tp / (tp + fp)) if tp + fp else float("nan"),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "threshold": float(threshold),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "n": int(len(y)),
    }


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    y = y_true.astype(int).reshape(-1)
    k = probs.shape[1]
    pred = probs.argmax(1)
    out: dict[str, Any] = {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(skm.f1_score(y, pred, average="macro", labels=list(range(k)), zero_division=0)),
        "per_class_recall": [float(r) for r in skm.recall_score(y, pred, average=None, labels=list(range(k)),
                                                                zero_division=0)],
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=list(range(k))).tolist(),
        "n": int(len(y)),
    }
    if len(np.unique(y)) == k:
        # two classes: scikit-learn's binary ROC-AUC takes the positive class's column (the [N, 2] softmax
        # is refused: "y should be a 1d array"); one-vs-rest on two classes is that same number
        out["roc_auc_ovr"] = float(skm.roc_auc_score(y, probs[:, 1]) if k == 2 else
                                   skm.roc_auc_score(y, probs, multi_class="ovr", labels=list(range(k))))
    return out


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    pred = (probs >= threshold).astype(int)
    per_label = []
    for j in range(y_true.shape[1]):
        col = y_true[:, j]
        per_label.append(float(skm.roc_auc_score(col, probs[:, j])) if 0 < col.sum() < len(col) else float("nan"))
    return {
        "macro_roc_auc": float(np.nanmean(per_label)),
        "per_label_roc_auc": per_label,
        "micro_f1": float(skm.f1_score(y_true, pred, average="micro", zero_division=0)),
        "threshold": float(threshold),
        "n": int(len(y_true)),
    }

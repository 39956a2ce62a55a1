"""What fraud teams read: PR-AUC, ROC-AUC, recall at a fixed false-positive rate, precision in the
top-k alerts, and a decision threshold set from a false-positive budget."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from tlzoo import metrics as metrics_lib
from tlzoo.errors import ConfigError


def threshold_for_fp_budget(y: np.ndarray, p: np.ndarray, budget: float) -> float:
    """The lowest threshold whose false-positive rate on (y, p) stays within ``budget``."""
    if not 0 <= budget < 1:
        raise ConfigError(f"fp_budget must be a false-positive rate in [0, 1), got {budget}")
    neg = np.sort(p.reshape(-1)[y.reshape(-1) == 0])[::-1]
    k = int(np.floor(budget * len(neg)))  # negatives allowed above the threshold
    if k >= len(neg):
        return float(neg[-1])
    return float(min(np.nextafter(neg[k], np.inf), 1.0))


def recall_at_fpr(y: np.ndarray, p: np.ndarray, fpr_max: float) -> float:
    fpr, tpr, _ = skm.roc_curve(y.reshape(-1), p.reshape(-1))
    return float(tpr[fpr <= fpr_max].max())


def precision_at_k(y: np.ndarray, p: np.ndarray, k: int) -> float:
    k = min(int(k), len(y))
    top = np.argsort(-p.reshape(-1), kind="stable")[:k]
    return float(y.reshape(-1)[top].mean())


def fraud_metrics(y: np.ndarray, p: np.ndarray, *, threshold: float, fpr: float, top_k: int) -> dict[str, Any]:
    out = metrics_lib.binary_metrics(y, p, threshold)
    (tn, fp), _ = out["confusion_matrix"]
    out.update({
        f"recall_at_fpr_{fpr:g}": recall_at_fpr(y, p, fpr),
        f"precision_at_top_{top_k}": precision_at_k(y, p, top_k),
        "false_positive_rate": float(fp / (tn + fp)) if tn + fp else float("nan"),
        "positives": int(y.sum()),
    })
    return out

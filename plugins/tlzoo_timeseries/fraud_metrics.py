"""What fraud teams read: PR-AUC, ROC-AUC, recall at a fixed false-positive rate, precision in the
top-k alerts, and a decision threshold set from a false-positive budget."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from tlzoo.evaluation import metrics as metrics_lib


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

"""Evaluation metrics on numpy predictions (what ends up in ``metrics.json``)."""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def youden_threshold(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (chosen on validation data)."""
    fpr, tpr, thr = skm.roc_curve(y_true, probs.reshape(-1))
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thr[best], 1e-6, 1 - 1e-6))


def binary_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    y = y_true.astype(int).reshape(-1)
    p = probs.astype(float).reshape(-1)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "accuracy": float((tp + tn) / len(y)),
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
        "per_class_recall": [float(r) for r in skm.recall_score(y, pred, average=None, labels=list(range(k)), zero_division=0)],
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=list(range(k))).tolist(),
        "n": int(len(y)),
    }
    if len(np.unique(y)) == k:
        out["roc_auc_ovr"] = float(skm.roc_auc_score(y, probs, multi_class="ovr", labels=list(range(k))))
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

"""Test metrics as users compare them with published tables."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tlzoo.evaluation.metrics import binary_metrics, multiclass_metrics


def test_binary_accuracy_at_half_is_reported_beside_the_chosen_threshold():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.35, 0.6, 0.4, 0.7, 0.9])
    m = binary_metrics(y, p, threshold=0.3)
    assert m["threshold"] == 0.3 and m["accuracy"] == pytest.approx(4 / 6)  # 0.35 and 0.6 called positive
    assert m["accuracy_at_0.5"] == pytest.approx(4 / 6)  # 0.6 and 0.4 wrong at 0.5
    assert binary_metrics(y, p, threshold=0.65)["accuracy_at_0.5"] == m["accuracy_at_0.5"]


def test_a_multiclass_softmax_over_two_classes_gets_its_roc_auc():
    """A multiclass plugin given two-class data: ROC-AUC of the second column (scikit-learn refuses the
    [N, 2] softmax for a two-class y: "y should be a 1d array")."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    logits = rng.normal(size=(150, 2)) + np.eye(2)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = multiclass_metrics(y, probs)
    assert m["roc_auc_ovr"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
    assert 0.5 < m["roc_auc_ovr"] < 1 and m["n"] == 150

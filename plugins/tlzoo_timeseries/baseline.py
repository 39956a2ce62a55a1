"""The baseline fraud teams compare against: gradient-boosted trees on the same split and features."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tlzoo.data import DataSplits


def flat(x: np.ndarray) -> np.ndarray:
    """Windows (N, T, F) -> (N, T*F): every event's features of the window, as trees take them."""
    return x.reshape(len(x), -1)


def gbm_baseline(data: DataSplits, *, seed: int, choose_threshold: Callable[[np.ndarray, np.ndarray], float],
                 evaluate: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """HistGradientBoostingClassifier (scikit-learn defaults, seeded) on the training split; the
    threshold is chosen on validation by the plugin's own rule, and evaluated on the same test split."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    t0 = time.perf_counter()
    gbm = HistGradientBoostingClassifier(random_state=seed)
    gbm.fit(flat(data.train.x), data.train.y)
    p_val = gbm.predict_proba(flat(data.val.x))[:, 1]
    p_test = gbm.predict_proba(flat(data.test.x))[:, 1]
    threshold = choose_threshold(data.val.y, p_val)
    return {"model": "sklearn HistGradientBoostingClassifier (defaults)", "seconds": round(time.perf_counter() - t0, 2),
            "test": evaluate(data.test.y, p_test, threshold=threshold),
            "val": evaluate(data.val.y, p_val, threshold=threshold), "test_probs": p_test}


def pr_curves(y: np.ndarray, scores: dict[str, np.ndarray], path: Path, title: str = "test precision-recall") -> None:
    from sklearn import metrics as skm

    from tlzoo.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, p in scores.items():
        prec, rec, _ = skm.precision_recall_curve(y, p)
        ax.step(rec, prec, where="post", label=f"{name} (PR-AUC {skm.average_precision_score(y, p):.3f})")
    ax.axhline(float(np.mean(y)), color="grey", lw=0.8, ls=":", label=f"prevalence {np.mean(y):.3f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

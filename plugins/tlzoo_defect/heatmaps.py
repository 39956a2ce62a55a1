"""PNG figures of anomaly mode beyond the shared ones in ``tlzoo.evaluation.plots`` (the heat-map overlays
live there, shared with ``tlzoo explain``): score histograms."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def score_histogram(val_scores: np.ndarray, test_scores: np.ndarray, y_test: np.ndarray, threshold: float,
                    path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.linspace(min(test_scores.min(), val_scores.min()), max(test_scores.max(), val_scores.max()), 40)
    ax.hist(val_scores, bins, alpha=0.5, label="held-out normals (threshold set)", density=True)
    ax.hist(test_scores[y_test == 0], bins, alpha=0.5, label="test normals", density=True)
    ax.hist(test_scores[y_test == 1], bins, alpha=0.5, label="test defective", density=True)
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("image anomaly score")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

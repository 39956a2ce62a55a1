"""PNG figures of anomaly mode: heat-map overlays and score histograms."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def overlay_grid(images: Sequence[np.ndarray], maps: Sequence[np.ndarray], titles: Sequence[str], path: Path,
                 vmin: float | None = None, vmax: float | None = None) -> None:
    """Each image beside itself overlaid with its anomaly map (one shared colour scale)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    for j, (im, amap, title) in enumerate(zip(images, maps, titles)):
        im = np.asarray(im)
        shown = im[..., 0] if im.shape[-1] == 1 else im
        cmap = "gray" if im.shape[-1] == 1 else None
        axes[0, j].imshow(shown, cmap=cmap)
        axes[0, j].set_title(title, fontsize=7)
        axes[1, j].imshow(shown, cmap=cmap)
        layer = axes[1, j].imshow(amap, cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.colorbar(layer, ax=axes[1, :].tolist(), shrink=0.8, label="patch distance")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


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

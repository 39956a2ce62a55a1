"""PNG figures written next to the numbers: learning curves, confusion matrix, ROC, heat-map overlays."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(history: Sequence[dict[str, Any]], monitor: str | Sequence[str], path: Path) -> None:
    """Loss and the monitor metric(s) (one panel each; a multi-task run: one per task) per epoch,
    train and validation, with stage boundaries."""
    epochs = np.arange(1, len(history) + 1)
    keys = ["loss", *[m for m in ([monitor] if isinstance(monitor, str) else monitor) if m != "loss"]]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [row.get(prefix + key, np.nan) for row in history]
            ax.plot(epochs, values, style, marker="o", ms=3, label=("val " if prefix else "train ") + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        for i in range(1, len(history)):
            if history[i]["stage"] != history[i - 1]["stage"]:
                ax.axvline(i + 0.5, color="grey", lw=0.8)
                ax.text(i + 0.6, ax.get_ylim()[1], history[i]["stage"], va="top", fontsize=8, color="grey")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = "") -> None:
    cm = np.asarray(matrix)
    k = len(cm)
    fig, ax = plt.subplots(figsize=(2.2 + 0.6 * k, 1.8 + 0.6 * k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    names = list(class_names) or [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def roc_curve(y_true: np.ndarray, probs: np.ndarray, path: Path, title: str = "") -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc

    fpr, tpr, _ = sk_roc(y_true, probs)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y_true, probs):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], task: str, path: Path,
                        title: str = "", n_bins: int = 15) -> None:
    """Accuracy against top-label confidence per bin, one line per (labels, probabilities) pair."""
    from tlzoo.extensions.calibration import reliability

    fig, ax = plt.subplots(figsize=(4.4, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for name, (y, p) in curves.items():
        rel = reliability(y, p, task, n_bins)
        conf = [b["confidence"] for b in rel["bins"] if b["n"]]
        acc = [b["accuracy"] for b in rel["bins"] if b["n"]]
        ax.plot(conf, acc, marker="o", ms=3, label=f"{name} (ECE {rel['ece']:.3f})")
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.45 if task == "binary" else 0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_grid(images: Sequence[np.ndarray], maps: Sequence[np.ndarray], titles: Sequence[str], path: Path,
                 vmin: float | None = None, vmax: float | None = None, *, label: str = "patch distance",
                 per_row: int = 4) -> None:
    """Each image beside itself overlaid with its heat map (an anomaly map, a Grad-CAM map), up to
    ``per_row`` pairs a row, one shared colour scale. Maps have the images' height and width."""
    n = len(images)
    cols = max(1, min(n, per_row))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(4.4 * cols, 2.4 * rows + 0.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    layer = None
    for j, (im, amap, title) in enumerate(zip(images, maps, titles)):
        r, c = divmod(j, cols)
        im = np.asarray(im)
        shown = im[..., 0] if im.shape[-1] == 1 else im
        cmap = "gray" if im.shape[-1] == 1 else None
        axes[r, 2 * c].imshow(shown, cmap=cmap)
        axes[r, 2 * c].set_title(title, fontsize=7, loc="left")
        axes[r, 2 * c + 1].imshow(shown, cmap=cmap)
        layer = axes[r, 2 * c + 1].imshow(amap, cmap="jet", alpha=0.45, vmin=vmin, vmax=vmax)
    if layer is not None:
        fig.colorbar(layer, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)

"""Accuracy must not move when the same data arrives as files: PneumoniaMNIST as the .npz, written out
as a PNG class folder (train/val/test split folders), and as images/ + labels.csv (a split column),
each adapted with the medical-imaging plugin's own recipe at 10% of the labels, same seed.

Files are named by their index in the .npz, so the three sources hold the same images in the same
order within each class, and the seeded label subsampling picks the same training images. What can
differ: the stream (files are decoded, resized to the input size and rounded to uint8 before
augmentation; arrays are resized in float) and the shuffle order.

    python benchmarks/data_equivalence.py [--label-fraction 0.1] [--seed 0] [--out benchmarks/results/data_equivalence]

Writes results.json (test ROC-AUC and accuracy per source, the largest difference to the .npz) and
results.png.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from shared_data import HERE, find_data


def write_sources(npz: Path, root: Path) -> tuple[Path, Path]:
    """The .npz as split/class folders of PNGs, and as images/ + labels.csv."""
    from PIL import Image

    folders, table = root / "folders", root / "table"
    if (root / "done").is_file():
        return folders, table / "labels.csv"
    names = ("normal", "pneumonia")
    lines = ["path,label,split"]
    with np.load(npz) as f:
        for split in ("train", "val", "test"):
            x, y = f[f"{split}_images"], f[f"{split}_labels"].reshape(-1)
            for i, (img, label) in enumerate(zip(x, y)):
                name = f"{split}_{i:05d}.png"
                for path in (folders / split / names[label] / name, table / "images" / name):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(img.reshape(img.shape[:2])).save(path)
                lines.append(f"images/{name},{names[label]},{split}")
    (table / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "done").write_text("ok\n")
    return folders, table / "labels.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="where the PNGs go (default: a temporary folder)")
    ap.add_argument("--out", default=str(HERE / "results" / "data_equivalence"))
    args = ap.parse_args()

    import tlzoo

    npz = find_data("pneumoniamnist.npz")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tlzoo-equivalence-"))
    folders, table = write_sources(npz, work)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, source in (("npz", npz), ("png_folders", folders), ("csv_table", table)):
        t0 = time.perf_counter()
        run = tlzoo.adapt(plugin="medical-imaging", data=str(source), label_fraction=args.label_fraction,
                          seed=args.seed, out=str(work / f"run-{name}"), overwrite=True, verbose=0)
        test = run.metrics["test"]
        results[name] = {"source": str(source), "roc_auc": test["roc_auc"], "accuracy": test["accuracy"],
                         "n_train": run.metrics["n_train"], "fingerprint": run.config["data"]["fingerprint"],
                         "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name:12} test ROC-AUC {test['roc_auc']:.4f}  accuracy {test['accuracy']:.4f}  "
              f"({run.metrics['n_train']} training labels, {results[name]['seconds']} s)", flush=True)
    diff = max(abs(r["roc_auc"] - results["npz"]["roc_auc"]) for r in results.values())
    doc = {"data": str(npz), "plugin": "medical-imaging (its default backbone, input size and schedule)",
           "label_fraction": args.label_fraction, "seed": args.seed, "results": results,
           "max_roc_auc_difference_to_npz": diff, "target": "within 0.01", "passed": diff <= 0.01,
           "tlzoo": tlzoo.__version__}
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(results)
    ax.bar(names, [results[n]["roc_auc"] for n in names], color=["#777", "#3a7", "#37a"])
    for i, n in enumerate(names):
        ax.text(i, results[n]["roc_auc"] + 0.002, f"{results[n]['roc_auc']:.4f}", ha="center", fontsize=8)
    lo = min(r["roc_auc"] for r in results.values())
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_ylabel("test ROC-AUC")
    ax.set_title(f"PneumoniaMNIST, {args.label_fraction:.0%} labels, seed {args.seed}: max diff {diff:.4f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)
    print(f"max ROC-AUC difference to the .npz: {diff:.4f} (target <= 0.01) -> {out / 'results.json'}")


if __name__ == "__main__":
    main()

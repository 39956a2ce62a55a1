"""Accuracy must not move when the same data arrives as files: PneumoniaMNIST as the .npz, written out
as a PNG class folder (train/val/test split folders), and as images/ + labels.csv (a split column),
each adapted with the medical-imaging plugin's own recipe at 10% of the labels, same seed.

Files are named by their index in the .npz, so the three sources hold the same images in the same
order within each class, and the seeded label subsampling picks the same training images. The table
lists them in the .npz's order, so its training batches are the .npz's, pixel for pixel (tested in
tests/unit/test_data_readers.py); the class folders hold them class by class, so the same seed shuffles
them into other batches: that difference is training-order noise, measured over several seeds.

    python benchmarks/data_equivalence.py [--label-fraction 0.1] [--seeds 0 1 2] \
        [--out benchmarks/results/data_equivalence]

Writes results.json (test ROC-AUC and accuracy per source and seed, means, the differences to the
.npz) and results.png.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

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
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", help="where the PNGs go (default: a temporary folder)")
    ap.add_argument("--out", default=str(HERE / "results" / "data_equivalence"))
    args = ap.parse_args()

    import tlzoo

    npz = find_data("pneumoniamnist.npz")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tlzoo-equivalence-"))
    folders, table = write_sources(npz, work)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        for name, source in (("npz", npz), ("png_folders", folders), ("csv_table", table)):
            t0 = time.perf_counter()
            run = tlzoo.adapt(plugin="medical-imaging", data=str(source), label_fraction=args.label_fraction,
                              seed=seed, out=str(work / f"run-{name}-{seed}"), overwrite=True, verbose=0)
            test = run.metrics["test"]
            r = results.setdefault(name, {"source": str(source), "per_seed": {}})
            r["per_seed"][seed] = {"roc_auc": test["roc_auc"], "accuracy": test["accuracy"],
                                   "n_train": run.metrics["n_train"], "fingerprint": run.config["data"]["fingerprint"],
                                   "seconds": round(time.perf_counter() - t0, 1)}
            print(f"seed {seed} {name:12} test ROC-AUC {test['roc_auc']:.4f}  accuracy {test['accuracy']:.4f}  "
                  f"({run.metrics['n_train']} training labels, {r['per_seed'][seed]['seconds']} s)", flush=True)
    for r in results.values():
        aucs = [v["roc_auc"] for v in r["per_seed"].values()]
        r["roc_auc_mean"], r["roc_auc_min"], r["roc_auc_max"] = float(np.mean(aucs)), min(aucs), max(aucs)
    diffs = {name: {"mean": r["roc_auc_mean"] - results["npz"]["roc_auc_mean"],
                    "per_seed": [r["per_seed"][s]["roc_auc"] - results["npz"]["per_seed"][s]["roc_auc"]
                                 for s in args.seeds]}
             for name, r in results.items() if name != "npz"}
    diff = max(abs(d["mean"]) for d in diffs.values())
    doc = {"data": str(npz), "plugin": "medical-imaging (its default backbone, input size and schedule)",
           "label_fraction": args.label_fraction, "seeds": args.seeds, "results": results,
           "roc_auc_difference_to_npz": diffs, "max_mean_roc_auc_difference_to_npz": diff,
           "target": "mean test ROC-AUC within 0.01 of the .npz's", "passed": diff <= 0.01,
           "tlzoo": tlzoo.__version__}
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    names = list(results)
    for i, n in enumerate(names):
        aucs = [v["roc_auc"] for v in results[n]["per_seed"].values()]
        ax.bar(i, results[n]["roc_auc_mean"], color=["#777", "#3a7", "#37a"][i], alpha=0.6)
        ax.plot([i] * len(aucs), aucs, "k.", ms=6)
        ax.text(i, results[n]["roc_auc_max"] + 0.003, f"{results[n]['roc_auc_mean']:.4f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    lo = min(r["roc_auc_min"] for r in results.values())
    ax.set_ylim(max(0.0, lo - 0.03), 1.0)
    ax.set_ylabel("test ROC-AUC (mean; dots: seeds)")
    ax.set_title(f"PneumoniaMNIST, {args.label_fraction:.0%} labels, seeds {args.seeds}: max mean diff {diff:.4f}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)
    print(f"largest difference of mean test ROC-AUC to the .npz: {diff:.4f} (target <= 0.01) -> {out / 'results.json'}")


if __name__ == "__main__":
    main()

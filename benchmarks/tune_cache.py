"""Cached-feature fast path vs a naive search, on PneumoniaMNIST with MobileNetV2 ImageNet weights.

Runs, in one process, the same random search twice (same seed, so the same trials): frozen-backbone
trials trained naively (the backbone runs over every image in every epoch) and on the feature cache
(features computed once, included in the cached side's time). Reports both wall times, their ratio,
and both best objectives (validation ROC-AUC). Writes benchmarks/results/tune_cache.json and .png.

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models python benchmarks/tune_cache.py
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from shared_data import find_data  # noqa: E402

from tlzoo.analysis.tune import TuneConfig, tune  # noqa: E402

HERE = Path(__file__).resolve().parent



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    data = find_data()
    root = Path(tempfile.mkdtemp(prefix="tlzoo-tune-bench-"))
    space = {"backbone": ["mobilenet_v2"], "unfreeze_groups": [0], "epochs": args.epochs}
    sides = {}
    for name, cache in (("naive", False), ("cached", True)):
        print(f"== {name}: {args.trials} trials x {args.epochs} epochs", flush=True)
        cfg = TuneConfig(plugin="medical-imaging", data=str(data), out=str(root / name), tuner="random",
                         max_trials=args.trials, space=space, weights="imagenet", input_size=args.input_size,
                         seed=args.seed, cache=cache, verbose=0)
        t0 = time.perf_counter()
        result = tune(cfg)
        wall = time.perf_counter() - t0
        trials = [{k: t[k] for k in ("trial", "path", "val_auc", "seconds", "learning_rate", "dropout",
                                     "hidden_units", "weight_decay", "label_smoothing")} for t in result.trials]
        sides[name] = {"wall_s": round(wall, 1), "best_val_auc": result.best["val_auc"],
                       "best_trial": result.best["trial"], "trials": trials}
        print(f"{name}: {wall:.1f}s, best val_auc {result.best['val_auc']:.4f} (trial {result.best['trial']})",
              flush=True)
    meta = json.loads(next((root / "cached" / "features").glob("*/meta.json")).read_text())
    same_trials = ([t["learning_rate"] for t in sides["naive"]["trials"]]
                   == [t["learning_rate"] for t in sides["cached"]["trials"]])
    summary = {
        "data": str(data.name), "backbone": "mobilenet_v2 (imagenet)", "input_size": args.input_size,
        "trials": args.trials, "epochs": args.epochs, "seed": args.seed, "same_trials": same_trials,
        "speedup": round(sides["naive"]["wall_s"] / sides["cached"]["wall_s"], 2),
        "best_val_auc_diff": round(abs(sides["naive"]["best_val_auc"] - sides["cached"]["best_val_auc"]), 5),
        "feature_extraction": {k: meta[k] for k in ("images", "seconds", "images_per_s", "shape")},
        "note": "2 shared CPU cores; other jobs may have run at the same time, so wall times are noisy",
        **sides,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_cache.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(summary, out / "tune_cache.png")
    print(json.dumps({k: summary[k] for k in ("speedup", "best_val_auc_diff", "same_trials")}), flush=True)
    print(f"naive {sides['naive']['wall_s']}s vs cached {sides['cached']['wall_s']}s; results in {out}/tune_cache.json")


def _plot(summary: dict, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = ["naive", "cached"]
    bars = a.bar(names, [summary[n]["wall_s"] for n in names], color=["tab:orange", "tab:green"])
    a.bar_label(bars, fmt="%.0f s")
    a.set_ylabel("wall time (s)")
    a.set_title(f"{summary['trials']} trials x {summary['epochs']} epochs: {summary['speedup']}x faster")
    for n, colour, marker in (("naive", "tab:orange", "o"), ("cached", "tab:green", "x")):
        t = summary[n]["trials"]
        b.plot([int(r["trial"]) for r in t], [r["val_auc"] for r in t], marker, color=colour, label=n, ms=8)
    b.set_xlabel("trial")
    b.set_ylabel("val ROC-AUC")
    b.set_title(f"same trials, best differs by {summary['best_val_auc_diff']:.4f}")
    b.legend()
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

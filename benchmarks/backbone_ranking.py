"""Does `tlzoo rank` pick the backbone that fine-tunes best? Scores vs fine-tuned test metrics.

For each data set and candidate backbone:
  1. the rank scores from frozen features (LogME, k-NN leave-one-out balanced accuracy, linear
     probe on val), exactly as `tlzoo rank` computes them, on the same labelled subset;
  2. a fine-tuned test metric from `tlzoo.train.recipe` with one short recipe for every candidate
     (fastai-style fine_tune: head epochs, then all layers; BN frozen for pretrained backbones,
     trained for random-init ones, as the recipe does);
then Kendall's tau-b between each score and the fine-tuned metric, per data set and pooled
(pairs compared within a data set only; metric scales differ between data sets).

Candidates: mobilenet_v2 and mobilenet_025 with ImageNet weights and randomly initialised,
small_cnn (the from-scratch baseline), and a TF-Hub-format SavedModel copy of mobilenet_v2
(`keras_to_hub_savedmodel`, loaded as `hub:<dir>`). Data: PneumoniaMNIST (medical-imaging,
10% of the training labels, test ROC-AUC) and NEU surface defects (defect-detection, 20 labels
per class, test accuracy).

Resumable: every finished fine-tuning run stays in WORKDIR/runs and is reused; the frozen
features are cached in WORKDIR/features. Writes benchmarks/results/backbone_ranking/
results.json and ranking.png.

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models TLZOO_DATA_DIR=../shared/data TLZOO_OFFLINE=1 \\
        python benchmarks/backbone_ranking.py --workdir /tmp/backbone_ranking

The ranking alone, with the CLI:
    tlzoo rank --plugin medical-imaging --data ../shared/data/pneumoniamnist.npz --label-fraction 0.1 \\
        --input-size 64 --backbones mobilenet_v2 mobilenet_025 mobilenet_v2@none mobilenet_025@none small_cnn@none
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from shared_data import find_data

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "backbone_ranking"

DATASETS = {
    # fine_tune schedules giving a similar number of samples seen (~2.2-2.8k) on both data sets:
    # 469 PneumoniaMNIST labels x (2 + 4) epochs, 120 NEU labels x (6 + 12) epochs
    "pneumoniamnist": {"file": "pneumoniamnist.npz", "plugin": "medical-imaging", "metric": "roc_auc",
                       "labels": {"label_fraction": 0.1}, "epochs": 4, "freeze_epochs": 2},
    "neu": {"file": "neu_surface_defect_64.npz", "plugin": "defect-detection", "metric": "accuracy",
            "labels": {"labels_per_class": 20}, "epochs": 12, "freeze_epochs": 6},
}
CANDIDATES = ["mobilenet_v2@imagenet", "mobilenet_025@imagenet", "mobilenet_v2@none", "mobilenet_025@none",
              "small_cnn@none", "hub_mobilenet_v2@savedmodel"]
SCORES = ("logme", "knn", "probe")


def tau_b(x: list[float], y: list[float], groups: list[str] | None = None) -> float:
    """Kendall's tau-b; with ``groups``, only pairs inside the same group are compared (a pooled
    tau over data sets whose metrics are on different scales)."""
    groups = groups or ["all"] * len(x)
    conc = disc = tie_x = tie_y = pairs = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if groups[i] != groups[j]:
                continue
            pairs += 1
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            tie_x += dx == 0
            tie_y += dy == 0
            conc += dx * dy > 0
            disc += dx * dy < 0
    denom = math.sqrt((pairs - tie_x) * (pairs - tie_y))
    return float((conc - disc) / denom) if denom else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/backbone_ranking", help="runs, feature cache and the SavedModel")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--candidates", nargs="+", default=CANDIDATES)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, help="fine_tune: epochs with every layer trainable (default: per data set)")
    ap.add_argument("--freeze-epochs", type=int, help="fine_tune: head-only epochs first (default: per data set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    from scipy.stats import kendalltau

    from tlzoo.analysis.rank import rank
    from tlzoo.runs.directory import write_text_atomic
    from tlzoo.train.recipe import AdaptConfig, adapt

    work, out = Path(args.workdir), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    backbone_of: dict[str, str] = {}
    for label in args.candidates:
        name, _, weights = label.rpartition("@")
        if name == "hub_mobilenet_v2":  # a local TF-Hub-format copy of the Keras model
            savedmodel = work / "mobilenet_v2_fv"
            if not (savedmodel / "saved_model.pb").is_file():
                from tlzoo.zoo.hub_savedmodel import keras_to_hub_savedmodel

                t0 = time.time()
                keras_to_hub_savedmodel("mobilenet_v2", savedmodel, overwrite=True)
                print(f"TF-Hub SavedModel written to {savedmodel} in {time.time() - t0:.1f}s", flush=True)
            backbone_of[label] = f"hub:{savedmodel}@imagenet"
        else:
            backbone_of[label] = label
    results_path = out / "results.json"
    report: dict[str, Any] = {
        "candidates": args.candidates, "input_size": args.input_size, "seed": args.seed,
        "datasets": {}, "note": "one seed per condition; fine-tuned metrics on the test split, scores on train + val",
    }
    t_all = time.time()
    for ds in args.datasets:
        info = DATASETS[ds]
        data = str(find_data(info["file"]))
        schedule = {"kind": "fine_tune", "epochs": args.epochs or info["epochs"],
                    "freeze_epochs": info["freeze_epochs"] if args.freeze_epochs is None else args.freeze_epochs}
        print(f"=== {ds}: rank {len(args.candidates)} candidates", flush=True)
        ranked = rank(info["plugin"], data, [backbone_of[c] for c in args.candidates], input_size=args.input_size,
                      seed=args.seed, cache_dir=str(work / "features"), out=str(out / f"rank_{ds}"), verbose=1,
                      **info["labels"])
        print(ranked.table(), flush=True)
        label_of = {v: k for k, v in backbone_of.items()}
        rows: dict[str, dict[str, Any]] = {}
        for r in ranked.rows:
            label = label_of.get(r.candidate, r.candidate)
            rows[label] = {"logme": r.logme, "knn": r.knn, "probe": r.probe, "probe_metric": r.probe_metric,
                           "rank_seconds": r.seconds, "feature_rms": r.feature_rms}
        report["datasets"][ds] = {"plugin": info["plugin"], "data": data, "metric": "test " + info["metric"],
                                  **info["labels"], "schedule": schedule, "n_scored": ranked.data["n_scored"],
                                  "skipped": ranked.skipped,
                                  "rank_wall_s": ranked.wall_s, "rows": rows}
        for label in args.candidates:
            if label not in rows:
                continue
            name, _, weights = backbone_of[label].rpartition("@")
            tag = f"e{schedule['epochs']}f{schedule['freeze_epochs']}"  # a different schedule is a different run
            run_dir = work / "runs" / ds / f"{label.replace('@', '_')}_{tag}"
            if (run_dir / "metrics.json").is_file():  # finished earlier (adapt writes the directory atomically)
                metrics = json.loads((run_dir / "metrics.json").read_text())
                seconds = None
                print(f"--- {ds} {label}: reusing {run_dir}", flush=True)
            else:
                print(f"--- {ds} {label}: fine-tuning ...", flush=True)
                t0 = time.time()
                run = adapt(AdaptConfig(plugin=info["plugin"], data=data, backbone=name,
                                        weights=None if weights == "none" else weights, input_size=args.input_size,
                                        schedule=schedule, seed=args.seed, out=str(run_dir), overwrite=True,
                                        verbose=0, **info["labels"]))
                metrics, seconds = run.metrics, round(time.time() - t0, 1)
            rows[label].update(finetuned=metrics["test"][info["metric"]], finetune_seconds=seconds,
                               n_train=metrics["n_train"], val_monitor=metrics["monitor"]["value"])
            print(f"    test {info['metric']} {rows[label]['finetuned']:.4f}"
                  + (f" in {seconds}s" if seconds else ""), flush=True)
            write_text_atomic(results_path, json.dumps(report, indent=2) + "\n")  # progress survives a kill
        done = {k: v for k, v in rows.items() if "finetuned" in v}
        taus = {}
        for score in SCORES:
            xs = [v[score] for v in done.values()]
            ys = [v["finetuned"] for v in done.values()]
            res = kendalltau(xs, ys)  # tau-b
            taus[score] = {"tau": float(res.statistic), "p_value": float(res.pvalue), "n": len(xs),
                           "tau_check": tau_b(xs, ys)}
        report["datasets"][ds]["kendall_tau"] = taus
        write_text_atomic(results_path, json.dumps(report, indent=2) + "\n")

    pooled = {}
    for score in SCORES:
        xs, ys, gs = [], [], []
        for ds, d in report["datasets"].items():
            for v in d["rows"].values():
                if "finetuned" in v:
                    xs.append(v[score])
                    ys.append(v["finetuned"])
                    gs.append(ds)
        pooled[score] = {"tau_within_datasets": tau_b(xs, ys, gs), "n": len(xs),
                         "mean_of_per_dataset_tau": float(np.mean([d["kendall_tau"][score]["tau"]
                                                                   for d in report["datasets"].values()]))}
    report["pooled_kendall_tau"] = pooled
    report["wall_s"] = round(time.time() - t_all, 1)
    write_text_atomic(results_path, json.dumps(report, indent=2) + "\n")
    plot(report, out / "ranking.png")
    print(json.dumps({ds: d["kendall_tau"] for ds, d in report["datasets"].items()}, indent=2))
    print(json.dumps(pooled, indent=2))
    print(f"written: {results_path}, {out / 'ranking.png'} ({report['wall_s']}s)")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"logme": "LogME", "knn": "k-NN LOO balanced acc.", "probe": "linear probe (val)"}
    datasets = list(report["datasets"])
    fig, axes = plt.subplots(len(datasets), 3, figsize=(14, 4.2 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        d = report["datasets"][ds]
        rows = {k: v for k, v in d["rows"].items() if "finetuned" in v}
        for j, score in enumerate(SCORES):
            ax = axes[i][j]
            for label, v in rows.items():  # one colour per candidate across panels
                ax.scatter(v[score], v["finetuned"], s=36, color=f"C{report['candidates'].index(label) % 10}")
                ax.annotate(label, (v[score], v["finetuned"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            t = d["kendall_tau"][score]
            ax.set_title(f"{ds}: {names[score]}\nKendall tau {t['tau']:+.2f} (n={t['n']})", fontsize=10)
            ax.set_xlabel(names[score])
            ax.set_ylabel(f"fine-tuned {d['metric']}")
            ax.grid(alpha=0.3)
    fig.suptitle("tlzoo rank scores (frozen features) vs fine-tuned test metric", fontsize=12)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    main()

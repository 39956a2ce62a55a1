"""Time-series fraud benchmark on creditcard_subset.npz (../shared/data), three parts:

1. leak check: GBM on windows of consecutive transactions (time order, no account id) vs single
   transactions; a window score far above the tabular one means neighbours give the label away.
2. full labels: the plugin (ts_fcn from scratch, tabular mode) beside the GBM baseline on the same
   seeded stratified split, per seed.
3. few labels: 50 labelled frauds in training; ts_fcn pretrained without labels (masked-value
   reconstruction on the training transactions, labels hidden) vs the same architecture from
   scratch, same schedule, per seed; GBM on the same 50 frauds beside them.

    python benchmarks/timeseries_fraud.py [--seeds 0 1 2] [--out benchmarks/results]

Writes timeseries_fraud.json and timeseries_fraud.png. Timings are on a shared 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = (Path(os.environ.get("TLZOO_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
        / "creditcard_subset.npz")


def leak_check(seeds: list[int]) -> dict:
    from tlzoo.plugin import get_plugin
    from tlzoo_timeseries.baseline import gbm_baseline

    out = {}
    for window in (1, 8):
        rows = []
        for seed in seeds:
            plugin = get_plugin("timeseries-fraud", window=window)
            data = plugin.read_data(str(DATA), seed=seed)
            base = gbm_baseline(data, seed=seed, choose_threshold=plugin.choose_threshold, evaluate=plugin.evaluate)
            rows.append(base["test"]["pr_auc"])
        out[f"window_{window}"] = {"gbm_test_pr_auc": rows, "mean": float(np.mean(rows))}
        print(f"leak check, GBM, window {window}: test PR-AUC {np.mean(rows):.4f} {rows}", flush=True)
    return out


def run_adapt(out: Path, seed: int, backbone: str, options: dict, epochs: int) -> dict:
    from tlzoo.train.recipe import adapt

    t0 = time.perf_counter()
    r = adapt(plugin="timeseries-fraud", data=str(DATA), out=str(out), backbone=backbone, seed=seed, batch_size=64,
              plugin_options=options, overwrite=True, verbose=0,
              schedule={"stages": [{"name": "head", "epochs": 2, "trainable": 0, "learning_rate": 1e-3},
                                   {"name": "all", "epochs": epochs, "trainable": "all", "learning_rate": 1e-3,
                                    "train_batchnorm": True, "patience": 5}]})
    m = r.metrics
    return {"pr_auc": m["test"]["pr_auc"], "roc_auc": m["test"]["roc_auc"],
            "recall_at_fpr_0.01": m["test"]["recall_at_fpr_0.01"],
            "precision_at_top_50": m["test"]["precision_at_top_50"],
            "gbm_pr_auc": m["baseline"]["test"]["pr_auc"], "gbm_roc_auc": m["baseline"]["test"]["roc_auc"],
            "gbm_recall_at_fpr_0.01": m["baseline"]["test"]["recall_at_fpr_0.01"],
            "n_train": m["n_train"], "best_epoch": m["best_epoch"], "seconds": round(time.perf_counter() - t0, 1)}


def summary(rows: list[dict], key: str) -> dict:
    v = np.array([r[key] for r in rows])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--positives", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (set TLZOO_DATA_DIR)")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tlzoo-tsbench-"))
    os.environ["TLZOO_HOME"] = str(work / "home")  # the benchmark's zoo entries stay out of the user's
    from tlzoo.zoo.pretrain import pretrain

    results: dict = {"data": str(DATA), "seeds": args.seeds, "protocol": (
        "tabular mode (one transaction, 29 features; time only orders events), stratified split "
        "train 0.6 / val 0.2 / test 0.2 per seed; threshold for a 1% false-positive budget on val")}
    results["leak_check"] = leak_check(args.seeds)

    full = []
    for seed in args.seeds:
        row = run_adapt(work / f"full-{seed}", seed, "ts_fcn", {}, args.epochs)
        print(f"full labels seed {seed}: plugin PR-AUC {row['pr_auc']:.4f}, GBM {row['gbm_pr_auc']:.4f}", flush=True)
        full.append(row)
    results["full_labels"] = {"runs": full, "plugin_pr_auc": summary(full, "pr_auc"),
                              "gbm_pr_auc": summary(full, "gbm_pr_auc")}

    few: dict[str, list] = {"scratch": [], "pretrained": []}
    for seed in args.seeds:
        p = pretrain(plugin="timeseries-fraud", data=str(DATA), name=f"cc_fcn_masked_s{seed}", backbone="ts_fcn",
                     objective="masked", epochs=args.pretrain_epochs, seed=seed, verbose=0)
        opts = {"train_positives": args.positives}
        for arm, backbone in (("scratch", "ts_fcn"), ("pretrained", p.name)):
            row = run_adapt(work / f"few-{arm}-{seed}", seed, backbone, opts, args.epochs)
            row["pretrain_final_loss"] = p.history[-1] if arm == "pretrained" else None
            few[arm].append(row)
            print(f"{args.positives} frauds seed {seed} {arm:10}: PR-AUC {row['pr_auc']:.4f} "
                  f"(GBM {row['gbm_pr_auc']:.4f})", flush=True)
    results["few_labels"] = {
        "train_positives": args.positives,
        "scratch": {"runs": few["scratch"], "pr_auc": summary(few["scratch"], "pr_auc")},
        "pretrained": {"runs": few["pretrained"], "pr_auc": summary(few["pretrained"], "pr_auc"),
                       "objective": "masked", "pretrain_epochs": args.pretrain_epochs},
        "gbm_pr_auc": summary(few["scratch"], "gbm_pr_auc"),
        "pretrained_minus_scratch": summary(
            [{"d": a["pr_auc"] - b["pr_auc"]} for a, b in zip(few["pretrained"], few["scratch"])], "d"),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeseries_fraud.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "timeseries_fraud.png")
    print(json.dumps({k: results["few_labels"][k]["pr_auc"] for k in ("scratch", "pretrained")}, indent=1))
    return 0


def plot(results: dict, path: Path) -> None:
    from tlzoo.evaluation.plots import plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    lc = results["leak_check"]
    axes[0].bar(["single event", "window of 8"], [lc["window_1"]["mean"], lc["window_8"]["mean"]], color=["C0", "C3"])
    axes[0].set(title="leak check: GBM test PR-AUC", ylim=(0, 1.05))
    groups = [("full labels", results["full_labels"]["plugin_pr_auc"], results["full_labels"]["gbm_pr_auc"])]
    for ax, (title, a, b) in zip(axes[1:2], groups):
        ax.errorbar([0, 1], [a["mean"], b["mean"]], yerr=[a["std"], b["std"]], fmt="o", capsize=5)
        for i, v in enumerate((a, b)):
            ax.scatter([i] * len(v["values"]), v["values"], alpha=0.4, color="k", s=12)
        ax.set(xticks=[0, 1], xticklabels=["ts_fcn plugin", "GBM"], xlim=(-0.5, 1.5),
               title=f"{title}: test PR-AUC\n(mean ± sd over {len(results['seeds'])} seeds)")
    fl = results["few_labels"]
    arms = [("scratch", fl["scratch"]["pr_auc"]), ("pretrained\n(masked, no labels)", fl["pretrained"]["pr_auc"]),
            ("GBM", fl["gbm_pr_auc"])]
    for i, (_, s) in enumerate(arms):
        axes[2].errorbar([i], [s["mean"]], yerr=[s["std"]], fmt="o", capsize=5)
        axes[2].scatter([i] * len(s["values"]), s["values"], alpha=0.4, color="k", s=12)
    axes[2].set(xticks=range(3), xticklabels=[a for a, _ in arms], xlim=(-0.5, 2.5),
                title=f"{fl['train_positives']} labelled frauds: test PR-AUC\n"
                      f"(mean ± sd over {len(results['seeds'])} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

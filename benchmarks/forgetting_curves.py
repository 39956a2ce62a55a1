"""Forgetting curves on PneumoniaMNIST: how far fine-tuning moves an ImageNet MobileNetV2.

The medical-imaging plugin's own recipe (fine_tune: 3 head epochs, then 25 epochs of everything at
base_lr / 2 with layer-wise decay 0.9; 96 px; 10% of the training labels) with forgetting tracking
on: per epoch, linear CKA of every layer group's output vs the pretrained backbone on 64 fixed
training images, and agreement of the ImageNet top (applied to the current backbone) with the
pretrained backbone's top-1 ImageNet class. A second condition fine-tunes at 10x the learning
rate (--conditions to choose); both report the same test metrics, so drift can be set against them.

Writes benchmarks/results/forgetting/<condition>/{forgetting.png, forgetting.json, metrics.json,
history.json} and benchmarks/results/forgetting/forgetting_curves.{json,png} (the conditions side by side).

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models python benchmarks/forgetting_curves.py
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from shared_data import find_data

from tlzoo.runs.directory import write_json
from tlzoo.train.recipe import AdaptConfig, adapt

HERE = Path(__file__).resolve().parent
CONDITIONS = {
    "plugin_default": {},  # base_lr 1e-3: the "all" stage at 5e-4
    "high_lr": {"base_lr": 1e-2},  # 10x: the "all" stage at 5e-3
    "low_lr": {"base_lr": 1e-4},  # 0.1x: the "all" stage at 5e-5
    # the high learning rate with the bound: halve the learning rate whenever a group's drift passes 0.3
    "high_lr_bounded": {"base_lr": 1e-2, "_max_drift": 0.3, "_on_drift": "lower_lr"},
}


def run(name: str, options: dict, data: Path, args: argparse.Namespace, out: Path) -> dict:
    options = dict(options)
    bound = {"max_drift": options.pop("_max_drift", None), "on_drift": options.pop("_on_drift", "stop")}
    run_dir = Path(tempfile.mkdtemp(prefix=f"tlzoo-forgetting-{name}-")) / "run"
    t0 = time.perf_counter()
    result = adapt(AdaptConfig(
        plugin="medical-imaging", data=str(data), out=str(run_dir), backbone="mobilenet_v2", weights="imagenet",
        input_size=96, label_fraction=args.label_fraction, seed=args.seed, plugin_options=options,
        forgetting=True, forgetting_reference=args.reference, verbose=args.verbose, **bound,
    ))
    wall = time.perf_counter() - t0
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    for f in ("forgetting.png", "forgetting.json", "metrics.json", "history.json"):
        shutil.copyfile(run_dir / f, target / f)
    m, fg = result.metrics, result.metrics["forgetting"]
    summary = {
        "plugin_options": options, **bound,
        "test_roc_auc": m["test"]["roc_auc"], "test_accuracy": m["test"]["accuracy"],
        "test_sensitivity": m["test"]["sensitivity"], "test_specificity": m["test"]["specificity"],
        "val_roc_auc": m["monitor"]["value"], "n_train": m["n_train"], "best_epoch": m["best_epoch"],
        "epochs_run": len(result.history), "wall_time_s": round(wall, 1),
        "final": {k: fg["final"][k] for k in ("epoch", "cka", "cka_min", "cka_mean", "most_drifted",
                                              "source_agreement", "source_top5_overlap", "source_kl")},
        "kept": ({k: fg["kept"][k] for k in ("epoch", "cka_min", "cka_mean", "source_agreement")}
                 if fg["kept"] else None),
        "bound": fg["bound"], "source": fg["source"],
    }
    shutil.rmtree(run_dir.parent, ignore_errors=True)
    return summary


def compare_plot(out: Path, names: list[str]) -> None:
    import matplotlib.pyplot as plt

    import tlzoo.evaluation.plots  # noqa: F401  (Agg backend)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in names:
        records = json.loads((out / name / "forgetting.json").read_text())["epochs"]
        epochs = [r["epoch"] for r in records]
        axes[0].plot(epochs, [r["cka_mean"] for r in records], marker="o", ms=2.5, label=name)
        axes[1].plot(epochs, [r["cka_min"] for r in records], marker="o", ms=2.5, label=name)
        axes[2].plot(epochs, [r.get("source_agreement") for r in records], marker="o", ms=2.5, label=name)
    for ax, title in zip(axes, ("mean CKA over layer groups", "min CKA over layer groups",
                                "ImageNet top-1 agreement with pretrained")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch (0 = pretrained)")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "forgetting_curves.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conditions", nargs="+", default=["plugin_default", "high_lr"], choices=list(CONDITIONS))
    ap.add_argument("--label-fraction", type=float, default=0.1)
    ap.add_argument("--reference", type=int, default=64, help="reference images for CKA / source agreement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "forgetting"))
    args = ap.parse_args()
    out = Path(args.out)
    data = find_data()
    index = out / "forgetting_curves.json"
    results = json.loads(index.read_text())["conditions"] if index.is_file() else {}  # keep earlier conditions
    for name in args.conditions:
        print(f"== {name}", flush=True)
        results[name] = run(name, CONDITIONS[name], data, args, out)
        r = results[name]
        print(f"   test ROC-AUC {r['test_roc_auc']:.4f}; final CKA min {r['final']['cka_min']:.3f} "
              f"({r['final']['most_drifted']}), mean {r['final']['cka_mean']:.3f}; source agreement "
              f"{r['final']['source_agreement']:.1%}; {r['wall_time_s']} s", flush=True)
        write_json(index, {"data": data.name, "backbone": "mobilenet_v2 (imagenet)", "input_size": 96,
                           "label_fraction": args.label_fraction, "seed": args.seed, "reference": args.reference,
                           "conditions": results})
    compare_plot(out, [n for n in results if (out / n / "forgetting.json").is_file()])


if __name__ == "__main__":
    main()

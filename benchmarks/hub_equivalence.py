"""A TF-Hub backbone against the keras.applications model it was made from, on PneumoniaMNIST.

1. Writes MobileNetV2 (ImageNet weights from $TLZOO_WEIGHTS_DIR) as a TF-Hub-format SavedModel
   (``__call__(images in [0, 1], training)``, pooled 1280-d features; tlzoo_hub.json beside it).
2. Runs the medical-imaging plugin's recipe twice on the same 10% of the labels and seed:
   ``--backbone hub:<that directory>`` and ``--backbone mobilenet_v2 --weights imagenet``.
3. Exports the hub run (SavedModel / ONNX / TFLite, with the parity checks) unless --no-export.
Writes benchmarks/results/hub_equivalence.json and .png (test ROC-AUC and wall time per backbone).

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models TLZOO_DATA_DIR=../shared/data \\
        python benchmarks/hub_equivalence.py --workdir /tmp/hub_equivalence

The same by hand, with the CLI, once the SavedModel is written (step 1):
    tlzoo adapt --plugin medical-imaging --data ../shared/data/pneumoniamnist.npz \\
        --backbone hub:/tmp/hub_equivalence/mobilenet_v2_fv --label-fraction 0.1 --out /tmp/hubrun
    tlzoo export /tmp/hubrun
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from shared_data import find_data

HERE = Path(__file__).resolve().parent



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/tmp/hub_equivalence", help="SavedModel and run directories go here")
    ap.add_argument("--label-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()

    from tlzoo.train.recipe import AdaptConfig, adapt
    from tlzoo.zoo.hub_savedmodel import keras_to_hub_savedmodel

    data, work = find_data(), Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    savedmodel = keras_to_hub_savedmodel("mobilenet_v2", work / "mobilenet_v2_fv", overwrite=True)
    print(f"SavedModel written to {savedmodel} in {time.time() - t0:.1f} s", flush=True)

    conditions = {"hub": f"hub:{savedmodel}", "keras": "mobilenet_v2"}
    results: dict[str, dict] = {}
    for label, backbone in conditions.items():
        print(f"--- {label}: {backbone}", flush=True)
        t0 = time.time()
        run = adapt(AdaptConfig(plugin="medical-imaging", data=str(data), backbone=backbone, weights="imagenet",
                                label_fraction=args.label_fraction, seed=args.seed, out=str(work / f"run_{label}"),
                                overwrite=True, verbose=0))
        test = run.metrics["test"]
        results[label] = {"backbone": backbone, "run_dir": str(run.run_dir), "seconds": round(time.time() - t0, 1),
                          "test_roc_auc": test["roc_auc"], "test_accuracy": test["accuracy"],
                          "n_train": run.metrics["n_train"]}
        print(json.dumps(results[label]), flush=True)

    report = {"data": str(data), "label_fraction": args.label_fraction, "seed": args.seed, "runs": results,
              "roc_auc_difference": results["hub"]["test_roc_auc"] - results["keras"]["test_roc_auc"]}
    if not args.no_export:
        from tlzoo.deploy.export import export

        t0 = time.time()
        exported = export(results["hub"]["run_dir"], out=str(work / "export_hub"), overwrite=True, verbose=1)
        report["export"] = {"out": str(exported.out), "seconds": round(time.time() - t0, 1),
                            "parity": {k: {m: v[m] for m in ("max_abs_diff", "agreement", "passed")}
                                       for k, v in exported.parity.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hub_equivalence.json").write_text(json.dumps(report, indent=2, default=str))
    plot(report, out / "hub_equivalence.png")
    print(json.dumps(report, indent=2, default=str))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    labels = ["TF-Hub SavedModel\n(HubLayer)" if k == "hub" else f"keras.applications\n{v['backbone']}"
              for k, v in runs.items()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(labels, [v["test_roc_auc"] for v in runs.values()], color=["tab:orange", "tab:blue"])
    axes[0].set_ylim(0.5, 1.0)
    axes[0].set_title("test ROC-AUC (PneumoniaMNIST)")
    for i, v in enumerate(runs.values()):
        axes[0].text(i, v["test_roc_auc"] + 0.01, f"{v['test_roc_auc']:.4f}", ha="center")
    axes[1].bar(labels, [v["seconds"] for v in runs.values()], color=["tab:orange", "tab:blue"])
    axes[1].set_title("adapt wall time (s, shared 2-core machine)")
    fig.suptitle(f"TF-Hub SavedModel vs keras.applications MobileNetV2, {report['label_fraction']:.0%} labels")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

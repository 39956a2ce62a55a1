"""Defect-detection benchmark on the shared real data sets (../shared/data):

- anomaly mode on Magnetic Tile Defects (protocol: fit on a seeded half of the 952 defect-free
  images, a quarter of that half held out to set the threshold at 1% false alarms; test on the
  other defect-free half plus all 392 defective images): MobileNetV2 ImageNet features against the
  same pipeline on a randomly initialised MobileNetV2 (from scratch), beside DifferNet's published
  97.7% image ROC-AUC; recall at 1% false alarms, bank size, scoring time; ONNX parity of the export;
- classify mode on NEU surface defects (6 classes x 300): all labels, and 10 labelled images per class.

Writes benchmarks/results/defect_detection.json and .png. Run directories go to --runs (not the repo).

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models TLZOO_DATA_DIR=../shared/data \
        python benchmarks/defect_detection.py [--parts anomaly classify]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DIFFERNET_AUC = 0.977  # Rudolph et al., WACV 2021, image ROC-AUC on Magnetic Tile Defects


def anomaly_part(runs: Path, args: argparse.Namespace) -> dict:
    import tlzoo
    from tlzoo.train.recipe import AdaptConfig

    out: dict = {"protocol": "fit: seeded 50% of defect-free (75% of it for the bank, 25% to set the threshold); "
                             "test: other 50% defect-free + all defective", "published_differnet_auc": DIFFERNET_AUC,
                 "protocol_differnet": f"fit: the 761 defect-free images of {args.differnet_list} (75% for the "
                                       f"bank, 25% to set the threshold); test: the other 191 defect-free + all 392 "
                                       f"defective (583 images), DifferNet's split"}
    conditions = [("imagenet", "imagenet", None), ("scratch", None, None)]
    if "differnet" in args.protocols:
        conditions.append(("imagenet_differnet_split", "imagenet", args.differnet_list))
    for label, weights, split_file in conditions:
        t0 = time.perf_counter()
        cfg = AdaptConfig(plugin="defect-detection", data=args.magnetic, out=str(runs / f"mt_{label}"),
                          backbone="mobilenet_v2", weights=weights, input_size=args.anomaly_size, batch_size=32,
                          overwrite=True, seed=0, verbose=1,
                          plugin_options={"mode": "anomaly", "max_false_alarm": 0.01, "split_file": split_file,
                                          "coreset_ratio": args.coreset_ratio})
        res = tlzoo.adapt(cfg)
        m = res.metrics
        out[label] = {"roc_auc": m["test"]["roc_auc"], "recall_at_1pct_false_alarm": m["test"]["recall"],
                      "test_false_alarm_rate": m["test"]["false_alarm_rate"],
                      "recall_at_1pct_fpr_oracle": m["test"]["recall_at_fpr_oracle"],
                      "per_type_recall": m["test"]["per_type_recall"], "threshold": m["threshold"],
                      "bank_size": m["bank"]["bank_size"], "bank_dim": m["bank"]["dim"],
                      "bank_mb": m["bank"]["bank_mb"],
                      "coreset_seconds": m["bank"]["coreset_seconds"],
                      "scoring_ms_per_image_batch32": m["scoring_ms_per_image"],
                      "scoring_ms_batch_of_1": m["scoring_ms_batch_of_1"], "wall_s": round(time.perf_counter() - t0, 1),
                      "run_dir": str(res.run_dir)}
        print(label, json.dumps(out[label], indent=1), flush=True)
    t0 = time.perf_counter()
    exp = tlzoo.export(runs / "mt_imagenet", formats=["savedmodel", "onnx"], out=runs / "mt_imagenet_export",
                       overwrite=True, verbose=1)
    from tlzoo.deploy.export import load_export

    onnx = load_export(runs / "mt_imagenet_export", "onnx")
    x = np.load(runs / "mt_imagenet_export" / "samples" / "inputs.npy")
    onnx(x[:1])
    t1 = time.perf_counter()
    for i in range(len(x)):
        onnx(x[i:i + 1])
    out["export"] = {
        fmt: {"score_max_abs_diff": p["max_abs_diff"], "decision_agreement": p["agreement"],
              "map_max_abs_diff": max(c.get("anomaly_map_max_abs_diff", float("nan")) for c in p["cases"].values()),
              "n": p["n"], "passed": p["passed"]} for fmt, p in exp.parity.items()}
    out["export"]["onnx_ms_per_image_batch1"] = round(1000 * (time.perf_counter() - t1) / len(x), 2)
    out["export"]["onnx_test_roc_auc"] = exp.test_metrics["onnx"]["roc_auc"]
    out["export"]["seconds"] = round(time.perf_counter() - t0, 1)
    print("export", json.dumps(out["export"], indent=1), flush=True)
    return out


SWEEP_KEYS = {"size": 128, "ratio": 0.1, "levels": "", "nb": 3, "bank": "none", "tta": "none"}


def sweep_setting(spec: str) -> dict:
    """``size=224,ratio=0.01`` -> every SWEEP_KEYS value, typed as its default; an unknown key, or views at
    test time that the bank lacks (other than none in the bank: the study of test-time views alone), is
    refused."""
    given = dict(kv.split("=", 1) for kv in spec.split(",") if kv)
    unknown = sorted(set(given) - set(SWEEP_KEYS))
    if unknown:
        raise SystemExit(f"sweep setting {spec!r}: unknown key(s) {unknown}; keys: {list(SWEEP_KEYS)}")
    s = {**SWEEP_KEYS, **{k: type(SWEEP_KEYS[k])(v) for k, v in given.items()}}
    if s["tta"] != s["bank"] and s["bank"] != "none":
        raise SystemExit(f"sweep setting {spec!r}: tta must be the bank's views ({s['bank']}) when the bank has views")
    return s


def sweep_part(args: argparse.Namespace, rows: list[dict], save: Any) -> None:
    """Image ROC-AUC of the anomaly protocol over PatchCore's levers (PatchCore API): input size, coreset
    ratio, feature levels, neighbourhood, the normal images' views in the bank (``bank``: PatchCore's
    ``views``, averaged at scoring too) or, with none in the bank, views averaged at test time only (``tta``,
    as DifferNet averages over rotations). Each setting: ``key=value,...`` of SWEEP_KEYS, levels joined by
    ``+``. Appends to ``rows`` and calls ``save`` after each setting."""
    from sklearn.metrics import roc_auc_score

    from tlzoo.anomaly import VIEWS, PatchCore, PatchCoreConfig
    from tlzoo.anomaly.patchcore import DihedralView
    from tlzoo_defect.anomaly_data import anomaly_splits, normal_label, read_labelled

    labelled = read_labelled(args.magnetic)
    data, _ = anomaly_splits(labelled, normal_label(labelled), seed=0,
                             split_file=args.differnet_list if "differnet" in args.protocols else None)
    print(f"sweep on {len(data.train)} bank images, {len(data.test)} test images", flush=True)
    for spec in args.sweep:
        if spec in {r.get("spec") for r in rows}:
            continue  # measured in an earlier run of the sweep
        s = sweep_setting(spec)
        t0 = time.perf_counter()
        pc = PatchCore(PatchCoreConfig(input_size=s["size"], coreset_ratio=s["ratio"], neighbourhood=s["nb"],
                                       views=s["bank"], max_bank_mb=2048,
                                       levels=tuple(s["levels"].split("+")) if s["levels"] else None))
        pc.fit(data.train.x, verbose=False)
        t1 = time.perf_counter()
        if s["tta"] == s["bank"]:  # the product's path: the scoring model averages over the views itself
            scores = pc.score(data.test.x, batch_size=32)[0]
        else:  # views of the (square) test images, against a bank without them
            scores = np.mean([pc.score(np.asarray(DihedralView(*view)(data.test.x)), batch_size=32)[0]
                              for view in VIEWS[s["tta"]]], axis=0)
        rows.append({"spec": spec, **{k: s[k] for k in SWEEP_KEYS},
                     "levels": [lv["group"] for lv in pc.fit_info["levels"]],
                     "roc_auc": float(roc_auc_score(data.test.y, scores)), "bank_size": pc.fit_info["bank_size"],
                     "n_test": len(data.test), "fit_s": round(t1 - t0, 1),
                     "ms_per_image": round(1000 * (time.perf_counter() - t1) / len(data.test), 2)})
        print("sweep", rows[-1], flush=True)
        save()


def classify_part(runs: Path, args: argparse.Namespace) -> dict:
    import tlzoo
    from tlzoo.train.recipe import AdaptConfig

    out: dict = {"published_accuracy": "about 0.99-1.00"}
    settings = (("all_labels", None, {"epochs": args.epochs, "head_epochs": 2}),
                ("10_per_class", 10, {"epochs": args.few_epochs, "head_epochs": 5}))
    for label, per_class, options in settings:
        t0 = time.perf_counter()
        cfg = AdaptConfig(plugin="defect-detection", data=args.neu, out=str(runs / f"neu_{label}"),
                          backbone="mobilenet_v2", weights="imagenet", input_size=args.classify_size,
                          batch_size=32 if per_class is None else 16, labels_per_class=per_class, overwrite=True,
                          seed=0, verbose=1, plugin_options=options)
        res = tlzoo.adapt(cfg)
        t = res.metrics["test"]
        out[label] = {"test_accuracy": t["accuracy"], "macro_f1": t["macro_f1"],
                      "per_class_recall": t["per_class_recall"],
                      "n_train": res.metrics["n_train"], "n_test": t["n"], "epochs": options,
                      "wall_s": round(time.perf_counter() - t0, 1), "run_dir": str(res.run_dir)}
        print(label, json.dumps(out[label], indent=1), flush=True)
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("anomaly", "anomaly_sweep_differnet", "classify") if k in results]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, key in zip(axes[0], panels):
        r = results[key]
        if key == "anomaly_sweep_differnet":
            rows = sorted(r, key=lambda row: row["roc_auc"])
            labels = [", ".join(f"{k}={row[k]}" for k in SWEEP_KEYS if k != "levels" and row[k] != SWEEP_KEYS[k])
                      + f"\n{'+'.join(row['levels'])}" for row in rows]
            ax.barh(range(len(rows)), [row["roc_auc"] for row in rows], color="tab:blue")
            ax.axvline(DIFFERNET_AUC, color="tab:red", ls="--", label=f"DifferNet {DIFFERNET_AUC}")
            for i, row in enumerate(rows):
                ax.text(row["roc_auc"] + 0.002, i, f"{row['roc_auc']:.3f}", va="center", fontsize=7)
            ax.set(yticks=range(len(rows)), xlim=(0.85, 1.0), xlabel="image ROC-AUC")
            ax.set_yticklabels(labels, fontsize=6)
            ax.set_title(f"Magnetic tile, DifferNet split ({rows[0]['n_test']} test images): PatchCore levers",
                         fontsize=9)
            ax.legend(fontsize=7)
            continue
        if key == "anomaly":
            names = ["MobileNetV2\nImageNet", "MobileNetV2\nrandom init", "DifferNet\n(published)"]
            vals = [r["imagenet"]["roc_auc"], r["scratch"]["roc_auc"], DIFFERNET_AUC]
            ax.set_title(f"Magnetic tile anomaly: image ROC-AUC\n(bank {r['imagenet']['bank_size']:,} patches; "
                         f"recall@1% FA {r['imagenet']['recall_at_1pct_false_alarm']:.2f})", fontsize=9)
        else:
            names = [f"all labels\n(n={r['all_labels']['n_train']})",
                     f"10 per class\n(n={r['10_per_class']['n_train']})"]
            vals = [r["all_labels"]["test_accuracy"], r["10_per_class"]["test_accuracy"]]
            ax.set_title("NEU surface defects: test accuracy (MobileNetV2 ImageNet)", fontsize=9)
        bars = ax.bar(names, vals, color=["tab:blue", "tab:orange", "tab:grey"][:len(vals)])
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["anomaly", "classify"], choices=["anomaly", "classify", "sweep"])
    p.add_argument("--sweep", nargs="+", default=["size=128", "levels=block_3+block_12", "nb=5", "size=224,ratio=0.03",
                                                  "tta=flips", "bank=flips,ratio=0.025"],
                   help="settings for --parts sweep: key=value,... (keys: " + ", ".join(SWEEP_KEYS) + ")")
    p.add_argument("--magnetic", default="magnetic_tile.npz")
    p.add_argument("--differnet-list", default="magnetic_tile_differnet_train.txt",
                   help="DifferNet's 761 training file names (read from $TLZOO_DATA_DIR)")
    p.add_argument("--protocols", nargs="+", default=["half", "differnet"], choices=["half", "differnet"],
                   help="anomaly: the seeded half split, and DifferNet's (also the sweep's split when given)")
    p.add_argument("--neu", default="neu_surface_defect.npz")
    p.add_argument("--anomaly-size", type=int, default=128)
    p.add_argument("--coreset-ratio", type=float, default=0.1)
    p.add_argument("--classify-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--few-epochs", type=int, default=20)
    p.add_argument("--runs", default=None, help="where run directories go (default: a temporary folder)")
    p.add_argument("--out", default=str(RESULTS / "defect_detection"))
    args = p.parse_args()
    runs = Path(args.runs or tempfile.mkdtemp(prefix="defect_runs_"))
    out_json = Path(args.out).with_suffix(".json")
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    results.update({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "note": "2 shared CPU cores; timings are noisy"}})
    if "anomaly" in args.parts:
        results["anomaly"] = anomaly_part(runs, args)
        results["anomaly"]["settings"] = {"input_size": args.anomaly_size, "coreset_ratio": args.coreset_ratio}
    if "sweep" in args.parts:
        split = "differnet" if "differnet" in args.protocols else "half"
        sweep_part(args, results.setdefault(f"anomaly_sweep_{split}", []), lambda: write(results, out_json))
    if "classify" in args.parts:
        results["classify"] = classify_part(runs, args)
        results["classify"]["settings"] = {"input_size": args.classify_size, "epochs": args.epochs,
                                           "few_epochs": args.few_epochs}
    write(results, out_json)


def write(results: dict, out_json: Path) -> None:
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out_json)
    plot(results, out_json.with_suffix(".png"))
    print(f"wrote {out_json} and {out_json.with_suffix('.png')}")


if __name__ == "__main__":
    main()

"""Domain-shift benchmark: plain fine-tuning vs L2-SP vs Deep CORAL vs DANN, 3 seeds each.

Data: NEU steel surface defects (../shared/data/neu_surface_defect_64.npz, 6 classes x 300, 64 px grayscale).
One fixed stratified split (seed 0): source train 50%, source val 10%, a disjoint 20% whose *shifted* copies
are the unlabelled target data for CORAL / DANN, and 20% test. The target domain imitates another camera:
every image goes through a deterministic "device change" (contrast, gamma, Gaussian blur, sensor noise; the
numbers are in the JSON). Training uses source labels only; target labels are never read in training.
Reported: accuracy and macro-F1 on the shifted test images (target) and on the clean test images (source).

Resumable: each finished run is stored in results.json and skipped on a re-run with the same settings.

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models TLZOO_DATA_DIR=../shared/data \\
        python benchmarks/domain_shift.py [--methods plain l2sp coral dann] [--seeds 0 1 2] [--variant NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import find_data  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "domain_shift"
METHODS = ("plain", "l2sp", "coral", "dann")


def device_shift(x: np.ndarray, contrast: float, gamma: float, blur: float, noise: float, seed: int) -> np.ndarray:
    """Another camera: contrast scaled about mid-grey, a gamma curve, Gaussian blur (sigma in px), additive
    Gaussian noise (sd in grey levels). Deterministic for ``seed``."""
    import tensorflow as tf

    f = x.astype(np.float32)
    f = np.clip(128.0 + contrast * (f - 128.0), 0, 255)
    f = 255.0 * (f / 255.0) ** gamma
    if blur > 0:
        r = int(np.ceil(3 * blur))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / blur) ** 2)
        k = (k / k.sum()).astype(np.float32)
        kernel = tf.constant(np.outer(k, k)[:, :, None, None])
        f = tf.nn.conv2d(tf.pad(f, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT"), kernel, 1, "VALID").numpy()
    f = f + np.random.default_rng(seed).normal(0, noise, f.shape)
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def build_data(work: Path, shift: dict) -> dict:
    from tlzoo.data import stratified_split

    with np.load(find_data("neu_surface_defect_64.npz")) as f:
        x, y, names = f["images"], f["labels"].astype(np.int64), f["class_names"]
    train, val, unl, test = stratified_split(y, [0.1, 0.2, 0.2], seed=0)  # train = the remaining 50%
    source = work / "source.npz"
    np.savez(source, train_images=x[train], train_labels=y[train], val_images=x[val], val_labels=y[val],
             test_images=x[test], test_labels=y[test], class_names=names)
    target = work / "target_unlabelled.npz"
    np.savez(target, images=device_shift(x[unl], **shift, seed=1))  # no labels at all
    return {"source": source, "target": target, "test_x": x[test], "test_y": y[test],
            "test_shifted": device_shift(x[test], **shift, seed=2), "class_names": [str(n) for n in names],
            "sizes": {"train": len(train), "val": len(val), "target_unlabelled": len(unl), "test": len(test)}}


def run_one(method: str, seed: int, data: dict, args: argparse.Namespace, runs: Path) -> dict:
    import tlzoo
    from tlzoo.evaluation.metrics import multiclass_metrics
    from tlzoo.train.recipe import AdaptConfig, load_model

    extra: dict = {}
    if method == "l2sp":
        extra = {"l2sp": args.l2sp}
    elif method in ("coral", "dann"):
        extra = {"domain_adaptation": method, "target_data": str(data["target"]),
                 "da_weight": args.coral_weight if method == "coral" else args.dann_weight}
    t0 = time.perf_counter()
    cfg = AdaptConfig(plugin="defect-detection", data=str(data["source"]), out=str(runs / f"{method}_s{seed}"),
                      backbone=args.backbone, weights="imagenet", input_size=args.size, batch_size=args.batch_size,
                      seed=seed, overwrite=True, verbose=0, calibration="none",
                      schedule={"kind": "fine_tune", "epochs": args.epochs, "freeze_epochs": args.head_epochs,
                                "base_lr": args.lr}, **extra)
    res = tlzoo.adapt(cfg)
    model = load_model(res.run_dir / "model.keras")
    p_tgt = model.predict(data["test_shifted"], batch_size=128, verbose=0)
    tgt = multiclass_metrics(data["test_y"], p_tgt)
    src = res.metrics["test"]
    last = res.history[-1]
    return {"target_accuracy": tgt["accuracy"], "target_macro_f1": tgt["macro_f1"],
            "source_accuracy": src["accuracy"], "source_macro_f1": src["macro_f1"],
            "best_epoch": res.metrics["best_epoch"], "wall_s": round(time.perf_counter() - t0, 1),
            "last_epoch_logs": {k: v for k, v in last.items() if isinstance(v, float)}}


def summarise(runs: dict, methods: list[str], seeds: list[int]) -> dict:
    """mean, sample std (ddof 1) and per-seed values; a method beats plain when its mean target accuracy
    exceeds plain's by more than both standard deviations AND it is higher for every seed (paired)."""
    out: dict = {}
    for m in methods:
        vals = {k: [runs[f"{m}/seed{s}"][k] for s in seeds if f"{m}/seed{s}" in runs]
                for k in ("target_accuracy", "source_accuracy", "target_macro_f1")}
        if not vals["target_accuracy"]:
            continue
        out[m] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                      "per_seed": v} for k, v in vals.items()}
    if "plain" in out:
        base = out["plain"]["target_accuracy"]
        for m, rec in out.items():
            if m == "plain":
                continue
            t = rec["target_accuracy"]
            diff = t["mean"] - base["mean"]
            paired = [a - b for a, b in zip(t["per_seed"], base["per_seed"])]
            spread = max(t["std"] or 0.0, base["std"] or 0.0)
            # the paired view: same seed, same split and initial head for both methods; its spread is the
            # std of the per-seed differences (seed-to-seed variation common to both cancels)
            paired_std = float(np.std(paired, ddof=1)) if len(paired) > 1 else None
            rec["vs_plain"] = {"mean_difference": diff, "paired_differences": paired, "larger_std": spread,
                               "paired_std": paired_std,
                               "paired_beyond_spread": bool(paired_std is not None and diff > 2 * paired_std
                                                            and all(p > 0 for p in paired)),
                               "beats_plain_beyond_spread": bool(diff > spread and all(p > 0 for p in paired)
                                                                 and len(paired) == len(seeds))}
    return out


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], "target_accuracy", "shifted target test"),
                           (axes[1], "source_accuracy", "clean source test")):
        means = [summary[m][key]["mean"] for m in methods]
        stds = [summary[m][key]["std"] or 0 for m in methods]
        ax.bar(methods, means, yerr=stds, capsize=4, color="#9ecae1", edgecolor="k")
        for i, m in enumerate(methods):
            pts = summary[m][key]["per_seed"]
            ax.scatter([i + d for d in np.linspace(-0.15, 0.15, len(pts))], pts, color="k", s=14, zorder=3)
        ax.set_title(f"accuracy, {label}")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def examples(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = data["class_names"]
    fig, axes = plt.subplots(2, len(names), figsize=(2 * len(names), 4.4))
    for c, name in enumerate(names):
        i = int(np.flatnonzero(data["test_y"] == c)[0])
        for row, (imgs, label) in enumerate(((data["test_x"], "source"), (data["test_shifted"], "shifted target"))):
            axes[row, c].imshow(imgs[i, ..., 0], cmap="gray", vmin=0, vmax=255)
            axes[row, c].set_title(f"{name}\n{label}" if row == 0 else label, fontsize=8)
            axes[row, c].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variant", default="main", help="a name for these settings (results are kept per variant)")
    ap.add_argument("--baseline-variant", default=None,
                    help="compare with the plain runs of this variant (same data, backbone and schedule) "
                         "instead of running plain again")
    ap.add_argument("--backbone", default="mobilenet_025")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--head-epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--l2sp", type=float, default=0.01)
    ap.add_argument("--coral-weight", type=float, default=1.0)
    ap.add_argument("--dann-weight", type=float, default=1.0)
    ap.add_argument("--contrast", type=float, default=0.6)
    ap.add_argument("--gamma", type=float, default=1.6)
    ap.add_argument("--blur", type=float, default=1.0)
    ap.add_argument("--noise", type=float, default=12.0)
    ap.add_argument("--runs", default=None, help="where run directories go (default: a temporary folder)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    from tlzoo.runs.directory import write_text_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"variants": {}}
    shift = {"contrast": args.contrast, "gamma": args.gamma, "blur": args.blur, "noise": args.noise}
    settings = {k: getattr(args, k) for k in ("backbone", "size", "batch_size", "epochs", "head_epochs", "lr", "l2sp",
                                              "coral_weight", "dann_weight")} | {"shift": shift}
    variant = results["variants"].setdefault(args.variant, {"settings": settings, "runs": {}})
    if variant["settings"] != settings:
        raise SystemExit(f"variant {args.variant!r} was run with other settings {variant['settings']}; "
                         "give another --variant name")
    work = Path(tempfile.mkdtemp(prefix="domain_shift_"))
    runs_dir = Path(args.runs) if args.runs else work / "runs"
    data = build_data(work, shift)
    results.update(
        data={"file": "neu_surface_defect_64.npz", "split": "stratified, seed 0: train 50% / val 10% / "
              "unlabelled-target part 20% (shifted, labels never read) / test 20%", "sizes": data["sizes"],
              "target_domain": {**shift, "recipe": "f = 128 + contrast (x - 128); f = 255 (f/255)^gamma; Gaussian "
                                "blur sigma=blur px (reflect padding); + N(0, noise^2) grey levels; round, clip 0..255",
                                "noise_seeds": {"target_unlabelled": 1, "target_test": 2}}},
        machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                 "note": "shared CPU cores; timings are noisy"},
        protocol="labels of the source train split only; target accuracy on the shifted test images, source "
                 "accuracy on the same test images unshifted; the weights kept are the best source-val epoch",
    )
    examples(data, out / "examples.png")

    def with_baseline() -> dict:
        if not args.baseline_variant:
            return variant["runs"]
        variant["plain_runs_from"] = args.baseline_variant
        base = results["variants"][args.baseline_variant]["runs"]
        return {**{k: v for k, v in base.items() if k.startswith("plain/")}, **variant["runs"]}

    for method in args.methods:
        for seed in args.seeds:
            key = f"{method}/seed{seed}"
            if key in variant["runs"]:
                print(f"[{args.variant}] {key}: done before, skipped", flush=True)
                continue
            print(f"[{args.variant}] {key}: training...", flush=True)
            variant["runs"][key] = run_one(method, seed, data, args, runs_dir)
            r = variant["runs"][key]
            print(f"[{args.variant}] {key}: target acc {r['target_accuracy']:.4f}, source acc "
                  f"{r['source_accuracy']:.4f} ({r['wall_s']} s)", flush=True)
            variant["summary"] = summarise(with_baseline(), list(METHODS), args.seeds)
            write_text_atomic(results_path, json.dumps(results, indent=2) + "\n")
    variant["summary"] = summarise(with_baseline(), list(METHODS), args.seeds)
    write_text_atomic(results_path, json.dumps(results, indent=2) + "\n")
    if variant["summary"]:
        s = settings
        name = "domain_shift.png" if args.variant == "main" else f"domain_shift_{args.variant}.png"
        plot(variant["summary"], out / name,
             f"NEU, {s['backbone']} {s['size']} px, fine_tune {s['head_epochs']}+{s['epochs']} epochs; shift: contrast "
             f"x{shift['contrast']}, gamma {shift['gamma']}, blur {shift['blur']} px, noise {shift['noise']}")
    for m, rec in variant["summary"].items():
        t, so = rec["target_accuracy"], rec["source_accuracy"]
        verdict = rec.get("vs_plain", {}).get("beats_plain_beyond_spread")
        print(f"{m:6s} target {t['mean']:.4f} ± {t['std'] or 0:.4f} {[round(v, 4) for v in t['per_seed']]}  "
              f"source {so['mean']:.4f} ± {so['std'] or 0:.4f}"
              + ("" if verdict is None else f"  beats plain: {verdict}"))


if __name__ == "__main__":
    main()

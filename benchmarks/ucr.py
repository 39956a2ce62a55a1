"""UCR / UEA series classification with the ``timeseries-classification`` plugin, against the published
FCN, ResNet and InceptionTime accuracies and a 1-NN DTW baseline computed here.

Sets (bundled in the aeon 1.6.0 wheel's source tree: ``pip download --no-deps aeon==1.6.0``, unzip, and
point ``--data-dir`` or ``$TLZOO_UCR_DIR`` at ``aeon/datasets/data``): GunPoint, ItalyPowerDemand,
BasicMotions (6 channels) and PickupGestureWiimoteZ (variable length). The other bundled sets are left out
of every choice made here, for independent checks.

Protocol: the official TRAIN / TEST split; the plugin's defaults (a stratified fifth of TRAIN held out for
early stopping on validation loss, z-normalisation per series and channel, up to 300 epochs with patience
50); each time-series backbone from scratch and after masked-value pretraining on the same TRAIN series
(no labels, no test series), for each seed. Published figures: the mean test accuracy of hfawaz/dl-4-tsc's
five FCN and ResNet runs (results/results-ucr-128.csv) and InceptionTime's ensemble
(hfawaz/InceptionTime results-InceptionTime-128.csv); those runs trained on all of TRAIN (FCN 2000 epochs,
ResNet and each of InceptionTime's five networks 1500, the learning rate halved on training-loss plateaus) and
kept the checkpoint of lowest training loss. 1-NN DTW: full window, on the z-normalised
series at their own lengths (dependent DTW for several channels), computed here.

    python benchmarks/ucr.py [--sets GunPoint ...] [--backbones ts_fcn ...] [--seeds 0 1 2]

Writes ucr.json (updated after every run: an interrupted benchmark resumes where it stopped) and ucr.png.
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

SETS = ("GunPoint", "ItalyPowerDemand", "BasicMotions", "PickupGestureWiimoteZ")
BACKBONES = ("ts_fcn", "ts_resnet", "ts_inception", "ts_transformer")

# Mean test accuracy over the published runs (UCR archive 2018 versions). No table of these repositories
# covers BasicMotions (their multivariate results use the older MTS archive).
PUBLISHED = {
    "source": {
        "fcn, resnet": "hfawaz/dl-4-tsc@e0233ef results/results-ucr-128.csv, mean of 5 runs",
        "inception_time": "hfawaz/InceptionTime@952d115 results-InceptionTime-128.csv, ensemble of 5",
    },
    "GunPoint": {"fcn": 1.0, "resnet": 0.9907, "inception_time": 1.0},
    "ItalyPowerDemand": {"fcn": 0.9629, "resnet": 0.9615, "inception_time": 0.9650},
    "PickupGestureWiimoteZ": {"fcn": 0.744, "resnet": 0.704, "inception_time": 0.76},
    "BasicMotions": {},
}


def data_dir(arg: str | None) -> Path:
    for base in (arg, os.environ.get("TLZOO_UCR_DIR")):
        if base and Path(base).is_dir():
            return Path(base)
    raise SystemExit("UCR / UEA sets not found: pass --data-dir or set TLZOO_UCR_DIR to aeon/datasets/data "
                     "(pip download --no-deps aeon==1.6.0, then unzip the wheel)")


def train_file(root: Path, name: str) -> Path:
    for suffix in (".ts", ".arff", ".tsv", ".txt"):
        path = root / name / f"{name}_TRAIN{suffix}"
        if path.is_file():
            return path
    raise SystemExit(f"no {name}_TRAIN file under {root / name}")


# ---------------------------------------------------------------------------------------------- 1-NN DTW
def dtw_distances(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Full-window DTW distance between every series of ``a`` and of ``b`` ([time, channels] each, any
    lengths; squared Euclidean cost over channels, i.e. dependent DTW). All pairs advance together, one
    cell (i, j) at a time; a pair's distance is read at its own last cell, so padding past a series' end
    never enters it."""
    ta, tb = max(len(s) for s in a), max(len(s) for s in b)
    channels = a[0].shape[1]
    pa, pb = np.zeros((len(a), ta, channels)), np.zeros((len(b), tb, channels))
    for out, series in ((pa, a), (pb, b)):
        for k, s in enumerate(series):
            out[k, :len(s)] = s
    la, lb = np.array([len(s) for s in a]), np.array([len(s) for s in b])
    result = np.full((len(a), len(b)), np.inf)
    prev = np.full((len(a), len(b), tb), np.inf)
    for i in range(ta):
        cost = ((pa[:, None, i, None, :] - pb[None, :, :, :]) ** 2).sum(-1)  # [a, b, tb]
        row = np.empty_like(prev)
        row[..., 0] = cost[..., 0] + (prev[..., 0] if i else 0.0)
        for j in range(1, tb):
            best = np.minimum(row[..., j - 1], prev[..., j - 1] if i else np.inf)
            row[..., j] = cost[..., j] + np.minimum(best, prev[..., j])
        ends = la == i + 1
        if ends.any():
            result[ends] = row[ends][:, np.arange(len(b)), lb - 1]
        prev = row
    return np.sqrt(result)


def one_nn_dtw(data: Path) -> dict:
    """1-NN DTW test accuracy on the official split, on the series as the plugin prepares them (z-normalised per
    channel) at their own lengths."""
    from tlzoo.plugin import get_plugin

    (train, train_y), (test, test_y), _ = get_plugin("timeseries-classification").read_series(str(data))
    t0 = time.perf_counter()
    d = dtw_distances(test, train)
    pred = np.asarray(train_y)[d.argmin(1)]
    return {"accuracy": float(np.mean(pred == np.asarray(test_y))), "n_train": len(train), "n_test": len(test),
            "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------------------------- runs
def run_one(data: Path, backbone: str, seed: int, pretrained: bool, work: Path, pretrain_epochs: int) -> dict:
    from tlzoo.train.recipe import adapt
    from tlzoo.zoo.pretrain import pretrain

    t0 = time.perf_counter()
    row: dict = {"backbone": backbone, "seed": seed, "pretrained": pretrained}
    if pretrained:
        name = f"ucr_{data.parent.name}_{backbone}_s{seed}"
        p = pretrain(plugin="timeseries-classification", data=str(data), name=name, backbone=backbone,
                     objective="masked", epochs=pretrain_epochs, batch_size=16, seed=seed, overwrite=True, verbose=0)
        row.update(pretrain_epochs=pretrain_epochs, pretrain_final_loss=round(float(p.history[-1]), 5))
        backbone = name
    r = adapt(plugin="timeseries-classification", data=str(data), backbone=backbone, seed=seed,
              out=str(work / f"{data.parent.name}-{row['backbone']}-{seed}-{int(pretrained)}"), overwrite=True,
              verbose=0)
    m = r.metrics
    row.update(accuracy=float(m["test"]["accuracy"]), macro_f1=m["test"].get("macro_f1"),
               best_epoch=m.get("best_epoch"), n_train=m.get("n_train"), n_val=m["val"].get("n"),
               seconds=round(time.perf_counter() - t0, 1))
    return row


def summarise(results: dict) -> dict:
    table = {}
    for name, entry in results["sets"].items():
        arms = {}
        for row in entry["runs"]:
            key = f"{row['backbone']}{' +masked' if row['pretrained'] else ''}"
            arms.setdefault(key, []).append(row["accuracy"])
        table[name] = {"arms": {k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                                    "values": v} for k, v in arms.items()},
                       "one_nn_dtw": entry["one_nn_dtw"]["accuracy"], "published": PUBLISHED.get(name, {})}
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["scratch", "masked"], choices=["scratch", "masked"])
    ap.add_argument("--pretrain-epochs", type=int, default=100)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    root = data_dir(args.data_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ucr.json"
    results = json.loads(path.read_text()) if path.is_file() else {"sets": {}}
    from shared_data import cpu_name

    results.update(protocol=__doc__.split("\n\n")[2].replace("\n", " "), published_source=PUBLISHED["source"],
                   cpu=cpu_name())
    work = Path(tempfile.mkdtemp(prefix="tlzoo-ucr-"))
    os.environ["TLZOO_HOME"] = str(work / "home")  # pretrained entries stay out of the user's zoo

    def save() -> None:
        results["table"] = summarise(results)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(path)
        plot(results, out / "ucr.png")

    for name in args.sets:
        data = train_file(root, name)
        entry = results["sets"].setdefault(name, {"runs": []})
        if "one_nn_dtw" not in entry:
            entry["one_nn_dtw"] = one_nn_dtw(data)
            print(f"{name}: 1-NN DTW {entry['one_nn_dtw']['accuracy']:.4f}", flush=True)
            save()
        done = {(r["backbone"], r["seed"], r["pretrained"]) for r in entry["runs"]}
        for seed in args.seeds:  # seed by seed: a stopped benchmark leaves whole seeds
            for backbone in args.backbones:
                for pretrained in (arm == "masked" for arm in args.arms):
                    if (backbone, seed, pretrained) in done:
                        continue
                    row = run_one(data, backbone, seed, pretrained, work, args.pretrain_epochs)
                    entry["runs"].append(row)
                    print(f"{name} {backbone}{' +masked' if pretrained else ''} seed {seed}: accuracy "
                          f"{row['accuracy']:.4f} (best epoch {row['best_epoch']}, {row['seconds']} s)", flush=True)
                    save()
    print(json.dumps(results["table"], indent=1))
    return 0


def plot(results: dict, path: Path) -> None:
    from tlzoo.evaluation.plots import plt

    table = results.get("table") or {}
    names = [n for n in SETS if n in table]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        t = table[name]
        arms = sorted(t["arms"])
        for i, arm in enumerate(arms):
            v = t["arms"][arm]["values"]
            ax.scatter([i] * len(v), v, color="C1" if "masked" in arm else "C0", s=18, alpha=0.7)
            ax.errorbar([i], [np.mean(v)], yerr=[t["arms"][arm]["std"]], fmt="_", color="k", capsize=4)
        refs = [("1-NN DTW", t["one_nn_dtw"], "grey")] + [
            (f"published {k}", v, c) for (k, v), c in zip(t["published"].items(), ("C2", "C3", "C4"))]
        for label, value, color in refs:
            ax.axhline(value, color=color, ls="--", lw=1, label=f"{label} {value:.3f}")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels([a.replace("ts_", "").replace(" +masked", "\n+masked") for a in arms], fontsize=7)
        ax.set(title=name, ylabel="test accuracy")
        ax.legend(fontsize=6, loc="lower left")
    fig.suptitle("UCR / UEA official splits: tlzoo timeseries-classification (dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

"""Inference latency of one run's exports side by side: Keras, SavedModel, ONNX Runtime, LiteRT.

Exports the run (SavedModel, ONNX, TFLite float32 and dynamic-range int8; or reuses --export-dir,
after `tlzoo verify`), then times each runtime on the same raw uint8 batches, at batch 1 and 32 by
default. Rounds are interleaved (every runtime once per round) so a change in machine load hits
all of them alike. Every runtime gets the same thread count (--threads, default all cores).
Baseline for the ratios: Keras `predict_on_batch` (the compiled predict step); `model(x)` called
eagerly is reported too. Writes benchmarks/results/export_latency.json and .png.

    python benchmarks/export_latency.py runs/pneumonia            # or $TLZOO_BENCH_RUN
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from shared_data import cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
BASELINE = "keras_predict_on_batch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", nargs="?", default=os.environ.get("TLZOO_BENCH_RUN"),
                    help="run directory (default: $TLZOO_BENCH_RUN), e.g. the PneumoniaMNIST run")
    ap.add_argument("--export-dir", help="an existing export of the run (verified first); default: export now")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=60, help="timed calls per runtime and batch size")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-int8", action="store_true", help="leave out the dynamic-range int8 TFLite model")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if not args.run_dir:
        raise SystemExit("give a run directory (or set TLZOO_BENCH_RUN)")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    import tlzoo

    run_dir = Path(args.run_dir)
    formats = ["savedmodel", "onnx", "tflite"] + ([] if args.no_int8 else ["tflite_int8"])
    scratch = None
    if args.export_dir:
        export_dir = Path(args.export_dir)
        tlzoo.verify(export_dir)
    else:
        scratch = tempfile.TemporaryDirectory(prefix="tlzoo-latency-")
        export_dir = Path(scratch.name) / "export"
        tlzoo.export(run_dir, formats=formats, out=export_dir, test_metrics=False, verbose=1)
    try:
        _measure(args, run_dir, export_dir, formats, exported_here=scratch is not None)
    finally:
        if scratch is not None:
            scratch.cleanup()


def _measure(args: argparse.Namespace, run_dir: Path, export_dir: Path, formats: list[str],
             exported_here: bool) -> None:
    import keras

    from tlzoo.deploy.export import (
        Contract,
        KerasRunner,
        _read_export_info,
        check_manifest,
        load_runner,
    )

    check_manifest(export_dir)
    info = _read_export_info(export_dir)
    contract = Contract.from_dict(info["contract"])
    formats = [f for f in formats if f in info["formats"]]

    import yaml

    import tlzoo.model.layers  # noqa: F401
    from tlzoo.train.config import recorded

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    from tlzoo.train.recipe import run_plugin

    run_plugin(recorded(config))
    model = keras.saving.load_model(run_dir / "model.keras", compile=False, safe_mode=True)
    keras_call = KerasRunner(model, contract)

    samples = np.load(export_dir / info["samples"]["inputs"], allow_pickle=False)
    runners = {
        "keras_call": keras_call,
        BASELINE: lambda x: model.predict_on_batch(np.asarray(x, np.float32)),
    }
    for fmt in formats:
        runners[fmt] = load_runner(fmt, export_dir / info["formats"][fmt]["path"], contract, num_threads=args.threads)

    results: dict[str, dict[str, dict[str, float]]] = {name: {} for name in runners}
    for batch in args.batches:
        x = np.resize(samples, (batch, *samples.shape[1:])).astype(samples.dtype)
        for _name, run in runners.items():  # warm-up (tracing, allocation, resizing to this batch)
            for _ in range(args.warmup):
                run(x)
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            ms = np.array(ts) * 1e3
            results[name][str(batch)] = {
                "median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
                "p90_ms": float(np.percentile(ms, 90)), "mean_ms": float(ms.mean()), "n": len(ms),
                "images_per_s": float(batch / np.median(ms) * 1e3),
            }
        print(f"batch {batch}: " + ", ".join(f"{n} {results[n][str(batch)]['median_ms']:.2f} ms" for n in runners),
              flush=True)

    ratios = {name: {b: results[name][b]["median_ms"] / results[BASELINE][b]["median_ms"] for b in results[name]}
              for name in runners}
    report = {
        "what": "median latency per call on the same raw uint8 batch; ratio = runtime / Keras predict_on_batch",
        "run_dir": str(run_dir.resolve()),
        "export_dir": "exported to a temporary directory by this script" if exported_here else str(export_dir),
        "input": contract.to_dict()["input"],
        "batches": args.batches,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "threads": args.threads,
        "baseline": BASELINE,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "versions": info.get("versions"),
        "artefact_bytes": {f: info["formats"][f]["bytes"] for f in formats},
        "parity_max_abs_diff": {f: info["parity"][f]["max_abs_diff"] for f in formats if f in info.get("parity", {})},
        "latency": results,
        "ratio_vs_keras": ratios,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, out / "export_latency.png")
    print(f"wrote {out / 'export_latency.json'} and .png")
    header = f"{'runtime':24}" + "".join(f"{'batch ' + str(b) + ' ms':>14}{'x Keras':>9}" for b in args.batches)
    print(header)
    for name in runners:
        print(f"{name:24}" + "".join(f"{results[name][str(b)]['median_ms']:14.2f}{ratios[name][str(b)]:9.2f}"
                                      for b in args.batches))


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["latency"])
    batches = [str(b) for b in report["batches"]]
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False)
    for ax, b in zip(axes[0], batches):
        med = [report["latency"][n][b]["median_ms"] for n in names]
        lo = [m - report["latency"][n][b]["p10_ms"] for n, m in zip(names, med)]
        hi = [report["latency"][n][b]["p90_ms"] - m for n, m in zip(names, med)]
        colors = ["#888888" if n.startswith("keras") else "#3b75af" for n in names]
        bars = ax.bar(range(len(names)), med, yerr=[lo, hi], color=colors, capsize=3)
        for bar, n, top in zip(bars, names, hi):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top, f"{report['ratio_vs_keras'][n][b]:.2f}x",
                    ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), [n.replace("keras_predict_on_batch", "keras\npredict_on_batch")
                                          .replace("keras_call", "keras\nmodel(x)") for n in names], fontsize=8)
        ax.set_ylabel("median latency per call (ms), p10-p90")
        ax.set_title(f"batch {b}")
    shape = report["input"]["shape"]
    fig.suptitle(f"export latency, input {report['input']['dtype']} {shape[1:]}, {report['threads']} threads, "
                 f"{report['machine']['cpu'][:40]}\nratio vs Keras predict_on_batch above bars", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

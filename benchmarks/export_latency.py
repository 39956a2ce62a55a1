"""Every export format of one or more runs side by side: parity, label agreement with Keras on the
whole test split, test metric, size, and inference latency at batch 1 and 32.

Exports each run in every format (SavedModel, ONNX, OpenVINO, TFLite float32 / fp16 / dynamic-range
int8 / full-integer int8; or reuses --export-dir for a single run, after `tlzoo verify`), then times
each runtime on the same raw uint8 batches. Rounds are interleaved (every runtime once per round) so
a change in machine load hits all of them alike. Every runtime gets the same thread count (--threads,
default all cores). Baseline for the ratios: Keras `predict_on_batch` (the compiled predict step);
`model(x)` called eagerly (through the exported serving function) is reported too.
Writes benchmarks/results/export_latency.json and .png.

    python benchmarks/export_latency.py runs/pneumonia runs/neu     # or $TLZOO_BENCH_RUN
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
    ap.add_argument("run_dirs", nargs="*", default=[d for d in [os.environ.get("TLZOO_BENCH_RUN")] if d],
                    help="run directories (default: $TLZOO_BENCH_RUN), e.g. the PneumoniaMNIST and NEU runs")
    ap.add_argument("--export-dir", help="an existing export of a single run (verified first); default: export now")
    ap.add_argument("--formats", nargs="+", help="formats to export and time (default: every format)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=40, help="timed calls per runtime and batch size")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if not args.run_dirs:
        raise SystemExit("give run directories (or set TLZOO_BENCH_RUN)")
    if args.export_dir and len(args.run_dirs) != 1:
        raise SystemExit("--export-dir goes with a single run directory")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    import tlzoo
    from tlzoo.deploy.formats import ExportFormat

    formats = args.formats or [f.value for f in ExportFormat]
    report = {"what": "per run and format: parity with Keras, label agreement with Keras on the whole test split, "
                      "test metric, size, and median latency per call on the same raw uint8 batch "
                      "(ratio = runtime / Keras predict_on_batch)",
              "batches": args.batches, "rounds": args.rounds, "warmup": args.warmup, "threads": args.threads,
              "baseline": BASELINE, "runs": {}}
    for run_dir in map(Path, args.run_dirs):
        with tempfile.TemporaryDirectory(prefix="tlzoo-latency-") as scratch:
            if args.export_dir:
                export_dir = Path(args.export_dir)
                tlzoo.verify(export_dir)
            else:
                export_dir = Path(scratch) / "export"
                tlzoo.export(run_dir, formats=formats, out=export_dir, verbose=1)
            report["runs"][run_dir.name] = _measure(args, run_dir, export_dir, formats,
                                                    exported_here=not args.export_dir)
    report["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                         "load_average_at_end": list(os.getloadavg())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, out / "export_latency.png")
    print(f"wrote {out / 'export_latency.json'} and .png")


def _measure(args: argparse.Namespace, run_dir: Path, export_dir: Path, formats: list[str],
             exported_here: bool) -> dict:
    import keras
    import yaml

    import tlzoo.model.layers  # noqa: F401
    from tlzoo.deploy.contract import Contract
    from tlzoo.deploy.export import _read_export_info
    from tlzoo.deploy.manifest import check_manifest
    from tlzoo.deploy.runners import KerasRunner, load_runner
    from tlzoo.train.config import recorded
    from tlzoo.train.recipe import run_plugin

    check_manifest(export_dir)
    info = _read_export_info(export_dir)
    contract = Contract.from_dict(info["contract"])
    formats = [f for f in formats if f in info["formats"]]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    run_plugin(recorded(config))
    model = keras.saving.load_model(run_dir / "model.keras", compile=False, safe_mode=True)

    samples = np.load(export_dir / info["samples"]["inputs"], allow_pickle=False)
    runners = {"keras_call": KerasRunner(model, contract),
               BASELINE: lambda x: model.predict_on_batch(np.asarray(x, np.float32))}
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
        print(f"{run_dir.name} batch {batch}: "
              + ", ".join(f"{n} {results[n][str(batch)]['median_ms']:.2f} ms" for n in runners), flush=True)

    ratios = {name: {b: results[name][b]["median_ms"] / results[BASELINE][b]["median_ms"] for b in results[name]}
              for name in runners}
    tm = info.get("test_metrics", {})
    metric = next((k for k in ("roc_auc", "accuracy") if k in tm.get("keras", {})), None)
    per_format = {f: {"precision": info["formats"][f]["precision"], "bytes": info["formats"][f]["bytes"],
                      "bounds": info["parity"][f]["bounds"],
                      "parity_max_abs_diff": info["parity"][f]["max_abs_diff"],
                      "parity_mean_abs_diff": info["parity"][f]["mean_abs_diff"],
                      "parity_label_agreement": info["parity"][f]["agreement"],
                      "parity_n": info["parity"][f]["n"],
                      "test_label_agreement_with_keras": tm.get(f, {}).get("label_agreement_with_keras"),
                      **({f"test_{metric}": tm.get(f, {}).get(metric)} if metric else {})}
                  for f in formats}
    run = {"run_dir": str(run_dir.resolve()),
           "export_dir": "exported to a temporary directory by this script" if exported_here else str(export_dir),
           "input": contract.to_dict()["input"], "versions": info.get("versions"),
           "keras_test": {metric: tm.get("keras", {}).get(metric)} if metric else {},
           "formats": per_format, "latency": results, "ratio_vs_keras": ratios}
    header = f"{'runtime':24}" + "".join(f"{'batch ' + str(b) + ' ms':>14}{'x Keras':>9}" for b in args.batches)
    print(header + f"{'agree (test)':>14}{'max diff':>10}")
    for name in runners:
        extra = (f"{per_format[name]['test_label_agreement_with_keras'] or float('nan'):14.4f}"
                 f"{per_format[name]['parity_max_abs_diff']:10.2g}") if name in per_format else ""
        print(f"{name:24}" + "".join(f"{results[name][str(b)]['median_ms']:14.2f}{ratios[name][str(b)]:9.2f}"
                                      for b in args.batches) + extra)
    return run


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(report["runs"])
    batches = [str(b) for b in report["batches"]]
    fig, axes = plt.subplots(len(runs), len(batches), figsize=(6.5 * len(batches), 4.4 * len(runs)), squeeze=False)
    for row, run_name in zip(axes, runs):
        run = report["runs"][run_name]
        names = list(run["latency"])
        for ax, b in zip(row, batches):
            med = [run["latency"][n][b]["median_ms"] for n in names]
            lo = [m - run["latency"][n][b]["p10_ms"] for n, m in zip(names, med)]
            hi = [run["latency"][n][b]["p90_ms"] - m for n, m in zip(names, med)]
            colors = ["#888888" if n.startswith("keras") else "#3b75af" if "int8" not in n and "fp16" not in n
                      else "#d08030" for n in names]
            bars = ax.bar(range(len(names)), med, yerr=[lo, hi], color=colors, capsize=3)
            for bar, n, top in zip(bars, names, hi):
                agree = run["formats"].get(n, {}).get("test_label_agreement_with_keras")
                text = f"{run['ratio_vs_keras'][n][b]:.2f}x" + (f"\n{agree:.1%}" if agree is not None else "")
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top, text, ha="center", va="bottom",
                        fontsize=7)
            ax.set_xticks(range(len(names)), [n.replace("keras_predict_on_batch", "keras\npredict")
                                              .replace("keras_call", "keras\nmodel(x)").replace("_", "\n", 1)
                                              for n in names], fontsize=7)
            ax.set_ylabel("median ms per call (p10-p90)")
            ax.set_title(f"{run_name}: batch {b}, input {run['input']['dtype']} {run['input']['model_shape'][1:]}",
                         fontsize=9)
    fig.suptitle(f"export formats, {report['threads']} threads, {report['machine']['cpu'][:40]}; above bars: "
                 f"latency ratio vs Keras predict_on_batch, label agreement with Keras on the test split", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

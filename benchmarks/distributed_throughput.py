"""Training throughput of `tlzoo adapt` on one process and on two multi-worker processes.

Same data, recipe and global batch in every condition (PneumoniaMNIST, a stratified label
fraction, mobilenet_025 with ImageNet weights, the medical-imaging plugin, full fine-tuning):
  one-2cores      one process, both cores (`--strategy one`)
  one-1core       one process pinned to one core: what each worker has in the two-worker case
  two-workers     two processes on 127.0.0.1 (`--strategy multiworker`, TF_CONFIG), one core each
Images/s are taken from the epochs of the fine-tuning stage after its first (tracing) epoch.
Scaling efficiency = two-workers / (2 x one-1core): 1.0 would mean the all-reduce cost nothing.
On this 2-core machine two workers cannot beat one process using both cores; the figure says
how much synchronising gradients over gRPC costs. Writes results/distributed_throughput.json/.png.

    TLZOO_WEIGHTS_DIR=../shared/weights/keras/models python benchmarks/distributed_throughput.py
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared_data import find_data

from tlzoo.train.distribution import free_ports

HERE = Path(__file__).resolve().parent



def adapt_args(data: Path, out: Path, args: argparse.Namespace, strategy: str) -> list[str]:
    return [sys.executable, "-m", "tlzoo.cli.main", "adapt", "--plugin", "medical-imaging", "--data", str(data),
            "--backbone", "mobilenet_025", "--input-size", str(args.input_size), "--batch-size", str(args.batch_size),
            "--label-fraction", str(args.label_fraction), "--schedule", "full", "--head-epochs", "1",
            "--epochs", str(args.epochs), "--out", str(out), "--strategy", strategy]


def throughput(run: Path) -> dict[str, float]:
    with (run / "history.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["stage"] != "head"][1:]  # drop the tracing epoch
    n_train = json.loads((run / "metrics.json").read_text())["n_train"]
    seconds = [float(r["seconds"]) for r in rows]
    return {"images_per_s": n_train * len(seconds) / sum(seconds), "epoch_seconds": seconds, "n_train": n_train,
            "test_roc_auc": json.loads((run / "metrics.json").read_text())["test"]["roc_auc"]}


def run_condition(name: str, data: Path, root: Path, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = root / name
    t0 = time.perf_counter()
    if name == "two-workers":
        ports = free_ports(2)
        procs, logs = [], [root / f"worker{i}.log" for i in range(2)]
        for i in range(2):
            tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                    "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen(["taskset", "-c", str(i), *adapt_args(data, out, args, "multiworker")],
                                          env={**env, "TF_CONFIG": tf_config}, stdout=logs[i].open("w"),
                                          stderr=subprocess.STDOUT))
        codes = [p.wait() for p in procs]
        # every worker prints a sha256 of its final weights: in sync, they are one
        digests = [d for log in logs for d in re.findall(r"final weights sha256 ([0-9a-f]{64})", log.read_text())]
    else:
        digests = []
        pin = ["taskset", "-c", "0"] if name == "one-1core" else []
        codes = [subprocess.call([*pin, *adapt_args(data, out, args, "one")], env=env, stdout=subprocess.DEVNULL)]
    if any(codes):
        raise SystemExit(f"{name}: exit codes {codes}")
    result = throughput(out) | {"wall_s": round(time.perf_counter() - t0, 1)}
    if digests:
        result |= {"worker_weight_digests": digests, "workers_identical": len(digests) == 2 == len(set(digests)) + 1}
    print(f"{name:12} {result['images_per_s']:7.1f} images/s  (epochs {result['epoch_seconds']} s, "
          f"test ROC-AUC {result['test_roc_auc']:.3f})", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label-fraction", type=float, default=1.0)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch, the same in every condition")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    data = find_data()
    root = Path(tempfile.mkdtemp(prefix="tlzoo-dist-bench-"))
    try:
        results = {name: run_condition(name, data, root, args) for name in ("one-2cores", "one-1core", "two-workers")}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    one_core = results["one-1core"]["images_per_s"]
    two = results["two-workers"]["images_per_s"]
    summary = {
        "scaling_efficiency": two / (2 * one_core),
        "two_workers_vs_one_process_2cores": two / results["one-2cores"]["images_per_s"],
        # Per image, the share of a worker's time not spent computing (all-reduce, waiting).
        "communication_overhead": 1 - two / (2 * one_core),
    }
    report = {"settings": vars(args) | {"backbone": "mobilenet_025", "machine_cores": os.cpu_count()},
              "conditions": results, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, summary, out / "distributed_throughput.png")
    print(json.dumps(summary, indent=2))


def plot(results: dict[str, dict[str, float]], summary: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    values = [results[n]["images_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(names, values, color=["#4c72b0", "#8da0cb", "#dd8452"])
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylabel("training images / s")
    ax.set_title(f"fine-tuning throughput; scaling efficiency {summary['scaling_efficiency']:.2f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Latency of each exported format, measured at export on the run's own inputs.

A quick figure for the model card, not a benchmark (``benchmarks/export_latency.py`` is one): per
format and batch size, one warm-up call, then the median of a few timed calls, as many as fit in a
small time budget (at least one). Rounds are interleaved across formats so a change in machine load
hits them alike. Threads: the runners' thread count (ONNX Runtime and LiteRT are given it;
TensorFlow's SavedModel uses its own pool, one thread per CPU by default).
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

BATCH_SIZES = (1, 32)
REPEATS = 5
BUDGET_S = 0.5  # per format and batch size: keeps the whole measurement to a few seconds


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def measure_latency(runners: dict[str, Any], x: np.ndarray, batch_sizes: tuple[int, ...] = BATCH_SIZES,
                    repeats: int = REPEATS, budget_s: float = BUDGET_S) -> dict[str, dict[str, Any]]:
    """{format: {"batch_1": ms, "batch_32": ms, "per_image_batch_32": ms, "repeats": {...}}}: the median
    wall time of a call on the first ``b`` inputs of ``x`` (cycled when it has fewer)."""
    out: dict[str, dict[str, Any]] = {name: {"repeats": {}} for name in runners}
    for b in batch_sizes:
        batch = np.ascontiguousarray(np.resize(x, (b, *x.shape[1:])).astype(x.dtype))
        calls: dict[str, int] = {}
        for name, runner in runners.items():  # warm-up: allocation, graph specialisation to this batch
            t0 = time.perf_counter()
            runner(batch)
            calls[name] = max(1, min(repeats, int(budget_s / max(time.perf_counter() - t0, 1e-6))))
        times: dict[str, list[float]] = {name: [] for name in runners}
        for r in range(max(calls.values())):
            for name, runner in runners.items():
                if r < calls[name]:
                    t0 = time.perf_counter()
                    runner(batch)
                    times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            ms = float(np.median(ts)) * 1e3
            out[name][f"batch_{b}"] = round(ms, 3)
            out[name]["repeats"][f"batch_{b}"] = len(ts)
            if b > 1:
                out[name][f"per_image_batch_{b}"] = round(ms / b, 4)
    return out

"""How long the ``tlzoo`` command takes to answer when it has nothing heavy to do.

Times, in fresh subprocesses (wall clock, median over --runs rounds after one warm-up round),
``tlzoo --help``, ``tlzoo plugins``, ``tlzoo backbones``, ``tlzoo backbones --json`` and a
missing-file error (``tlzoo adapt --plugin medical-imaging --data missing.npz``), and for comparison
``python -c pass`` (the interpreter alone) and ``python -c "import tensorflow"`` (what any of them
cost while the command imported TensorFlow at start-up). Rounds are interleaved (every command once
per round), so a change in machine load hits all of them alike. Each tlzoo run also reports whether
TensorFlow or Keras ended up in ``sys.modules``, and its exit status, so the figures are checked to
be what they claim. The target: every tlzoo command under one second, without TensorFlow.

tlzoo runs as its console script does (``from tlzoo.cli import main``), from this checkout
(PYTHONPATH = the repository and its plugins/ folder, ahead of any installed copy).

Writes startup.json and startup.png into --out (default benchmarks/results/startup).

    python benchmarks/startup.py
    python benchmarks/startup.py --runs 3 --out /tmp/startup_smoke   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from shared_data import cpu_name

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET_S = 1.0
HEAVY = ("tensorflow", "keras")

# The console script's code, plus a report of the heavy modules the command imported.
PROBE = (
    "import json, os, sys\n"
    "from tlzoo.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "with open(os.environ['TLZOO_PROBE'], 'w') as f:\n"
    f"    json.dump(sorted(m for m in {HEAVY!r} if m in sys.modules), f)\n"
    "sys.exit(code)\n"
)

# name -> (argv after the interpreter, is it a tlzoo command, expected exit status)
JOBS: dict[str, tuple[list[str], bool, int]] = {
    "tlzoo --help": (["--help"], True, 0),
    "tlzoo plugins": (["plugins"], True, 0),
    "tlzoo backbones": (["backbones"], True, 0),
    "tlzoo backbones --json": (["backbones", "--json"], True, 0),
    "tlzoo adapt (missing file)": (["adapt", "--plugin", "medical-imaging", "--data", "missing.npz"], True, 2),
    "python -c pass": (["-c", "pass"], False, 0),
    "python -c 'import tensorflow'": (["-c", "import tensorflow"], False, 0),
}


def _env(probe: Path) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONPATH": path, "TLZOO_PROBE": str(probe)}


def run_once(name: str, workdir: Path) -> dict[str, Any]:
    argv, is_tlzoo, expected = JOBS[name]
    probe = workdir / "probe.json"
    probe.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", PROBE, *argv] if is_tlzoo else [sys.executable, *argv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=_env(probe), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": wall, "rc": proc.returncode, "rc_expected": proc.returncode == expected}
    if is_tlzoo:
        out["imported"] = json.loads(probe.read_text()) if probe.is_file() else None
        out["stderr_lines"] = len(proc.stderr.strip().splitlines())
    return out


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("tlzoo", "tensorflow", "keras", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9, help="timed rounds (each runs every command once)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "startup")
    args = ap.parse_args()

    times: dict[str, list[float]] = {name: [] for name in JOBS}
    checks: dict[str, dict[str, Any]] = {name: {"imported": set(), "rc_ok": True, "stderr_lines": set()}
                                         for name in JOBS}
    with tempfile.TemporaryDirectory(prefix="tlzoo-startup-") as tmp:
        workdir = Path(tmp)
        for round_no in range(args.runs + 1):  # round 0 warms the page cache and is not timed
            for name in JOBS:
                r = run_once(name, workdir)
                c = checks[name]
                c["rc_ok"] = c["rc_ok"] and r["rc_expected"]
                if "imported" in r:
                    c["imported"].update(["<no report>"] if r["imported"] is None else r["imported"])
                    c["stderr_lines"].add(r["stderr_lines"])
                if round_no:
                    times[name].append(r["wall_s"])
            print(f"round {round_no}/{args.runs}" + (" (warm-up)" if not round_no else ""), flush=True)

    results = {}
    for name, ts in times.items():
        argv, is_tlzoo, expected = JOBS[name]
        c = checks[name]
        row: dict[str, Any] = {
            "argv": (["tlzoo"] if is_tlzoo else ["python"]) + argv,
            "median_s": round(statistics.median(ts), 3), "min_s": round(min(ts), 3), "max_s": round(max(ts), 3),
            "runs_s": [round(t, 3) for t in ts], "exit_status": expected, "exit_status_as_expected": c["rc_ok"],
        }
        if is_tlzoo:
            row["imported_heavy"] = sorted(c["imported"])
            row["stderr_lines"] = sorted(c["stderr_lines"])
            row["pass"] = bool(c["rc_ok"] and not c["imported"] and row["median_s"] < TARGET_S)
        results[name] = row
    tf_import = results["python -c 'import tensorflow'"]["median_s"]
    summary = {
        "what": "wall time of the tlzoo command in a fresh subprocess (median of the timed rounds, rounds "
                "interleaved), against the interpreter alone and an import of TensorFlow",
        "runs": args.runs, "warmup_rounds": 1, "target_s": TARGET_S,
        "how": "tlzoo runs as its console script does (from tlzoo.cli import main) from this checkout; each run "
               "reports the heavy modules (tensorflow, keras) found in sys.modules at exit",
        "results": results,
        "speedup_vs_tensorflow_import": {name: round(tf_import / r["median_s"], 1)
                                         for name, r in results.items() if name.startswith("tlzoo")},
        "all_pass": all(r["pass"] for r in results.values() if "pass" in r),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": _versions(),
        "note": "a shared machine: other jobs may have run at the same time, so times are noisy; files are in the "
                "page cache after the warm-up round (warm start).",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(summary, args.out / "startup.png")
    print(f"\n{'command':32} {'median s':>9} {'min':>7} {'max':>7}  TensorFlow imported")
    for name, r in results.items():
        heavy = (", ".join(r["imported_heavy"]) or "no") if "imported_heavy" in r else ""
        print(f"{name:32} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f}  {heavy}")
    print(f"all tlzoo commands under {TARGET_S:g} s without TensorFlow: {summary['all_pass']}")
    print(f"results in {args.out}/startup.json and startup.png", flush=True)


def _plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(s["results"].items())
    names = [n for n, _ in rows]
    med = [r["median_s"] for _, r in rows]
    err = [[m - r["min_s"] for m, (_, r) in zip(med, rows)], [r["max_s"] - m for m, (_, r) in zip(med, rows)]]
    colors = ["tab:blue" if n.startswith("tlzoo") else "tab:gray" for n in names]
    colors[names.index("python -c 'import tensorflow'")] = "tab:orange"
    fig, ax = plt.subplots(figsize=(9, 4.5))
    y = range(len(names))[::-1]
    bars = ax.barh(list(y), med, xerr=err, color=colors, capsize=3)
    ax.bar_label(bars, labels=[f"{m:.2f} s" for m in med], padding=4, fontsize=9)
    ax.set_yticks(list(y), names)
    ax.axvline(s["target_s"], color="tab:red", ls="--", lw=1, label=f"target: {s['target_s']:g} s")
    ax.set_xlim(0, max(med + [s["target_s"]]) * 1.25)
    ax.set_xlabel("wall time, s (median; bars: min to max)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"tlzoo start-up without TensorFlow ({s['runs']} runs each, {s['machine']['cores']} cores, "
                 f"TensorFlow {s['versions'].get('tensorflow', '?')})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

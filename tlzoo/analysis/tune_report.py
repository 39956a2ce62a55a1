"""A finished search's results: trial table (CSV, JSON, printed), best configuration as an
``AdaptConfig`` YAML, and a plot of the objective against the trial."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tlzoo.runs.directory import write_json, write_yaml  # noqa: E402

BEST_CONFIG = "best_config.yaml"
PATH_COLOURS = {"cached": "tab:green", "naive": "tab:orange", "recipe": "tab:blue", "?": "grey"}


@dataclass
class TuneResult:
    out: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_config_path: Path | None


def collect(out: Path, oracle: Any, info: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trial the oracle knows, joined with what the worker that ran it recorded."""
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        record_path = out / info["project"] / f"trial_{trial_id}" / info["trial_file"]
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        rows.append({
            "trial": trial_id, "status": str(trial.status), "path": record.get("path", "?"),
            info["objective"]: None if trial.score is None else float(trial.score),
            "seconds": record.get("seconds"), "tuner_id": record.get("tuner_id"),
            "resumed_from_epoch": record.get("resumed_from_epoch"), "rss_mb": record.get("rss_mb"),
            **{k: v for k, v in trial.hyperparameters.values.items()},
        })
    return rows


def write(out: Path, oracle: Any, info: dict[str, Any], *, wall_s: float, verbose: int = 1) -> TuneResult:
    rows = collect(out, oracle, info)
    objective = info["objective"]
    scored = [r for r in rows if r[objective] is not None and np.isfinite(r[objective])]
    best = (max if info["mode"] == "max" else min)(scored, key=lambda r: r[objective]) if scored else None
    write_json(out / "trials.json", {"objective": objective, "mode": info["mode"], "wall_s": round(wall_s, 1),
                                     "best_trial": best["trial"] if best else None, "trials": rows})
    _write_csv(out / "trials.csv", rows)
    best_path = None
    if best is not None:
        values = oracle.trials[best["trial"]].hyperparameters.values
        best_path = out / BEST_CONFIG
        write_yaml(best_path, info["best_config"](values))
    plot(rows, objective, info["mode"], out / "objective.png")
    if verbose:
        print_table(rows, objective)
        if best is not None:
            print(f"best: trial {best['trial']} {objective} {best[objective]:.4f} ({best['path']} path); "
                  f"config for `tlzoo adapt --config`: {best_path}", flush=True)
    return TuneResult(out, rows, best, best_path)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = [",".join(keys)] + [",".join("" if row.get(k) is None else str(row.get(k)) for k in keys) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def print_table(rows: list[dict[str, Any]], objective: str) -> None:
    fixed = ("trial", "status", "path", objective, "seconds")
    hp_keys: list[str] = []
    for row in rows:
        hp_keys += [k for k in row if k not in fixed and k not in ("tuner_id", "resumed_from_epoch", "rss_mb")
                    and not k.startswith("tuner/") and k not in hp_keys]

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    header = fixed + tuple(hp_keys)
    table = [[fmt(r.get(k)) for k in header] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)))


def plot(rows: list[dict[str, Any]], objective: str, mode: str, path: Path) -> None:
    """Objective per trial, coloured by path, with the running best."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = np.arange(len(rows))
    ys = np.array([np.nan if r[objective] is None else r[objective] for r in rows], dtype=float)
    for name, colour in PATH_COLOURS.items():
        mask = np.array([r["path"] == name for r in rows], dtype=bool)
        if mask.any():
            ax.scatter(xs[mask], ys[mask], color=colour, label=f"{name} path", zorder=3)
    if np.isfinite(ys).any():
        filled = np.where(np.isfinite(ys), ys, -np.inf if mode == "max" else np.inf)
        running = np.maximum.accumulate(filled) if mode == "max" else np.minimum.accumulate(filled)
        ax.step(xs, np.where(np.isfinite(running), running, np.nan), where="post", color="black", lw=1,
                label="best so far")
    ax.set_xticks(xs)
    ax.set_xticklabels([r["trial"] for r in rows], fontsize=7)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Label-efficiency report: the plugin's own recipe at several label budgets, with the pretrained
weights and from scratch, over several seeds; the answer to "how many labels do I need?".

Each (condition, label fraction, seed) is one ordinary ``tlzoo adapt`` run (stratified, seeded
subsample of the training labels; the official validation and test splits untouched), kept under
``runs_dir`` so an interrupted report resumes where it stopped. The summary (``curve.json``,
``curve.csv``, ``curve.png``, ``curve.md``) is rewritten after every run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tlzoo.errors import ConfigError
from tlzoo.runs.directory import read_yaml, write_text_atomic
from tlzoo.train.config import recorded_settings

DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
HEADLINE = {"binary": "roc_auc", "multiclass": "accuracy", "multilabel": "macro_roc_auc"}


@dataclass
class CurveConfig:
    plugin: str
    data: str
    out: str
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    seeds: Sequence[int] = (0, 1, 2)
    backbone: str | None = None  # the plugin's default
    weights: str = "imagenet"
    input_size: int | None = None
    baseline: str | None = "scratch"  # "scratch" or None (transfer only)
    scratch_backbone: str | None = None  # default: the same backbone, randomly initialised
    scratch_input_size: int | None = None
    scratch_schedule: dict[str, Any] | None = None  # default: the plugin's schedule
    metric: str | None = None  # default: the task's headline (ROC-AUC, accuracy)
    max_samples_seen: int | None = None  # compute budget per run, the same for both conditions
    batch_size: int = 32
    plugin_options: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)  # how file sources are read (tlzoo.data.DataOptions)
    runs_dir: str | None = None  # default: OUT/runs
    verbose: int = 1

    def conditions(self) -> dict[str, dict[str, Any]]:
        """AdaptConfig fields per condition, on top of the shared ones."""
        out = {"transfer": {"backbone": self.backbone, "weights": self.weights, "input_size": self.input_size}}
        if self.baseline == "scratch":
            out["scratch"] = {"backbone": self.scratch_backbone or self.backbone, "weights": None,
                              "input_size": self.scratch_input_size or self.input_size,
                              "schedule": self.scratch_schedule}
        elif self.baseline is not None:
            raise ConfigError(f"baseline must be 'scratch' or None, got {self.baseline!r}")
        return out


def _check(cfg: CurveConfig) -> list[float]:
    fractions = sorted({float(f) for f in cfg.fractions})
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ConfigError(f"label fractions must be in (0, 1], got {list(cfg.fractions)}")
    if not cfg.seeds:
        raise ConfigError("give at least one seed")
    return fractions


def _run_name(condition: str, fraction: float, seed: int) -> str:
    return f"{condition}-f{fraction:g}-s{seed}"


def _one_run(cfg: CurveConfig, condition: str, fields: dict[str, Any], fraction: float, seed: int,
             run_dir: Path) -> dict[str, Any]:
    """One adapt run (or the finished one already in ``run_dir``): its headline figures."""
    from tlzoo.train.recipe import AdaptConfig, adapt

    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        adapt(AdaptConfig(plugin=cfg.plugin, data=cfg.data, out=str(run_dir), seed=seed,
                          label_fraction=None if fraction == 1 else fraction, batch_size=cfg.batch_size,
                          max_samples_seen=cfg.max_samples_seen, plugin_options=dict(cfg.plugin_options),
                          data_options=dict(cfg.data_options),
                          verbose=0, overwrite=run_dir.exists(),  # a run killed half-way left no metrics
                          **fields))
    metrics = json.loads(metrics_path.read_text())
    config = read_yaml(run_dir / "config.yaml")
    settings = recorded_settings(config)
    return {"condition": condition, "fraction": fraction, "seed": seed, "n_train": metrics["n_train"],
            "test": metrics["test"], "wall_time_s": config.get("wall_time_s"), "run_dir": str(run_dir),
            "backbone": settings["backbone"], "weights": settings["weights"],
            "epochs": sum(s["epochs"] for s in config["schedule"]["stages"])}


def summarise(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Mean, min, max and std of ``metric`` per condition and fraction; the smallest transfer budget
    whose mean reaches the from-scratch mean at the largest budget."""
    table: dict[str, list[dict[str, Any]]] = {}
    for cond in dict.fromkeys(r["condition"] for r in runs):
        rows = []
        for frac in sorted({r["fraction"] for r in runs if r["condition"] == cond}):
            group = [r for r in runs if r["condition"] == cond and r["fraction"] == frac]
            values = np.array([r["test"][metric] for r in group], float)
            rows.append({"fraction": frac, "n_labels": int(round(np.mean([r["n_train"] for r in group]))),
                         "seeds": [r["seed"] for r in group], "values": values.tolist(), "mean": float(values.mean()),
                         "min": float(values.min()), "max": float(values.max()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         "wall_time_s_mean": float(np.mean([r["wall_time_s"] or 0 for r in group]))})
        table[cond] = rows
    answer: dict[str, Any] | None = None
    if table.get("scratch") and table.get("transfer"):
        ref = table["scratch"][-1]
        match = next((row for row in table["transfer"] if row["mean"] >= ref["mean"]), None)
        answer = {"reference": {"condition": "scratch", "fraction": ref["fraction"], "n_labels": ref["n_labels"],
                                "mean": ref["mean"]},
                  "smallest_matching": None if match is None else {
                      "fraction": match["fraction"], "n_labels": match["n_labels"], "mean": match["mean"],
                      "label_reduction": ref["n_labels"] / match["n_labels"]}}
    return {"metric": metric, "table": table, "answer": answer}


def _answer_line(summary: dict[str, Any]) -> str:
    a = summary["answer"]
    if a is None:
        return "no from-scratch baseline in this report"
    ref = a["reference"]
    head = (f"from scratch with {ref['n_labels']} labels ({ref['fraction']:.0%}): {summary['metric']} "
            f"{ref['mean']:.4f} (mean over seeds)")
    m = a["smallest_matching"]
    if m is None:
        return head + "; no transfer budget in this report reaches it"
    return (head + f"; transfer reaches it with {m['n_labels']} labels ({m['fraction']:g} of the data): "
            f"{m['mean']:.4f}, {m['label_reduction']:.1f}x fewer labels")


def _write(out: Path, cfg: CurveConfig, runs: list[dict[str, Any]], metric: str, planned: int) -> dict[str, Any]:
    summary = summarise(runs, metric)
    doc = {"config": dataclasses.asdict(cfg), "complete": len(runs) == planned, "runs": runs, **summary,
           "answer_text": _answer_line(summary)}
    write_text_atomic(out / "curve.json", json.dumps(doc, indent=2, default=str) + "\n")
    lines = ["condition,fraction,n_labels,seeds,mean,min,max,std,wall_time_s_mean"]
    for cond, rows in summary["table"].items():
        lines += [f"{cond},{r['fraction']:g},{r['n_labels']},{len(r['seeds'])},{r['mean']:.4f},{r['min']:.4f},"
                  f"{r['max']:.4f},{r['std']:.4f},{r['wall_time_s_mean']:.1f}" for r in rows]
    write_text_atomic(out / "curve.csv", "\n".join(lines) + "\n")
    md = [f"# Label efficiency: `{cfg.plugin}` on `{Path(cfg.data).name}`", "",
          f"Test {metric} (mean over seeds, min-max), the plugin's recipe at each label budget"
          + (f", at most {cfg.max_samples_seen:,} samples seen per run" if cfg.max_samples_seen else "") + ".", "",
          "| condition | labels | fraction | seeds | mean | min-max | std |", "|---|---|---|---|---|---|---|"]
    md += [f"| {cond} | {r['n_labels']} | {r['fraction']:g} | {len(r['seeds'])} | {r['mean']:.4f} | "
           f"{r['min']:.4f}-{r['max']:.4f} | {r['std']:.4f} |" for cond, rows in summary["table"].items() for r in rows]
    md += ["", "**Answer:** " + doc["answer_text"] + ".", "", "![curve](curve.png)", ""]
    write_text_atomic(out / "curve.md", "\n".join(md))
    plot_curve(summary, out / "curve.png", title=f"{cfg.plugin}: test {metric} against labels")
    return doc


def plot_curve(summary: dict[str, Any], path: Path, title: str = "") -> None:
    from tlzoo.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for cond, rows in summary["table"].items():
        n = [r["n_labels"] for r in rows]
        line, = ax.plot(n, [r["mean"] for r in rows], marker="o", label=f"{cond} (mean)")
        ax.fill_between(n, [r["min"] for r in rows], [r["max"] for r in rows], color=line.get_color(), alpha=0.2)
        for r in rows:
            ax.scatter([r["n_labels"]] * len(r["values"]), r["values"], s=8, color=line.get_color(), alpha=0.6)
    a = summary["answer"]
    if a:
        ax.axhline(a["reference"]["mean"], ls="--", color="grey", lw=0.9,
                   label=f"scratch, {a['reference']['n_labels']} labels")
        if a["smallest_matching"]:
            ax.axvline(a["smallest_matching"]["n_labels"], ls=":", color="green", lw=0.9,
                       label=f"transfer matches it: {a['smallest_matching']['n_labels']} labels")
    ax.set_xscale("log")
    ax.set_xlabel("training labels (log scale)")
    ax.set_ylabel(f"test {summary['metric']}")
    ax.set_title(title + "\nshaded: min-max over seeds", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label_curve(config: CurveConfig | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run (or resume) the report; returns what ``curve.json`` holds.

    ``tlzoo.label_curve(plugin="medical-imaging", data="scans.npz", out="reports/labels", seeds=[0, 1, 2])``
    """
    from tlzoo.plugin import get_plugin

    cfg = config if config is not None else CurveConfig(**kwargs)
    fractions = _check(cfg)
    plugin = get_plugin(cfg.plugin, **cfg.plugin_options)  # unknown plugin / options: fail before any run
    metric = cfg.metric or HEADLINE[plugin.task]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(cfg.runs_dir or out / "runs")
    conditions = cfg.conditions()
    plan = [(c, f, s) for c in conditions for f in fractions for s in cfg.seeds]
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, (cond, frac, seed) in enumerate(plan, start=1):
        result = _one_run(cfg, cond, conditions[cond], frac, seed, runs_dir / _run_name(cond, frac, seed))
        if metric not in result["test"]:
            raise ConfigError(f"metric {metric!r} is not among the plugin's test metrics: "
                              f"{sorted(k for k, v in result['test'].items() if isinstance(v, float))}")
        runs.append(result)
        _write(out, cfg, runs, metric, len(plan))
        if cfg.verbose:
            value = result["test"][metric]
            print(f"[{i}/{len(plan)}] {cond:8s} {frac:>5g} of the labels ({result['n_train']}), seed {seed}: "
                  f"test {metric} {value:.4f}  ({result['wall_time_s'] or 0:.0f} s; "
                  f"{math.ceil(time.perf_counter() - t0)} s so far)", flush=True)
    doc = json.loads((out / "curve.json").read_text())
    if cfg.verbose:
        print(doc["answer_text"], flush=True)
        print(f"report written to {out}/curve.md (.json, .csv, .png)", flush=True)
    return doc

"""Subgroup (bias) metrics: each test metric per group, with percentile-bootstrap confidence
intervals, and the largest gaps between groups (for binary tasks the true-positive-rate gap, i.e.
equal opportunity, and the false-positive-rate gap).

Bootstrap resamples are drawn within each group as multinomial counts, so every metric of every
resample is a weighted sum over the group's samples: 1000 resamples cost a few matrix products.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tlzoo.errors import ConfigError
from tlzoo.extensions.subgroup_attributes import GROUP_TASKS, group_order

MIN_GROUP_SIZE = 10  # below this a group's metrics are reported as null, not as noise
CONFIDENCE = 0.95
METRICS = {"binary": ("roc_auc", "accuracy", "sensitivity", "specificity", "fpr", "precision"),
           "multiclass": ("accuracy", "macro_f1")}
KEY_METRICS = {"binary": ("accuracy", "sensitivity", "fpr", "roc_auc"), "multiclass": ("accuracy", "macro_f1")}
_CELLS = 4_000_000  # resamples x samples per chunk: bounds memory whatever the group size


def subgroup_report(
    y_true: np.ndarray, probs: np.ndarray, groups: np.ndarray, *, task: str, threshold: float = 0.5,
    n_boot: int = 1000, seed: int = 0, max_gap: float | None = None, min_n: int = MIN_GROUP_SIZE,
    attribute: str | None = None,
) -> dict[str, Any]:
    """Per-group metrics with 95% bootstrap CIs, the gap (max - min over groups) of every metric, and
    ``flagged`` with the metrics whose gap exceeds ``max_gap``. Binary: ``probs`` are P(positive)."""
    if task not in GROUP_TASKS:
        raise ConfigError(f"subgroup metrics support {' and '.join(GROUP_TASKS)} tasks, not {task!r}")
    y = np.asarray(y_true).astype(int).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    probs = np.asarray(probs, dtype=float)
    pred = (probs.reshape(-1) >= threshold) if task == "binary" else probs.argmax(-1)
    if not len(y) == len(pred) == len(groups):
        raise ConfigError(f"subgroup_report: {len(y)} labels, {len(pred)} predictions, {len(groups)} group values")
    rng = np.random.default_rng(seed)
    per_group: dict[str, Any] = {}
    boots: dict[str, dict[str, np.ndarray]] = {}
    for g in group_order(groups):
        idx = np.flatnonzero(groups == g)
        entry, boots[str(g)] = _group(y[idx], probs.reshape(-1)[idx] if task == "binary" else None, pred[idx],
                                      task, min_n, n_boot, rng)
        per_group[str(g)] = entry
    gaps = {m: _gap(m, per_group, boots, max_gap) for m in METRICS[task]}
    exceeded = [m for m, gap in gaps.items() if gap.get("exceeds")]
    report: dict[str, Any] = {
        "attribute": attribute, "task": task, "split": "test", "n": int(len(y)),
        "threshold": float(threshold) if task == "binary" else None,
        "n_boot": int(n_boot), "confidence": CONFIDENCE, "min_group_size": int(min_n), "seed": int(seed),
        "groups": per_group, "gaps": gaps,
        "max_gap": None if max_gap is None else float(max_gap),
        "flagged": bool(exceeded), "exceeded": exceeded,
    }
    if task == "binary":  # equal opportunity (TPR) and the false-alarm side of equalized odds
        report["tpr_gap"], report["fpr_gap"] = gaps["sensitivity"]["gap"], gaps["fpr"]["gap"]
    largest = max((m for m in KEY_METRICS[task] if gaps[m]["gap"] is not None), key=lambda m: gaps[m]["gap"],
                  default=None)
    report["largest_gap"] = None if largest is None else {"metric": largest, **gaps[largest]}
    return report


# ---------------------------------------------------------------- one group


def _group(y: np.ndarray, p: np.ndarray | None, pred: np.ndarray, task: str, min_n: int, n_boot: int,
           rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    n = len(y)
    entry: dict[str, Any] = {"n": int(n)}
    if task == "binary":
        entry["positives"] = int(y.sum())
    names = METRICS[task]
    if n < min_n:
        entry["metrics"] = {m: {"value": None, "reason": f"only {n} samples, fewer than {min_n}"} for m in names}
        return entry, {}
    classes = np.unique(y)  # multiclass: macro-F1 over the classes present in this group

    def stats(w: np.ndarray) -> dict[str, np.ndarray]:
        return _binary_stats(w, y, p, pred) if task == "binary" else _multiclass_stats(w, y, pred, classes)

    point = stats(np.ones((1, n)))
    chunks = [stats(w) for w in _resample_counts(rng, n, n_boot)]
    boot = {m: np.concatenate([c[m] for c in chunks]) for m in names}
    reasons = _undefined(y, pred) if task == "binary" else {}
    alpha = (1 - CONFIDENCE) / 2 * 100
    entry["metrics"] = {}
    for m in names:
        value = float(point[m][0])
        if m in reasons or not np.isfinite(value):
            entry["metrics"][m] = {"value": None, "reason": reasons.get(m, "undefined")}
            boot.pop(m)
            continue
        finite = boot[m][np.isfinite(boot[m])]
        lo, hi = np.percentile(finite, [alpha, 100 - alpha]) if len(finite) else (np.nan, np.nan)
        entry["metrics"][m] = {"value": value, "ci": [float(lo), float(hi)]}
    return entry, boot


def _undefined(y: np.ndarray, pred: np.ndarray) -> dict[str, str]:
    reasons = {}
    if not (y == 1).any():
        reasons.update(sensitivity="no positives in this group", roc_auc="needs both classes; no positives")
    if not (y == 0).any():
        reasons.update(specificity="no negatives in this group", fpr="no negatives in this group",
                       roc_auc="needs both classes; no negatives")
    if not pred.any():
        reasons["precision"] = "no predicted positives in this group"
    return reasons


def _resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples as multinomial counts per sample, (rows, n) at a time."""
    rows = max(1, _CELLS // n)
    for start in range(0, n_boot, rows):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(rows, n_boot - start)).astype(float)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / b


def _binary_stats(w: np.ndarray, y: np.ndarray, p: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Every binary metric for each row of sample weights ``w`` (rows, n)."""
    pos, hit = (y == 1).astype(float), pred.astype(float)
    tp, fn = w @ (pos * hit), w @ (pos * (1 - hit))
    fp, tn = w @ ((1 - pos) * hit), w @ ((1 - pos) * (1 - hit))
    return {"roc_auc": _weighted_auc(w, pos, p), "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
            "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp), "fpr": _ratio(fp, fp + tn),
            "precision": _ratio(tp, tp + fp)}


def _weighted_auc(w: np.ndarray, pos: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC-AUC as the weighted Mann-Whitney statistic (ties count one half), one per row of ``w``."""
    order = np.argsort(p, kind="stable")
    w, pos, p = w[:, order], pos[order], p[order]
    _, first, block = np.unique(p, return_index=True, return_inverse=True)
    neg_cum = np.cumsum(w * (1 - pos), axis=1)
    neg_cum = np.concatenate([np.zeros((len(w), 1)), neg_cum], axis=1)
    last = np.append(first[1:], len(p))  # one past each tie block's end
    below = neg_cum[:, first][:, block]  # negative weight strictly below each sample's score
    tied = neg_cum[:, last][:, block] - below
    wins = (w * pos * (below + 0.5 * tied)).sum(1)
    return _ratio(wins, (w @ pos) * (w @ (1 - pos)))


def _multiclass_stats(w: np.ndarray, y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
    f1 = []
    for k in classes:
        true_k, pred_k = (y == k).astype(float), (pred == k).astype(float)
        tp, both = w @ (true_k * pred_k), w @ (true_k + pred_k)  # 2 tp + fp + fn = |true| + |pred|
        f1.append(np.where(both > 0, _ratio(2 * tp, both), 0.0))
    return {"accuracy": _ratio(w @ (y == pred).astype(float), w.sum(1)), "macro_f1": np.mean(f1, axis=0)}


# ---------------------------------------------------------------- gaps


def _gap(metric: str, groups: dict[str, Any], boots: dict[str, dict[str, np.ndarray]],
         max_gap: float | None) -> dict[str, Any]:
    values = {g: e["metrics"][metric]["value"] for g, e in groups.items() if e["metrics"][metric]["value"] is not None}
    if len(values) < 2:
        return {"gap": None, "reason": f"{len(values)} group(s) with a value; a gap needs two"}
    hi = max(values, key=values.get)
    lo = min((g for g in values if g != hi), key=values.get)  # two different groups even when all tie
    # groups are resampled independently, so resample i of each group is one draw of the whole test set
    stacked = np.stack([boots[g][metric] for g in values])
    with np.errstate(all="ignore"):
        boot_gap = np.nanmax(stacked, 0) - np.nanmin(stacked, 0)
    alpha = (1 - CONFIDENCE) / 2 * 100
    out = {"gap": values[hi] - values[lo], "ci": [float(v) for v in np.nanpercentile(boot_gap, [alpha, 100 - alpha])],
           "max": {"group": hi, "value": values[hi]}, "min": {"group": lo, "value": values[lo]},
           "groups_compared": len(values)}
    if max_gap is not None:
        out["exceeds"] = out["gap"] > max_gap
    return out


# ---------------------------------------------------------------- run directory, figure, model card


def write_report(run_dir: Path, data: Any, probs: np.ndarray, *, task: str, threshold: float,
                 max_gap: float | None = None, seed: int = 0) -> dict[str, Any] | None:
    """The test split's subgroup report (for ``metrics.json``) and ``subgroups.png``; None without groups."""
    if data.test.groups is None or task not in GROUP_TASKS:
        return None
    report = subgroup_report(data.test.y, probs, data.test.groups, task=task, threshold=threshold, seed=seed,
                             max_gap=max_gap, attribute=data.group_by)
    plot(report, Path(run_dir) / "subgroups.png")
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """One panel per key metric: a bar per group with its bootstrap CI."""
    from tlzoo.evaluation.plots import plt

    names = KEY_METRICS[report["task"]]
    groups = list(report["groups"])
    fig, axes = plt.subplots(1, len(names), figsize=(2.0 + 0.45 * len(groups) * len(names) + 1.2 * len(names), 3.4),
                             squeeze=False)
    for ax, m in zip(axes[0], names):
        for i, g in enumerate(groups):
            cell = report["groups"][g]["metrics"][m]
            if cell["value"] is None:
                ax.text(i, 0.03, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
                continue
            lo, hi = cell["ci"]
            ax.bar(i, cell["value"], color="tab:blue", alpha=0.75)
            ax.errorbar(i, cell["value"], yerr=[[cell["value"] - lo], [hi - cell["value"]]], color="black", capsize=3)
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={report['groups'][g]['n']})" for g in groups], fontsize=7)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylim(0, 1.05)
        gap = report["gaps"][m]["gap"]
        exceeds = report["gaps"][m].get("exceeds")
        ax.set_title(f"{m}\ngap {'-' if gap is None else f'{gap:.3f}'}" + (" > max" if exceeds else ""), fontsize=9,
                     color="red" if exceeds else "black")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"test metrics by {report['attribute']} ({report['confidence']:.0%} bootstrap CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def warning(report: dict[str, Any] | None) -> str | None:
    """The model card's warning line when a gap exceeds the declared maximum."""
    if not report or not report.get("flagged"):
        return None
    worst = ", ".join(f"{m} {report['gaps'][m]['gap']:.3f} ({report['gaps'][m]['max']['group']} vs "
                      f"{report['gaps'][m]['min']['group']})" for m in report["exceeded"])
    return (f"WARNING: subgroup gap by {report['attribute']!r} exceeds the declared maximum "
            f"{report['max_gap']:g}: {worst}.")


def _gap_text(gap: dict[str, Any]) -> str:
    """'0.120 [0.038, 0.230] (bright 0.833 vs mid 0.713)': the gap, its interval, and the groups."""
    return (f"{gap['gap']:.3f} [{gap['ci'][0]:.3f}, {gap['ci'][1]:.3f}] ({gap['max']['group']} "
            f"{gap['max']['value']:.3f} vs {gap['min']['group']} {gap['min']['value']:.3f})")


def summary(report: dict[str, Any]) -> str:
    """One line for the console: the largest gap among the key metrics, and the warning if any."""
    big = report["largest_gap"]
    head = f"subgroups by {report['attribute']!r} ({len(report['groups'])} groups): "
    head += "no gap measurable" if big is None else f"largest gap {big['metric']} {_gap_text(big)}"
    return head + (f"\n{warning(report)}" if report["flagged"] else "")


def card_section(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the model card keeps of a run's subgroup report: counts, key metrics with CIs, gaps."""
    if not report:
        return None
    keys = KEY_METRICS[report["task"]]
    return {
        "attribute": report["attribute"], "split": report["split"], "confidence": report["confidence"],
        "n_boot": report["n_boot"],
        "groups": {g: {k: e[k] for k in ("n", "positives") if k in e} | {m: e["metrics"][m] for m in keys}
                   for g, e in report["groups"].items()},
        "gaps": {m: report["gaps"][m] for m in keys},
        "max_gap": report["max_gap"], "flagged": report["flagged"], "exceeded": report["exceeded"],
        "warning": warning(report),
    }


def _cell(c: dict[str, Any]) -> str:
    return f"n/a ({c['reason']})" if c["value"] is None else f"{c['value']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"


def markdown_lines(section: dict[str, Any] | None) -> list[str]:
    """The model card's "Subgroups" section (nothing without a group attribute)."""
    if not section:
        return []
    groups: Sequence[str] = list(section["groups"])
    keys = list(section["gaps"])
    lines = ["## Subgroups", ""]
    if section["warning"]:
        lines += [f"**{section['warning']}**", ""]
    lines += [f"Test metrics by `{section['attribute']}`, {section['confidence']:.0%} percentile-bootstrap intervals "
              f"({section['n_boot']} resamples within each group).", "",
              "| group | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for g in groups:
        e = section["groups"][g]
        n = f"{e['n']}" + (f" ({e['positives']} pos.)" if "positives" in e else "")
        lines.append(f"| {g} | {n} | " + " | ".join(_cell(e[m]) for m in keys) + " |")
    lines += [""]
    for m, gap in section["gaps"].items():
        if gap["gap"] is None:
            lines.append(f"- {m} gap: n/a ({gap['reason']})")
        else:
            lines.append(f"- {m} gap: {_gap_text(gap)}" + (" EXCEEDS the maximum" if gap.get("exceeds") else ""))
    declared = section["max_gap"]
    lines += ["", f"Declared maximum gap: {'none' if declared is None else f'{declared:g}'}.", ""]
    return lines


# ---------------------------------------------------------------- extension

from tlzoo.extensions.base import Extension, Run  # noqa: E402


class Subgroups(Extension):
    """Per-group test metrics with bootstrap CIs (``subgroups.png``) whenever the data carries a group
    attribute or ``group_by`` names one. On by default: it acts only when there are groups."""

    name = "subgroups"
    card_key = "subgroups"
    custom_recipe = True  # on by default; a plugin's own recipe reports (or refuses) groups itself

    @classmethod
    def is_active(cls, cfg: Any) -> bool:
        return True

    def check(self, run: Run) -> None:
        from tlzoo.model.multitask import is_multitask

        if self.cfg.group_by is not None and is_multitask(run.plugin):
            raise ConfigError("subgroup metrics (group_by) are per single task; not available with multi-task heads")

    def on_data(self, run: Run, data: Any) -> Any:
        from tlzoo.extensions.subgroup_attributes import assign_groups

        return assign_groups(data, self.cfg.group_by, task=run.plugin.task, max_gap=self.cfg.max_group_gap)

    def metrics(self, run: Run) -> dict[str, Any]:
        if run.state.get("p_test") is None or run.data.test.groups is None:
            return {}
        report = write_report(run.run_dir, run.data, run.state["p_test"], task=run.plugin.task,
                              threshold=run.state["threshold"], max_gap=self.cfg.max_group_gap, seed=self.cfg.seed)
        return {"subgroups": report} if report else {}

    @classmethod
    def card_section(cls, config: dict[str, Any], metrics: dict[str, Any], contract: dict[str, Any]) -> Any:
        return card_section(metrics.get("subgroups"))

    @classmethod
    def card_markdown(cls, section: Any) -> list[str]:
        return markdown_lines(section)

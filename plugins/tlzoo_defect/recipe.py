"""The anomaly-mode recipe (no gradient training): fit PatchCore on defect-free images, set the
threshold from a false-alarm budget on held-out normals, evaluate, write a normal run directory
(config.yaml with lineage, metrics.json, model.keras, test predictions, ROC and heat-map PNGs,
report.md)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.anomaly.patchcore import (
    PatchCore,
    PatchCoreConfig,
    false_alarm_threshold,
    map_display_range,
)
from tlzoo.errors import ConfigError
from tlzoo.evaluation import metrics as metrics_lib
from tlzoo.evaluation import plots
from tlzoo.runs.directory import atomic_dir, check_target, write_json, write_yaml
from tlzoo.zoo import get_backbone_spec, layer_groups
from tlzoo_defect.anomaly_data import anomaly_splits, normal_label, read_labelled
from tlzoo_defect.heatmaps import score_histogram

REPORT = "report.md"


def anomaly_metrics(y: np.ndarray, scores: np.ndarray, threshold: float, max_false_alarm: float) -> dict[str, Any]:
    """Binary metrics at the chosen threshold, plus recall at the false-alarm budget as measured on
    this set's own ROC curve (what an oracle threshold would reach)."""
    from sklearn.metrics import roc_curve

    out = metrics_lib.binary_metrics(y, scores, threshold)
    del out["accuracy_at_0.5"]  # scores are distances, not probabilities: 0.5 means nothing here
    out["recall"] = out["sensitivity"]
    out["false_alarm_rate"] = 1.0 - out["specificity"]
    fpr, tpr, _ = roc_curve(y, scores)
    out["recall_at_fpr_oracle"] = float(tpr[fpr <= max_false_alarm + 1e-12].max())
    out["max_false_alarm"] = float(max_false_alarm)
    return out


def run_anomaly(cfg: Any, plugin: Any) -> Any:
    """``adapt()`` for ``mode=anomaly``; returns the same ``RunResult``."""
    from tlzoo.runs import CONFIG_FILE, METRICS_FILE, MODEL_FILE, environment, now
    from tlzoo.train.recipe import RunResult

    o = plugin.options
    t_start, started_at = time.perf_counter(), now()
    backbone_name = cfg.backbone or plugin.default_backbone
    spec = get_backbone_spec(backbone_name)
    input_size = int(cfg.input_size or o["anomaly_input_size"])
    if cfg.label_fraction is not None or cfg.labels_per_class is not None:
        raise ConfigError("anomaly mode uses no labels for fitting; label_fraction / labels_per_class do not apply")
    if cfg.schedule:
        raise ConfigError("anomaly mode trains no weights; a freeze schedule does not apply")
    if cfg.group_by is not None or cfg.max_group_gap is not None:
        raise ConfigError("subgroup metrics (group_by / max_group_gap) are not available in anomaly mode yet")
    max_fa = float(o["max_false_alarm"])
    if not 0 < max_fa < 1:
        raise ConfigError(f"max_false_alarm must be in (0, 1), got {max_fa}")
    out = Path(cfg.out or f"runs/{plugin.name}-anomaly-{backbone_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    check_target(out, cfg.overwrite)
    pc_config = PatchCoreConfig(
        backbone=backbone_name, weights=cfg.weights, input_size=input_size,
        levels=tuple(str(o["levels"]).split(",")) if o["levels"] else None,
        neighbourhood=int(o["neighbourhood"]), views=str(o["views"]),
        coreset_ratio=float(o["coreset_ratio"]), coreset_size=int(o["coreset_size"]) if o["coreset_size"] else None,
        max_bank_mb=float(o["max_bank_mb"]), batch_size=cfg.batch_size, seed=cfg.seed)

    labelled = read_labelled(cfg.data)
    normal = normal_label(labelled, o["normal_class"])
    data, test_types = anomaly_splits(labelled, normal, seed=cfg.seed, train_fraction=float(o["train_fraction"]),
                                      threshold_fraction=float(o["threshold_fraction"]), split_file=o["split_file"])
    false_alarm_threshold(np.zeros(len(data.val)), max_fa)  # too few held-out normals: stop before any work
    say = print if cfg.verbose else (lambda *a, **k: None)
    for note in data.notes:
        say(f"data: {note}", flush=True)

    detector = PatchCore(pc_config)
    detector.check_budget(len(data.train))
    groups = layer_groups(detector.backbone, spec)
    resolved: dict[str, Any] = {
        "adapt": cfg.to_record(out=str(out), backbone=backbone_name, input_size=input_size),
        "recipe": "anomaly/patchcore",
        "schedule": {"stages": []},  # nothing is trained
        "plugin": plugin.describe() | {"options": plugin.options, "task": plugin.task, "monitor": plugin.monitor},
        "backbone": {"name": spec.name, "family": spec.family, "num_params": spec.num_params,
                     "layer_groups": [g.name for g in groups], "preprocess": spec.preprocess_name},
        "weights": detector.weights_record.to_dict() if detector.weights_record else
                   {"source": "random" if cfg.weights is None else cfg.weights},
        "data": {**data.summary(), "fingerprint": data.fingerprint(), "normal_class": labelled.class_names[normal]},
        "environment": environment(),
    }

    with atomic_dir(out, cfg.overwrite) as tmp:
        write_yaml(tmp / CONFIG_FILE, resolved)
        detector.fit(data.train.x, verbose=bool(cfg.verbose))
        val_scores, _ = detector.score(data.val.x)
        threshold = false_alarm_threshold(val_scores, max_fa)
        t0 = time.perf_counter()
        test_scores, test_maps = detector.score(data.test.x)
        per_image_ms = 1000 * (time.perf_counter() - t0) / len(data.test)
        t1 = time.perf_counter()
        detector.score(data.test.x[:1], batch_size=1)
        single_ms = 1000 * (time.perf_counter() - t1)
        test = anomaly_metrics(data.test.y, test_scores, threshold, max_fa)
        test["per_type_recall"] = {
            labelled.class_names[t]: float((test_scores[test_types == t] >= threshold).mean())
            for t in np.unique(test_types) if t != normal}
        metrics = {
            "test": test,
            "val": {"n": len(data.val), "false_alarm_rate": float((val_scores >= threshold).mean()),
                    "threshold": threshold, "max_false_alarm": max_fa,
                    # the exports' normalised score maps [min, max] around the threshold (tlzoo.deploy.contract)
                    "score_min": float(val_scores.min()), "score_max": float(val_scores.max())},
            "threshold": threshold,
            "bank": detector.describe(),
            "scoring_ms_per_image": round(per_image_ms, 2),
            "scoring_ms_batch_of_1": round(single_ms, 2),
            "scoring_batch_size": cfg.batch_size,
            "n_train": len(data.train),
            "class_names": data.class_names,
            "best_epoch": None, "best_stage": None, "monitor": {"name": "none (no training)", "value": None},
        }
        say(f"image ROC-AUC {test['roc_auc']:.4f}; at threshold {threshold:.4g} (<= {max_fa:g} false alarms on "
            f"{len(data.val)} held-out normals): recall {test['recall']:.3f}, test false alarms "
            f"{test['false_alarm_rate']:.3f}; bank {detector.fit_info['bank_size']:,} x {detector.fit_info['dim']}, "
            f"{per_image_ms:.1f} ms/image", flush=True)
        write_json(tmp / METRICS_FILE, metrics)
        write_json(tmp / "history.json", [])
        np.savez_compressed(tmp / "test_predictions.npz", y_true=data.test.y, probs=test_scores,
                            defect_type=test_types)
        plots.roc_curve(data.test.y, test_scores, tmp / "roc_curve.png", title="test ROC (image level)")
        plots.confusion_matrix(test["confusion_matrix"], data.class_names, tmp / "confusion_matrix.png",
                               title=f"test, threshold {threshold:.3g}")
        score_histogram(val_scores, test_scores, data.test.y, threshold, tmp / "score_histogram.png")
        figures = _heatmaps(tmp, data, test_scores, test_maps, test_types, labelled.class_names, threshold,
                            int(o["heatmaps"]), cfg.seed)
        resolved["started_at"], resolved["finished_at"] = started_at, now()
        resolved["wall_time_s"] = round(time.perf_counter() - t_start, 1)
        write_yaml(tmp / CONFIG_FILE, resolved)
        _write_report(tmp / REPORT, resolved, metrics, figures)
        detector.model.save(tmp / MODEL_FILE)
    say(f"run written to {out}", flush=True)
    return RunResult(out, metrics, [], resolved)


def _heatmaps(run_dir: Path, data: Any, scores: np.ndarray, maps: np.ndarray, types: np.ndarray,
              names: list[str], threshold: float, n: int, seed: int) -> list[str]:
    """Overlays for the highest-scoring defective image of each type, and the most and least
    suspicious defect-free ones (a few images a reviewer would look at first)."""
    if n <= 0:
        return []
    (run_dir / "heatmaps").mkdir()
    picks: list[int] = []
    for t in np.unique(types[data.test.y == 1]):
        idx = np.flatnonzero(types == t)
        picks.append(int(idx[np.argmax(scores[idx])]))
    normals = np.flatnonzero(data.test.y == 0)
    picks += [int(normals[np.argmax(scores[normals])]), int(normals[np.argmin(scores[normals])])]
    picks = picks[:n]
    vmin, vmax = map_display_range(maps[picks], threshold)
    titles = [f"{names[types[i]]}: score {scores[i]:.3g} {'FLAG' if scores[i] >= threshold else 'ok'}" for i in picks]
    files = []
    for i, title in zip(picks, titles):
        name = f"heatmaps/test_{i:04d}_{names[types[i]]}.png".replace(" ", "_")
        plots.overlay_grid([data.test.x[i]], [maps[i]], [title], run_dir / name, vmin=vmin, vmax=vmax)
        files.append(name)
    plots.overlay_grid([data.test.x[i] for i in picks], [maps[i] for i in picks], titles, run_dir / "heatmaps.png",
                       vmin=vmin, vmax=vmax)
    return ["heatmaps.png"] + files


def _write_report(path: Path, config: dict[str, Any], metrics: dict[str, Any], figures: list[str]) -> None:
    from tlzoo.train.config import recorded_settings

    t, bank, settings = metrics["test"], metrics["bank"], recorded_settings(config)
    lines = [
        f"# Anomaly run: {settings['plugin']} on {config['data']['source']}", "",
        f"PatchCore on `{config['backbone']['name']}` ({config['weights'].get('source', settings['weights'])} "
        f"weights), levels {', '.join(lv['group'] for lv in bank['levels'])}, input {settings['input_size']} px, "
        f"patch grid {bank['grid'][0]}x{bank['grid'][1]}"
        + (f"; views {bank['views']} (in the bank, and averaged at scoring)" if bank.get("views", "none") != "none"
           else "") + ".", "",
        "| figure | value |", "|---|---|",
        f"| image ROC-AUC (test) | {t['roc_auc']:.4f} |",
        f"| threshold (<= {t['max_false_alarm']:g} false alarms on {metrics['val']['n']} held-out normals) "
        f"| {metrics['threshold']:.5g} |",
        f"| recall at that threshold (test) | {t['recall']:.4f} |",
        f"| false-alarm rate at that threshold (test) | {t['false_alarm_rate']:.4f} |",
        f"| recall at {t['max_false_alarm']:g} FPR on the test ROC (oracle threshold) "
        f"| {t['recall_at_fpr_oracle']:.4f} |",
        f"| memory bank | {bank['bank_size']:,} x {bank['dim']} ({bank['bank_mb']:.1f} MB) "
        f"of {bank['patches']:,} patches |",
        f"| scoring time in Keras (exports run faster: their model card has each format's latency) "
        f"| {metrics['scoring_ms_per_image']:.1f} ms/image (batch {metrics['scoring_batch_size']}), "
        f"{metrics['scoring_ms_batch_of_1']:.1f} ms for a batch of 1 |", "",
        "Recall per defect type: " + ", ".join(f"{k} {v:.2f}" for k, v in t["per_type_recall"].items()), "",
        "## Figures", "", "![ROC](roc_curve.png)", "", "![score histogram](score_histogram.png)", "",
        "![confusion matrix](confusion_matrix.png)", "",
    ]
    if figures:
        lines += ["## Anomaly heat maps (test images)", "",
                  "Per-pixel maps are patch distances to the nearest normal patch, upsampled to the image.", ""]
        lines += [f"![{f}]({f})" for f in figures]
    lines += ["", "## Data", ""] + [f"- {n}" for n in config["data"]["notes"]]
    path.write_text("\n".join(lines) + "\n")

"""Model cards: the lineage of an exported model, from pretrained source to the artefacts.

Built only from what the run directory recorded (``config.yaml``, ``metrics.json``,
``history.json``) and what the export measured (parity, recomputed test metrics), so every
figure on the card can be traced to a file. ``model_card.json`` is for machines,
``model_card.md`` for people; both hold the same facts.
"""
from __future__ import annotations

import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tlzoo.deploy.parity import describe_bounds
from tlzoo.evaluation.text import fmt as _fmt
from tlzoo.extensions import extension_classes
from tlzoo.extensions.subgroups import warning as subgroup_warning
from tlzoo.runs.directory import write_json
from tlzoo.train.config import recorded_settings

CARD_SCHEMA = "tlzoo.model_card/1"

GENERIC_LIMITATIONS = (
    "Evaluated only on the held-out test split of the data set named below; performance on data from "
    "another source, device or population is unknown until measured there.",
    "Probabilities are not calibrated unless stated.",
    "Inputs must follow the input contract (dtype, shape, value range); anything else is outside what was tested.",
)


# What each recorded threshold rule did, chosen on the validation split (tlzoo.evaluation.metrics.choose_threshold).
_RULES = {
    "youden": "by Youden's J (the threshold maximising sensitivity + specificity - 1)",
    "sensitivity": "as the highest threshold reaching sensitivity {x}",
    "fpr": "as the lowest threshold keeping the false-positive rate within {x}",
    "cost": "as the threshold minimising {x} x missed positives + false alarms (a miss costs {x} false alarms)",
    "fp_budget": "as the lowest threshold keeping the false-positive rate within the plugin's fp_budget ({x})",
}


def _is_number(policy: Any) -> bool:
    try:
        float(policy)
    except (TypeError, ValueError):
        return False
    return not isinstance(policy, bool)


def _head_rule(task: str, k: int, policy: Any, threshold: float, n_val: Any, options: dict[str, Any]) -> str:
    """One head's decision rule, as it was set: argmax, a fixed value, or a rule chosen on validation data."""
    if task == "multiclass" or (task == "binary" and k > 1):
        return "the label is the class with the highest probability (argmax); no threshold is involved"
    if task == "multilabel":
        return f"each label is on when its probability is >= {threshold:g}, a fixed threshold, not tuned on data"
    if policy is None:
        return f"the run does not record how its decision threshold ({threshold:.4g}) was set"
    if _is_number(policy):
        return (f"the decision threshold {threshold:g} is a fixed value (the plugin's threshold option), "
                f"not tuned on data")
    kind, _, x = str(policy).partition(":")
    if kind == "fp_budget":
        x = str(options.get("fp_budget", "?"))
    how = _RULES[kind].format(x=x) if kind in _RULES else f"by the rule {str(policy)!r}"
    where = "; it sits midway between the two validation scores it separates" if kind in _RULES else ""
    return (f"the decision threshold {threshold:.4g} was chosen on the validation split ({n_val} samples) {how}"
            f"{where}; chosen on {n_val} samples, it carries their sampling error: re-check it on data from where the "
            f"model is used")


def threshold_statement(config: dict[str, Any], metrics: dict[str, Any], contract: dict[str, Any]) -> str:
    """How the decision threshold was set, from what the run recorded: ``metrics.json``'s
    ``threshold_policy`` (per task for multi-task runs), or an anomaly run's false-alarm budget."""
    val = metrics.get("val") or {}
    if contract.get("kind") == "anomaly":
        if "max_false_alarm" not in val:
            return f"The run does not record how its anomaly threshold ({contract['threshold']:.4g}) was set."
        n = val.get("n")
        return (f"The anomaly threshold ({contract['threshold']:.4g} on the raw score) was set from a false-alarm "
                f"budget: the lowest that flags at most {val['max_false_alarm']:g} of the {n} held-out normal images "
                f"(flagged on them: {_fmt(val.get('false_alarm_rate'))}); the false-alarm rate on other normal images "
                f"can differ, more so with few held-out normals.")
    policy = metrics.get("threshold_policy")
    options = (config.get("plugin") or {}).get("options") or {}
    n_val = ((config.get("data") or {}).get("val") or {}).get("n")
    if contract.get("tasks"):
        policies = policy if isinstance(policy, dict) else {}
        rules = [f"{name}: " + _head_rule(t["task"], int(t["num_outputs"]), policies.get(name), float(t["threshold"]),
                                          (val.get(name) or {}).get("n_labelled", n_val), options)
                 for name, t in contract["tasks"].items()]
        return "Decision rules per task: " + "; ".join(rules) + "."
    rule = _head_rule(contract["task"], int(contract["num_outputs"]), policy, float(contract["threshold"]), n_val,
                      options)
    return rule[0].upper() + rule[1:] + "."


def _card_extensions() -> list[Any]:
    """The extensions with a section in the card, in their calling order."""
    return [ext for ext in extension_classes() if ext.card_key]


def _plugin_version(plugin: Any) -> dict[str, Any]:
    cls = type(getattr(plugin, "plugin", plugin))  # a multi-task run: the plugin it wraps
    declared = getattr(cls, "version", None)
    top = cls.__module__.split(".")[0]
    dists = metadata.packages_distributions().get(top, [])
    dist = dists[0] if dists else None
    dist_version = None
    if dist:
        try:
            dist_version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"version": str(declared or dist_version or "unknown"), "distribution": dist,
            "distribution_version": dist_version, "class": f"{cls.__module__}.{cls.__qualname__}"}


def _weights(config: dict[str, Any]) -> dict[str, Any]:
    record = dict(config.get("weights") or {})
    asked = recorded_settings(config)["weights"]
    out: dict[str, Any] = {"requested": asked, **record}
    if asked is None or record.get("source") == "random":
        out.update(source="random", licence="not applicable (random initialisation, no pretrained weights)")
        return out
    from tlzoo.zoo import get_backbone_spec

    try:
        info = get_backbone_spec(config["backbone"]["name"]).weights_info(str(asked))
    except Exception:
        info = None
    if info is not None:
        out.update(licence=info.licence, dataset=info.dataset, published_by=info.source)
    else:
        out.setdefault("licence", "unknown: weights given as a file; record their licence with the file")
    return out


def _schedule_run(config: dict[str, Any], metrics: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    planned = (config.get("schedule") or {}).get("stages", [])
    epochs_run: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for row in history:
        epochs_run[row.get("stage", "?")] = epochs_run.get(row.get("stage", "?"), 0) + 1
        seconds[row.get("stage", "?")] = seconds.get(row.get("stage", "?"), 0.0) + float(row.get("seconds", 0) or 0)
    stages = []
    for stage in planned:
        name, n_planned = stage.get("name"), int(stage.get("epochs", 0))
        ran = epochs_run.get(name, 0)
        stages.append({
            "name": name, "trainable": stage.get("trainable"), "learning_rate": stage.get("learning_rate"),
            "lr_decay": stage.get("lr_decay"), "lr_schedule": stage.get("schedule"),
            "train_batchnorm": stage.get("train_batchnorm"), "epochs_planned": n_planned, "epochs_run": ran,
            "stopped_early": bool(history) and ran < n_planned, "seconds": round(seconds.get(name, 0.0), 1),
        })
    return {"stages": stages, "epochs_run": len(history),
            "kept": {"epoch": metrics.get("best_epoch"), "stage": metrics.get("best_stage"),
                     "monitor": metrics.get("monitor")},
            "history_recorded": bool(history)}


def _data(config: dict[str, Any], export_info: dict[str, Any]) -> dict[str, Any]:
    d = config.get("data") or {}
    adapt = recorded_settings(config)
    return {
        "source": d.get("source"),
        "fingerprint_sha256": d.get("fingerprint"),
        "fingerprint_matches_at_export": export_info.get("data_fingerprint_matches_run"),
        "classes": d.get("classes"),
        "splits": {s: {"n": d[s]["n"], "label_counts": d[s]["per_class"], "sample_shape": d[s].get("shape")}
                   for s in ("train", "val", "test") if s in d},
        "notes": d.get("notes", []),
        "reader": _reader(d.get("reader") or {}),
        "label_fraction": adapt.get("label_fraction"),
        "labels_per_class": adapt.get("labels_per_class"),
    }


def _reader(r: dict[str, Any]) -> dict[str, Any]:
    """How files were read: layout, per-sample attributes, channel rule, what was skipped and warned."""
    if not r:
        return {}
    return {"layout": r.get("layout"), "attributes": r.get("attribute_columns") or [],
            "channels": (r.get("channels") or {}).get("count"),
            "skipped": {"unreadable": len(r.get("skipped_bad_files") or []), "other": r.get("skipped_other_files", 0),
                        "hidden": r.get("skipped_hidden_files", 0)},
            "warnings": r.get("warnings") or []}


def _test_metrics(export_info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    all_metrics = export_info.get("test_metrics") or {}
    run = _flat(all_metrics.get("run", {}))
    recomputed = {}
    for fmt, m in all_metrics.items():
        if fmt == "run":
            continue
        recomputed[fmt] = {k: v for k, v in _flat(m).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return run, recomputed


def _flat(metrics: dict[str, Any]) -> dict[str, Any]:
    """Multi-task metrics ({task: {metric: value}}) as {"task/metric": value}; others unchanged."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict) and "n_labelled" in value:
            out.update({f"{key}/{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def build_card(*, run_dir: Path, config: dict[str, Any], metrics: dict[str, Any], history: list[dict[str, Any]],
               plugin: Any, export_info: dict[str, Any]) -> dict[str, Any]:
    """The model card as a dict (``model_card.json``)."""
    adapt = recorded_settings(config)
    backbone = config.get("backbone") or {}
    run_metrics, recomputed = _test_metrics(export_info)
    trained = config.get("finished_at")  # recorded by adapt
    if trained is None and (Path(run_dir) / "metrics.json").exists():  # runs from before it was
        trained = datetime.datetime.fromtimestamp((Path(run_dir) / "metrics.json").stat().st_mtime,
                                                  datetime.timezone.utc).isoformat(timespec="seconds")
    contract = export_info["contract"]
    parity = {fmt: {k: s[k] for k in ("max_abs_diff", "mean_abs_diff", "agreement", "n", "bounds", "passed")}
              | {"cases": {c: {k: v[k] for k in ("n", "max_abs_diff", "agreement")} for c, v in s["cases"].items()}}
              for fmt, s in export_info["parity"].items()}
    return {
        "schema": CARD_SCHEMA,
        "model": {
            "name": export_info.get("model_name"),
            "task": contract["task"],
            "classes": contract["class_names"],
            "decision_threshold": contract["threshold"],
            "decision_threshold_policy": metrics.get("threshold_policy"),
            "decision_rule": threshold_statement(config, metrics, contract),
            "input": contract["input"],
            "outputs": contract["outputs"],
            "preprocessing_inside": f"{contract['input'].get('preprocessing', 'as the model was trained')}; the "
                                    f"backbone's preprocessing: {backbone.get('preprocess') or 'none'}",
        },
        "intended_use": getattr(plugin, "intended_use", "") or
        f"{plugin.describe().get('description') or plugin.name}: the task it was trained and tested on.",
        "limitations": list(getattr(plugin, "limitations", ()) or ()) + list(GENERIC_LIMITATIONS)
        + [threshold_statement(config, metrics, contract)]
        + [w for w in [subgroup_warning(metrics.get("subgroups"))] if w],
        "lineage": {
            "backbone": {"name": backbone.get("name"), "family": backbone.get("family"),
                         "num_params": backbone.get("num_params"), "preprocess": backbone.get("preprocess"),
                         "input_size": adapt.get("input_size")},
            "weights": _weights(config),
            "licences": config.get("licences"),
            "plugin": {"name": plugin.name, **_plugin_version(plugin),
                       "options": (config.get("plugin") or {}).get("options")},
            "freeze_schedule": _schedule_run(config, metrics, history),
            "data": _data(config, export_info),
            "n_train": metrics.get("n_train"),
            "seed": adapt.get("seed"),
            "batch_size": adapt.get("batch_size"),
            "run_dir": export_info.get("run_dir"),
            "run_files": export_info.get("lineage") or {},  # sha256 of model.keras and the best weights
        },
        "test_metrics": run_metrics,
        "test_metrics_recomputed": recomputed,
        **{ext.card_key: ext.card_section(config, metrics, contract) for ext in _card_extensions()},
        "parity": parity,
        "artefacts": {fmt: {k: a[k] for k in ("path", "precision", "bytes") if k in a}
                      | ({"opset": a["opset"]} if "opset" in a else {})
                      for fmt, a in export_info["formats"].items()},
        "layout": export_info.get("layout") or {"name": "plain"},
        "signing": export_info.get("signing"),  # the key that signs manifest.json (manifest.sig), if any
        "latency_ms": {fmt: a["latency_ms"] for fmt, a in export_info["formats"].items() if "latency_ms" in a},
        "latency_conditions": export_info.get("latency"),
        "environment": {"training": config.get("environment"), "export": export_info.get("versions")},
        "dates": {"run_finished": trained, "exported": export_info.get("exported_at")},
        "tlzoo_version": export_info.get("tlzoo_version"),
    }


def _licence_lines(licences: dict[str, Any] | None) -> list[str]:
    if not licences:
        return []
    use = licences.get("intended_use")
    head = f"- licences (declared intended use: {use}, checked before training)" if use else \
        "- licences (no intended use declared, so not checked)"
    return [head] + [f"  - {part}: {rec.get('licence')}" + (f" ({rec['verdict']})" if rec.get("verdict") else "")
                     for part, rec in licences.items() if isinstance(rec, dict)]


def render_markdown(card: dict[str, Any]) -> str:
    m, lin = card["model"], card["lineage"]
    w, p, d, fs = lin["weights"], lin["plugin"], lin["data"], lin["freeze_schedule"]
    lines = [f"# Model card: {m['name']}", ""]
    lines += [f"{m['task']} classifier ({', '.join(map(str, m['classes']))}), "
              f"exported by tlzoo {card['tlzoo_version']} "
              f"on {card['dates']['exported']}.", "", "## Intended use", "", card["intended_use"], "",
              "## Known limitations", ""]
    lines += [f"- {x}" for x in card["limitations"]]
    i = m["input"]
    lines += ["", "## Input and outputs", "",
              f"- input `{i['name']}`: {i['dtype']} `{i['shape']}` (batch free), raw values as the data holds them",
              f"- inside the model: {m['preprocessing_inside']}",
              ]
    # probabilities per head (one per task for multi-task models), labels by their rule, other outputs
    lines += [f"- output `{k}`: {v['dtype']}" + (f", {v['rule']}" if "rule" in v else f" `{v['shape']}`")
              for k, v in m["outputs"].items()] + [""]
    lines += ["## Lineage", "",
              f"- backbone: `{lin['backbone']['name']}` ({lin['backbone']['family']}, "
              f"{_fmt(lin['backbone']['num_params'])} parameters), input {lin['backbone']['input_size']} px",
              f"- pretrained weights: {w.get('requested') or 'none'} from {w.get('source')}"
              + (f" (`{w['file']}`)" if w.get("file") else ""),
              *([f"  - origin: {w['origin']}"] if w.get("origin") else []),
              f"  - sha256 `{w.get('sha256') or '-'}`",
              f"  - licence: {w.get('licence')}" + (f"; trained on {w['dataset']}" if w.get("dataset") else ""),
              *_licence_lines(lin.get("licences")),
              f"- plugin: `{p['name']}` {p['version']} (`{p['class']}`)",
              f"- data: `{d['source']}`, fingerprint sha256 `{d['fingerprint_sha256']}`"
              + ("" if d["fingerprint_matches_at_export"] is None else
                 f" ({'re-read and matched' if d['fingerprint_matches_at_export'] else 'DIFFERS from the data read'}"
                 f" at export)"),
              f"  - label fraction: {_fmt(d['label_fraction'])}, labels per class: {_fmt(d['labels_per_class'])}, "
              f"training labels used: {lin['n_train']}"]
    for split, s in d["splits"].items():
        lines.append(f"  - {split}: {s['n']} samples, label counts {s['label_counts']}")
    lines += [f"  - {n}" for n in d["notes"]]
    r = d.get("reader") or {}
    if r:
        lines.append(f"  - read as {r['layout']}, {r['channels']} channel(s); per-sample attributes: "
                     f"{', '.join(r['attributes']) or 'none'}; skipped: {r['skipped']['unreadable']} unreadable, "
                     f"{r['skipped']['other']} non-image, {r['skipped']['hidden']} hidden files")
        lines += [f"  - warning: {w}" for w in r["warnings"]]
    lines += [f"- run file `{name}`: sha256 `{f['sha256']}` ({f['bytes']:,} bytes)"
              for name, f in (lin.get("run_files") or {}).items()]
    lines += [f"- seed {lin['seed']}, batch size {lin['batch_size']}", "", "### Freeze schedule as run", "",
              "| stage | trainable | lr | lr decay | epochs planned | epochs run | seconds |",
              "|---|---|---|---|---|---|---|"]
    for s in fs["stages"]:
        lines.append(f"| {s['name']} | {s['trainable']} | {_fmt(s['learning_rate'])} | {_fmt(s['lr_decay'])} | "
                     f"{s['epochs_planned']} | {s['epochs_run']} | {_fmt(s['seconds'])} |")
    kept = fs["kept"]
    lines += ["", f"Weights kept from epoch {kept['epoch']} (stage {kept['stage']!s}), best "
              f"{(kept.get('monitor') or {}).get('name')} = {_fmt((kept.get('monitor') or {}).get('value'))}.", ""]
    lines += ["## Test metrics", "", "| metric | run | " + " | ".join(card["test_metrics_recomputed"]) + " |",
              "|---|---|" + "---|" * len(card["test_metrics_recomputed"])]
    for key, value in card["test_metrics"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row = [_fmt(card["test_metrics_recomputed"][f].get(key)) for f in card["test_metrics_recomputed"]]
            lines.append(f"| {key} | {_fmt(value)} | " + " | ".join(row) + " |")
    lines += ["", "(`run`: metrics.json of the run; the other columns recomputed at export from each format.)", ""]
    for ext in _card_extensions():  # the extensions' sections (subgroups, forgetting, calibration ...)
        lines += ext.card_markdown(card.get(ext.card_key))
    lines += ["## Parity with the Keras model", "",
              "| format | max abs diff | mean abs diff | label agreement | bound | cases |",
              "|---|---|---|---|---|---|"]
    for fmt, s in card["parity"].items():
        cases = ", ".join(f"{c} ({v['n']}): {_fmt(v['max_abs_diff'])}" for c, v in s["cases"].items())
        bound = describe_bounds(s["bounds"])
        lines.append(f"| {fmt} | {_fmt(s['max_abs_diff'])} | {_fmt(s['mean_abs_diff'])} | {s['agreement']:.1%} "
                     f"| {bound} | {cases} |")
    lines += ["", "## Artefacts", ""]
    for fmt, a in card["artefacts"].items():
        lines.append(f"- {fmt}: `{a['path']}` ({a['precision']}, {a['bytes'] / 1e6:.1f} MB"
                     + (f", opset {a['opset']}" if "opset" in a else "") + ")")
    layout = card.get("layout") or {}
    if layout.get("name") == "triton":
        lines.append(f"- Triton model repository `{layout['model_repository']}/`: model `{layout['model_name']}`, "
                     f"version {layout['version']}, `{layout['config']}` (ONNX Runtime backend, max_batch_size "
                     f"{layout['max_batch_size']}, dynamic batching)")
    elif layout.get("name") == "tf-serving":
        lines.append(f"- TensorFlow Serving model base path `{layout['model_base_path']}/`, "
                     f"version {layout['version']}")
    lines += ["", "Every file's sha256 is in `manifest.json`; `tlzoo verify` re-checks them and re-runs parity."]
    if card.get("signing"):
        lines.append(f"`manifest.json` is signed with Ed25519 (`{card['signing']['file']}`), key fingerprint sha256 "
                     f"`{card['signing']['public_key_sha256']}`: `tlzoo verify EXPORT --public-key PUB.pem`.")
    lines.append("")
    lines += _latency_lines(card.get("latency_ms") or {}, card.get("latency_conditions") or {})
    lines += ["## Environment", ""]
    for phase, env in card["environment"].items():
        lines.append(f"- {phase}: " + ", ".join(f"{k} {v}" for k, v in (env or {}).items() if v))
    lines += ["", f"Run finished {card['dates']['run_finished']}; exported {card['dates']['exported']}.", ""]
    return "\n".join(lines)


def _latency_lines(latency: dict[str, Any], conditions: dict[str, Any]) -> list[str]:
    if not latency:
        return []
    lines = ["## Latency measured at export", "",
             f"Median ms per call on the exporting machine, {conditions.get('threads')} thread(s) "
             f"({conditions.get('threads_note', '')}); inputs: {conditions.get('inputs', 'test images')}. "
             "A first figure, not a benchmark: measure on the serving machine.", "",
             "| format | batch 1 | batch 32 | per image at batch 32 |", "|---|---|---|---|"]
    lines += [f"| {fmt} | {_fmt(f.get('batch_1'))} | {_fmt(f.get('batch_32'))} | {_fmt(f.get('per_image_batch_32'))} |"
              for fmt, f in latency.items()]
    return lines + [""]


def write_card(directory: Path, card: dict[str, Any]) -> None:
    write_json(Path(directory) / "model_card.json", card)
    (Path(directory) / "model_card.md").write_text(render_markdown(card))

"""The ``tlzoo`` command: a thin layer over the Python API."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from tlzoo.errors import TlzooError


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise TlzooError(f"--option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def cmd_backbones(args: argparse.Namespace) -> int:
    from tlzoo.zoo import backbone_info, list_backbones

    names = list_backbones(args.pattern)
    if args.json:
        print(json.dumps([backbone_info(n) for n in names], indent=2))
        return 0
    print(f"{'name':26} {'family':20} {'size':>5} {'min':>4} {'features':>8} {'params':>12}  weights (licence)")
    for n in names:
        i = backbone_info(n)
        w = ", ".join(f"{k} ({v['licence']})" for k, v in i["weights"].items()) or "-"
        print(f"{n:26} {i['family']:20} {i['default_size']:>5} {i['min_size']:>4} {i['feature_dim']:>8} {i['num_params']:>12,}  {w}")
    print(f"{len(names)} backbones")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from tlzoo.plugin import DISCOVERY_ERRORS, plugin_classes

    infos = [c.describe() for c in plugin_classes()]
    if args.json:
        print(json.dumps({"plugins": infos, "failed": DISCOVERY_ERRORS}, indent=2))
        return 0
    for i in infos:
        print(f"{i['name']:22} {i['modality']:10} {i['task']:11} backbone {i['default_backbone']:16} {i['description']}")
    for name, err in DISCOVERY_ERRORS.items():
        print(f"{name:22} FAILED TO LOAD: {err}")
    return 0


def _schedule_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.schedule:
        return None
    kind, _, n = args.schedule.partition(":")
    params: dict[str, Any] = {"kind": kind}
    if kind == "top":
        if not n.isdigit():
            raise TlzooError(f"--schedule top needs a group count, e.g. top:3; got {args.schedule!r}")
        params["groups"] = int(n)
    for key in ("epochs", "head_epochs", "lr", "lr_decay", "patience"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if kind == "fine_tune":  # fastai's names
        params = {{"head_epochs": "freeze_epochs", "lr": "base_lr"}.get(k, k): v for k, v in params.items()}
    if kind == "feature_extraction":
        params.pop("head_epochs", None)
        params.pop("lr_decay", None)
    return params


def _operating_point(args: argparse.Namespace) -> dict[str, Any]:
    """--target-sensitivity / --max-false-positive-rate / --cost-ratio -> the plugin's threshold option."""
    given = [(flag, value) for flag, value in (("sensitivity", args.target_sensitivity),
                                               ("fpr", args.max_false_positive_rate), ("cost", args.cost_ratio))
             if value is not None]
    if len(given) > 1:
        raise TlzooError("give one operating point: --target-sensitivity, --max-false-positive-rate or --cost-ratio")
    return {"threshold": f"{given[0][0]}:{given[0][1]:g}"} if given else {}


DATA_HELP = ".npz, folder of class folders (optionally under train/val/test), label table (.csv/.tsv), or tfds:NAME"


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    """How file sources are read (tlzoo.data.DataOptions)."""
    g = p.add_argument_group("reading files")
    g.add_argument("--path-column", help="label table: the file column (default: path, file, filename, image ...)")
    g.add_argument("--label-column", help="label table: the label column, or several 0/1 columns a,b,c (multilabel)")
    g.add_argument("--split-column", help="label table: the train/val/test column (default: split, subset, set)")
    g.add_argument("--label-sep", help="label table: separator of several labels in one cell (multilabel), e.g. '|'")
    g.add_argument("--classes", help="class order, comma-separated (default: sorted names)")
    g.add_argument("--channels", choices=["auto", "gray", "rgb"],
                   help="auto (default): 1 channel if every file is gray, else 3")
    g.add_argument("--skip-bad-files", action="store_true",
                   help="leave unreadable files out (recorded in config.yaml) instead of stopping")
    g.add_argument("--data-cache", metavar="DIR",
                   help="on-disk cache of decoded, resized images, reused by later epochs and runs "
                        "(default $TLZOO_DATA_CACHE; off when unset)")


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {"path_column": args.path_column, "label_column": args.label_column, "split_column": args.split_column,
             "label_sep": args.label_sep, "classes": args.classes.split(",") if args.classes else None,
             "channels": args.channels, "skip_bad_files": args.skip_bad_files or None, "cache_dir": args.data_cache}
    return {k: v for k, v in given.items() if v is not None}


def cmd_adapt(args: argparse.Namespace) -> int:
    from tlzoo.train.recipe import AdaptConfig, adapt

    options = {**_options(args.option), **_operating_point(args)}
    overrides = {
        "plugin": args.plugin, "data": args.data, "out": args.out, "backbone": args.backbone,
        "weights": None if args.weights in ("none", "None") else args.weights,
        "input_size": args.input_size, "batch_size": args.batch_size, "label_fraction": args.label_fraction,
        "labels_per_class": args.labels_per_class, "seed": args.seed, "schedule": _schedule_from_args(args),
        "plugin_options": options or None, "overwrite": args.overwrite or None,
        "weights_sha256": args.weights_sha256, "strategy": args.strategy,
        "intended_use": args.intended_use, "data_licence": args.data_licence, "calibration": args.calibration,
        "group_by": args.group_by, "max_group_gap": args.max_group_gap,
        "domain_adaptation": args.domain_adaptation, "target_data": args.target_data, "da_weight": args.da_weight,
        "l2sp": args.l2sp, "l2sp_beta": args.l2sp_beta, "hybrid_source": args.hybrid_source,
        "hybrid_ratio": args.hybrid_ratio, "hybrid_ratio_end": args.hybrid_ratio_end,
        "forgetting": args.track_forgetting or None, "forgetting_reference": args.forgetting_reference,
        "max_drift": args.max_drift, "on_drift": args.on_drift,
        "tasks": _tasks_file(args.tasks) if args.tasks else None,
        "data_options": _data_options(args) or None,
    }
    if args.config:
        cfg = AdaptConfig.from_yaml(args.config, **overrides)
    else:
        if not args.plugin or not args.data:
            raise TlzooError("adapt needs --plugin and --data (or --config FILE)")
        cfg = AdaptConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if args.weights in ("none", "None"):
        cfg.weights = None
    result = adapt(cfg)
    _print_metrics(result.metrics["test"], f"test metrics ({result.metrics['n_train']} training labels)")
    if result.metrics.get("subgroups"):
        from tlzoo.extensions.subgroups import summary

        print(summary(result.metrics["subgroups"]))
    print(f"run directory: {result.run_dir}")
    return 0


def _tasks_file(path: str) -> list[dict[str, Any]]:
    """A task list from a YAML / JSON file: a list, or a mapping with a ``tasks`` list."""
    from tlzoo.runs.directory import read_yaml

    if not Path(path).is_file():
        raise TlzooError(f"--tasks {path!r}: no such file")
    raw = read_yaml(Path(path))
    tasks = raw.get("tasks") if isinstance(raw, dict) else raw
    if not isinstance(tasks, list):
        raise TlzooError(f"--tasks {path!r}: expected a list of tasks (or a `tasks:` list), got {type(raw).__name__}")
    return tasks


def cmd_tune(args: argparse.Namespace) -> int:
    from tlzoo.analysis.tune import TuneConfig, load_space_file, tune

    cfg = TuneConfig(
        plugin=args.plugin, data=args.data, out=args.out, tuner=args.tuner, max_trials=args.max_trials,
        space=load_space_file(args.space) if args.space else None, objective=args.objective,
        weights=None if args.weights in ("none", "None") else args.weights, input_size=args.input_size,
        batch_size=args.batch_size, label_fraction=args.label_fraction, labels_per_class=args.labels_per_class,
        seed=args.seed, plugin_options=_options(args.option), cache=not args.no_cache, overwrite=args.overwrite,
        chief=args.chief, worker=args.worker, oracle=args.oracle, data_options=_data_options(args),
    )
    result = tune(cfg)
    if result.best_config_path:
        print(f"search directory: {result.out}")
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    from tlzoo.analysis.rank import rank

    weights = None if args.weights in ("none", "None") else args.weights
    result = rank(args.plugin, args.data, args.backbones, weights=weights,
                  input_size=args.input_size, max_samples=args.max_samples or None, seed=args.seed,
                  cache_dir=args.cache_dir, out=args.out, label_fraction=args.label_fraction,
                  labels_per_class=args.labels_per_class, plugin_options=_options(args.option),
                  data_options=_data_options(args), verbose=0 if args.json else 1)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    print(result.table())
    if result.out:
        print(f"written: {result.out / 'rank.json'}, {result.out / 'rank.png'}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from tlzoo.analysis.curve import CurveConfig, label_curve

    scratch_schedule = None
    if args.scratch_epochs:
        scratch_schedule = {"kind": "full", "head_epochs": 0, "epochs": args.scratch_epochs, "lr": args.scratch_lr}
    label_curve(CurveConfig(
        plugin=args.plugin, data=args.data, out=args.out, fractions=args.fractions, seeds=args.seeds,
        backbone=args.backbone, weights=args.weights, input_size=args.input_size,
        baseline=None if args.baseline == "none" else args.baseline, scratch_backbone=args.scratch_backbone,
        scratch_input_size=args.scratch_input_size, scratch_schedule=scratch_schedule, metric=args.metric,
        max_samples_seen=args.max_samples_seen, batch_size=args.batch_size, plugin_options=_options(args.option),
        data_options=_data_options(args),
        runs_dir=args.runs_dir,
    ))
    return 0


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    print(title + ":")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key:18} {value:.4f}")
        elif isinstance(value, int):
            print(f"  {key:18} {value}")
        elif isinstance(value, dict) and "n_labelled" in value:  # a multi-task run: one block per task
            _print_metrics(value, f"  task {key}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tlzoo.train.recipe import evaluate

    metrics = evaluate(args.run_dir, data=args.data, split=args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics, f"{args.split} metrics of {args.run_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tlzoo.deploy.predict import predict

    options = {"path_column": args.path_column} if args.path_column else {}
    result = predict(args.model_dir, args.data, args.out, fmt=args.format, batch_size=args.batch_size, options=options,
                     heatmaps=args.heatmaps)
    print(f"{result.n_files - result.n_errors:,} of {result.n_files:,} files scored ({result.images_per_s:,.0f} images/s); "
          f"{result.n_errors} unreadable (their rows hold the error); predictions: {result.out}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from tlzoo.analysis.explain import explain

    result = explain(args.run_dir, args.images, split=args.split, n=args.n, out=args.out,
                     class_index=args.class_index, layer=args.layer)
    what = f"Grad-CAM at layer {result.layer!r}" if result.method == "grad-cam" else "anomaly maps"
    print(f"{len(result.files)} explanations ({what}) written to {result.out}: one PNG per image, grid.png, "
          f"explanations.json")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tlzoo.cli.demo import run_demo

    run_demo(out=args.out, backbone=args.backbone)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tlzoo.deploy.export import export

    result = export(args.run_dir, formats=args.format, out=args.out, overwrite=args.overwrite, opset=args.opset,
                    data=args.data, heldout=args.heldout, samples=args.samples,
                    test_metrics=not args.no_test_metrics, verbose=1)
    if args.json:
        print(json.dumps({"out": str(result.out), "parity": result.parity, "test_metrics": result.test_metrics},
                         indent=2, default=str))
        return 0
    _print_parity(result.parity, "parity with the Keras model")
    run_metrics = result.test_metrics.get("run", {})
    for key in ("roc_auc", "accuracy"):
        if key in run_metrics:
            figures = ", ".join(f"{name} {m[key]:.4f}" for name, m in result.test_metrics.items() if key in m)
            print(f"test {key}: {figures}")
            break
    print(f"export directory: {result.out}")
    return 0


def _print_parity(parity: dict[str, Any], title: str) -> None:
    print(title + ":")
    for name, s in parity.items():
        bound = ", ".join(f"{k} <= {v:g}" for k, v in s["bounds"].items())
        print(f"  {name:12} max abs diff {s['max_abs_diff']:.3g}  mean {s['mean_abs_diff']:.3g}  "
              f"label agreement {s['agreement']:.1%}  over {s['n']} inputs  ({bound}: {'ok' if s['passed'] else 'FAILED'})")


def cmd_pretrain(args: argparse.Namespace) -> int:
    from tlzoo.zoo.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(plugin=args.plugin, data=args.data, name=args.name, backbone=args.backbone,
                         objective=args.objective, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.lr, mask_ratio=args.mask_ratio, seed=args.seed,
                         plugin_options=_options(args.option), overwrite=args.overwrite)
    result = pretrain(cfg)
    print(f"zoo entry {result.name!r}: {result.path} (final {cfg.objective} loss {result.history[-1]:.4f}); "
          f"use it with: tlzoo adapt --backbone {result.name}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tlzoo.deploy.export import verify

    report = verify(args.export_dir, parity=not args.hashes_only)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{report['files_checked']} files match manifest.json")
    if "parity" in report:
        _print_parity(report["parity"], "parity with the stored Keras outputs")
    print(f"{args.export_dir}: verified")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from tlzoo.zoo import mirror

    if args.action == "list":
        entries = mirror.list_weights(args.pattern)
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=2))
            return 0
        print(mirror.format_table(entries))
        return 0
    if args.action == "verify":
        results = mirror.verify_weights(args.pattern)
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for r in results:
                print(f"{r['status']:9} {r['backbone']:32} {r['sha256'][:16]}  {r['path']}")
            print(f"{len(results)} present: " + ", ".join(
                f"{sum(r['status'] == s for r in results)} {s}" for s in ("ok", "mismatch", "unpinned")))
        return 1 if any(r["status"] == "mismatch" for r in results) else 0
    if not args.backbone:
        raise TlzooError(f"weights {args.action} needs a backbone name")
    if args.action == "import":
        if not args.source:
            raise TlzooError("weights import needs FILE (or a SavedModel directory) and --backbone NAME")
        entry = mirror.import_weights(args.source, args.backbone, sha256=args.sha256, overwrite=args.overwrite)
    else:
        entry = mirror.fetch_weights(args.backbone, sha256=args.sha256, overwrite=args.overwrite)
    print(f"{entry.backbone}: {entry.path} (sha256 {entry.pin}, pinned in the mirror)")
    return 0


def _weights_args(args: argparse.Namespace) -> int:
    """Map the one positional argument onto what each action takes."""
    args.pattern = args.arg if args.action in ("list", "verify") else None
    args.source = args.arg if args.action == "import" else None
    if args.action == "fetch":
        args.backbone = args.backbone or args.arg
    return cmd_weights(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tlzoo", description="Transfer learning for Keras 3: zoo, plugins, adaptation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("backbones", help="list registered backbones")
    p.add_argument("pattern", nargs="?", help="glob, e.g. 'efficientnet*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("plugins", help="list domain plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("adapt", help="adapt a pretrained backbone to a domain data set")
    p.add_argument("--plugin")
    p.add_argument("--data", help=DATA_HELP)
    _add_data_flags(p)
    p.add_argument("--backbone")
    p.add_argument("--weights", help="'imagenet' (default), a weights file, or 'none'")
    p.add_argument("--weights-sha256", help="pin: the weights file's expected sha256")
    p.add_argument("--input-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--label-fraction", type=float, help="keep this stratified fraction of training labels")
    p.add_argument("--labels-per-class", type=int, help="keep this many training labels per class")
    p.add_argument("--schedule", help="feature_extraction | top:N | full | gradual | fine_tune")
    p.add_argument("--epochs", type=int)
    p.add_argument("--head-epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-decay", type=float, help="layer-wise learning-rate decay per group")
    p.add_argument("--patience", type=int, help="early-stopping patience (epochs)")
    p.add_argument("--seed", type=int)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    p.add_argument("--intended-use", choices=["research", "commercial"],
                   help="refuse pretrained weights or data whose licence does not allow this use")
    p.add_argument("--calibration", choices=["temperature", "none"],
                   help="fit a temperature on the validation split and put it in the model (default temperature)")
    p.add_argument("--target-sensitivity", type=float, metavar="S",
                   help="binary: the highest threshold reaching sensitivity S on validation")
    p.add_argument("--max-false-positive-rate", type=float, metavar="F",
                   help="binary: the lowest threshold keeping the validation false-positive rate within F")
    p.add_argument("--cost-ratio", type=float, metavar="R",
                   help="binary: the threshold minimising R x missed positives + false alarms on validation")
    p.add_argument("--data-licence", help="the training data's licence (SPDX id, e.g. CC-BY-4.0), for the gate and the model card")
    p.add_argument("--group-by", metavar="NAME",
                   help="subgroup metrics by a per-sample .npz key (e.g. site), or derived: brightness, filename_prefix "
                        "(default: the data's `groups` array, if any)")
    p.add_argument("--max-group-gap", type=float, metavar="X",
                   help="largest acceptable gap of a test metric between groups; the model card warns beyond it")
    p.add_argument("--domain-adaptation", choices=["coral", "dann"],
                   help="align source and unlabelled target features: Deep CORAL or DANN (needs --target-data)")
    p.add_argument("--target-data", metavar="PATH", help="unlabelled target images: .npz with `images`, or a folder")
    p.add_argument("--da-weight", type=float, metavar="X", help="weight of the CORAL / domain loss (default 1)")
    p.add_argument("--l2sp", type=float, metavar="ALPHA",
                   help="L2-SP: penalty alpha/2 ||w - w_pretrained||^2 on the backbone (e.g. 0.01)")
    p.add_argument("--l2sp-beta", type=float, metavar="BETA", help="L2-SP: beta/2 ||w||^2 on the head (default 0)")
    p.add_argument("--hybrid-source", metavar="PATH",
                   help="labelled source-domain data (same classes) mixed into every batch of --data")
    p.add_argument("--hybrid-ratio", type=float, metavar="R", help="share of source samples per batch, 0..1 (default 0.5)")
    p.add_argument("--hybrid-ratio-end", type=float, metavar="R2", help="anneal the ratio linearly to R2 over the stages")
    p.add_argument("--tasks", metavar="FILE",
                   help="multi-task heads: a YAML/JSON list of tasks (name, kind, labels, classes, loss_weight); "
                        "see tlzoo.model.multitask")
    p.add_argument("--track-forgetting", action="store_true",
                   help="per epoch, backbone drift from its pretrained self (linear CKA per layer group on reference "
                        "images) and source-task agreement: forgetting.json / forgetting.png in the run")
    p.add_argument("--forgetting-reference", type=int, metavar="N", help="reference training images (default 64)")
    p.add_argument("--max-drift", type=float, metavar="X",
                   help="bound on the largest per-group drift (1 - CKA), e.g. 0.3; see --on-drift")
    p.add_argument("--on-drift", choices=["stop", "lower_lr"],
                   help="past --max-drift: stop training (keep the best weights, default) or halve the learning rate")
    p.add_argument("--strategy", choices=["auto", "one", "mirrored", "multiworker"],
                   help="tf.distribute strategy (default auto: multiworker when TF_CONFIG names several workers, "
                        "mirrored on several GPUs, else one)")
    p.add_argument("--config", help="YAML config (e.g. a run's config.yaml); flags override it")
    p.add_argument("--out", help="run directory to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser("tune", help="Keras Tuner search over a plugin's search space (resumable, distributed)")
    p.add_argument("--plugin", required=True)
    p.add_argument("--data", required=True, help=DATA_HELP)
    _add_data_flags(p)
    p.add_argument("--out", required=True, help="search directory; re-running the same command continues it")
    p.add_argument("--tuner", default="random", choices=["random", "hyperband", "bayesian"])
    p.add_argument("--max-trials", type=int, default=10)
    p.add_argument("--space", help="YAML overriding the plugin's search space: NAME: [choices] | value | {min, max, sampling}")
    p.add_argument("--objective", help="default: val_ + the plugin's monitor metric")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default), a weights file, or 'none'")
    p.add_argument("--input-size", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--label-fraction", type=float)
    p.add_argument("--labels-per-class", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    p.add_argument("--no-cache", action="store_true", help="frozen-backbone trials recompute features every epoch")
    p.add_argument("--overwrite", action="store_true", help="replace a search directory instead of continuing it")
    p.add_argument("--chief", action="store_true", help="serve the oracle of a distributed search")
    p.add_argument("--worker", metavar="ID", help="run trials for the chief oracle as worker ID")
    p.add_argument("--oracle", metavar="IP:PORT", help="the chief oracle (default: $KERASTUNER_ORACLE_IP/PORT)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("rank", help="rank candidate backbones on your data before training (LogME, k-NN, linear probe)")
    p.add_argument("--plugin", required=True)
    p.add_argument("--data", required=True, help=DATA_HELP)
    _add_data_flags(p)
    p.add_argument("--backbones", nargs="+", required=True, metavar="PATTERN",
                   help="names or globs ('mobilenet*'); NAME@WEIGHTS picks other weights, NAME@none a random init")
    p.add_argument("--weights", default="imagenet", help="weights of candidates without @WEIGHTS (default imagenet)")
    p.add_argument("--input-size", type=int, help="default: the plugin's, else each backbone's")
    p.add_argument("--max-samples", type=int, default=2000, help="cap on the train and the val split each (0: all)")
    p.add_argument("--label-fraction", type=float)
    p.add_argument("--labels-per-class", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    p.add_argument("--cache-dir", help="keep the frozen features here (the tuner's cache layout) for re-runs")
    p.add_argument("--out", help="write rank.json and rank.png here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("curve", help="label-efficiency report: the recipe at several label budgets, transfer vs scratch")
    p.add_argument("--plugin", required=True)
    p.add_argument("--data", required=True, help=DATA_HELP)
    _add_data_flags(p)
    p.add_argument("--out", required=True, help="report directory; re-running the same command resumes it")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1, 0.25, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="each seed draws its own stratified subsample at every budget")
    p.add_argument("--baseline", default="scratch", choices=["scratch", "none"])
    p.add_argument("--backbone")
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--input-size", type=int)
    p.add_argument("--scratch-backbone", help="default: the same backbone, randomly initialised")
    p.add_argument("--scratch-input-size", type=int)
    p.add_argument("--scratch-epochs", type=int, help="train the scratch model end to end for this many epochs "
                                                      "(default: the plugin's schedule)")
    p.add_argument("--scratch-lr", type=float, default=2e-3)
    p.add_argument("--metric", help="test metric to plot (default: ROC-AUC for binary, accuracy for multiclass)")
    p.add_argument("--max-samples-seen", type=int,
                   help="compute budget per run: each schedule's epochs shrink so training sees at most this many "
                        "samples (the same rule for every condition)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    p.add_argument("--runs-dir", help="where the individual runs go (default OUT/runs)")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("evaluate", help="re-evaluate a run directory")
    p.add_argument("run_dir")
    p.add_argument("--data", help="another data source with the same classes")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="score new image files with a run or an export directory: a CSV row per file")
    p.add_argument("model_dir", help="a run directory, or an export directory (then --format chooses the runtime)")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="folders (searched recursively), label tables (their path column) or image files")
    p.add_argument("--out", default="predictions.csv", help="CSV to write (default predictions.csv)")
    p.add_argument("--format", help="export directory: savedmodel, onnx, tflite ... (default: the first exported)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--path-column", help="label table: the file column")
    p.add_argument("--heatmaps", metavar="DIR", help="anomaly runs: one PNG per file, the image beside its anomaly map")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a run to SavedModel / ONNX / TFLite, verified for parity, with a model card")
    p.add_argument("run_dir")
    p.add_argument("--format", nargs="+", default=["savedmodel", "onnx", "tflite"], metavar="FORMAT",
                   help="savedmodel onnx tflite tflite_int8 (default: savedmodel onnx tflite)")
    p.add_argument("--out", help="export directory (default: RUN_DIR-export)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--data", help="where the run's data lives now, if it moved")
    p.add_argument("--heldout", type=int, default=64, help="held-out test images in the parity check (default 64)")
    p.add_argument("--samples", type=int, default=16, help="test images stored for `tlzoo verify` (default 16)")
    p.add_argument("--no-test-metrics", action="store_true", help="skip recomputing test metrics from each format")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="re-check an export's hashes and parity")
    p.add_argument("export_dir")
    p.add_argument("--hashes-only", action="store_true", help="check sha256 hashes only, not parity")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("weights", help="pretrained weights on this machine: list, verify, import, fetch",
                       description="list: what each backbone needs and where it is; verify: sha256 against the "
                                   "mirror's pins; import FILE --backbone NAME: check and place a file (or SavedModel) "
                                   "into the $TLZOO_WEIGHTS_DIR mirror; fetch NAME: download and pin (needs network)")
    p.add_argument("action", choices=["list", "verify", "import", "fetch"])
    p.add_argument("arg", nargs="?", help="list/verify: glob over backbones; import: FILE or DIR; fetch: backbone")
    p.add_argument("--backbone", help="import: the backbone the file is for")
    p.add_argument("--sha256", help="import/fetch: the expected sha256 (else the mirror's pin, if any)")
    p.add_argument("--overwrite", action="store_true", help="replace a different file already in the mirror")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_weights_args)

    p = sub.add_parser("pretrain", help="pretrain a time-series backbone on your data and add it to the zoo")
    p.add_argument("--plugin", default="timeseries-fraud")
    p.add_argument("--data", required=True, help="the source data (.npz), read by the plugin")
    p.add_argument("--name", required=True, help="name of the new zoo entry ($TLZOO_HOME/zoo/NAME)")
    p.add_argument("--backbone", default="ts_fcn", help="architecture: ts_fcn, ts_resnet, ts_inception, ts_transformer")
    p.add_argument("--objective", default="masked", choices=["masked", "contrastive", "supervised"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mask-ratio", type=float, default=0.3, help="masked objective: fraction of values hidden")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("explain", help="Grad-CAM heat maps of a run's predictions (anomaly runs: their anomaly maps)")
    p.add_argument("run_dir")
    p.add_argument("--images", help=".npz (images or SPLIT_images), or a folder of image files (default: the run's data)")
    p.add_argument("--split", default="test", help="split of the run's data (or of an .npz) to take images from")
    p.add_argument("-n", type=int, default=8, help="how many images (the first n; default 8)")
    p.add_argument("--out", help="output directory (default: RUN_DIR/explanations)")
    p.add_argument("--class-index", type=int, help="the class to explain (default: the predicted class)")
    p.add_argument("--layer", help="backbone layer of the feature map (default: the last spatial layer group's)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("demo", help="adapt a pretrained backbone on a generated data set (no download)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TlzooError as exc:
        print(f"tlzoo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

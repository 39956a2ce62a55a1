"""``tlzoo adapt``: adapt a pretrained backbone to a domain data set (``tlzoo.adapt``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tlzoo.cli.common import (
    DATA_HELP,
    add_data_flags,
    check_data_source,
    data_options,
    has_scheme,
    options,
    print_metrics,
    resolve_data_path,
    weights_arg,
)
from tlzoo.errors import ConfigError, DataError, TlzooError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("adapt", help="adapt a pretrained backbone to a domain data set")
    p.add_argument("--plugin")
    p.add_argument("--data", help=DATA_HELP)
    add_data_flags(p)
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    plugin_options = {**options(args.option), **_operating_point(args)}
    overrides = {
        "plugin": args.plugin, "data": args.data, "out": args.out, "backbone": args.backbone,
        "weights": weights_arg(args.weights),
        "input_size": args.input_size, "batch_size": args.batch_size, "label_fraction": args.label_fraction,
        "labels_per_class": args.labels_per_class, "seed": args.seed, "schedule": _schedule_from_args(args),
        "plugin_options": plugin_options or None, "overwrite": args.overwrite or None,
        "weights_sha256": args.weights_sha256, "strategy": args.strategy,
        "intended_use": args.intended_use, "data_licence": args.data_licence, "calibration": args.calibration,
        "group_by": args.group_by, "max_group_gap": args.max_group_gap,
        "domain_adaptation": args.domain_adaptation, "target_data": args.target_data, "da_weight": args.da_weight,
        "l2sp": args.l2sp, "l2sp_beta": args.l2sp_beta, "hybrid_source": args.hybrid_source,
        "hybrid_ratio": args.hybrid_ratio, "hybrid_ratio_end": args.hybrid_ratio_end,
        "forgetting": args.track_forgetting or None, "forgetting_reference": args.forgetting_reference,
        "max_drift": args.max_drift, "on_drift": args.on_drift,
        "tasks": _tasks_file(args.tasks) if args.tasks else None,
        "data_options": data_options(args) or None,
    }
    if not args.config and (not args.plugin or not args.data):
        raise TlzooError("adapt needs --plugin and --data (or --config FILE)")
    _check_inputs(args)

    from tlzoo.train.recipe import AdaptConfig, adapt

    if args.config:
        cfg = AdaptConfig.from_yaml(args.config, **overrides)
    else:
        cfg = AdaptConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    if args.weights in ("none", "None"):
        cfg.weights = None
    result = adapt(cfg)
    print_metrics(result.metrics["test"], f"test metrics ({result.metrics['n_train']} training labels)")
    if result.metrics.get("subgroups"):
        from tlzoo.extensions.subgroups import summary

        print(summary(result.metrics["subgroups"]))
    print(f"run directory: {result.run_dir}")
    return 0


def _check_inputs(args: argparse.Namespace) -> None:
    """Missing files and unknown plugin / backbone names, before TensorFlow loads (the same errors
    ``adapt`` would raise seconds later)."""
    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"{str(Path(args.config))!r} does not exist")
    check_data_source(args.data)
    check_data_source(args.hybrid_source)
    target = args.target_data
    if target and not has_scheme(target) and not resolve_data_path(target).exists():
        raise DataError(f"target data {target!r} does not exist (an .npz with 'images', or a folder of images)")
    if args.plugin:
        from tlzoo.plugin import PLUGINS, discover_plugins, get_plugin

        discover_plugins()
        if args.plugin not in PLUGINS:
            get_plugin(args.plugin)  # raises the registry's error (a failed load, or "did you mean")
    if args.backbone:
        from tlzoo.zoo import get_backbone_spec

        get_backbone_spec(args.backbone)


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

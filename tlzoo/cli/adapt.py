"""``tlzoo adapt``: adapt a pretrained backbone to a domain data set (``tlzoo.adapt``)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tlzoo.cli.common import (
    add_data_flags,
    check_data_source,
    data_options,
    has_scheme,
    options,
    print_metrics,
)
from tlzoo.cli.config_flags import add_config_flags, apply_none_words, config_overrides
from tlzoo.errors import ConfigError, DataError, TlzooError
from tlzoo.paths import resolve_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("adapt", help="adapt a pretrained backbone to a domain data set",
                              description="Flags are generated from the run configuration (tlzoo/train/config.py), "
                                          "grouped by its sections; --config FILE gives them in YAML, "
                                          "flags override it.")
    p.add_argument("--config", help="YAML config in sections (or a run's config.yaml); flags override it")
    add_config_flags(p)
    plugin = p.add_argument_group("plugin options (plugin: options:)")
    plugin.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="plugin option")
    plugin.add_argument("--target-sensitivity", type=float, metavar="S",
                        help="binary: the highest threshold reaching sensitivity S on validation")
    plugin.add_argument("--max-false-positive-rate", type=float, metavar="F",
                        help="binary: the lowest threshold keeping the validation false-positive rate within F")
    plugin.add_argument("--cost-ratio", type=float, metavar="R",
                        help="binary: the threshold minimising R x missed positives + false alarms on validation")
    p.add_argument("--tasks", metavar="FILE",
                   help="multi-task heads: a YAML/JSON list of tasks (name, kind, labels, classes, loss_weight); "
                        "see tlzoo.model.multitask")
    add_data_flags(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    overrides = config_overrides(args)
    plugin_options = {**options(args.option), **_operating_point(args)}
    overrides.update(plugin_options=plugin_options or None, data_options=data_options(args) or None,
                     tasks=_tasks_file(args.tasks) if args.tasks else None)
    if not args.config and (not args.plugin or not args.data):
        raise TlzooError("adapt needs --plugin and --data (or --config FILE)")
    _check_inputs(args)

    from tlzoo.train.config import AdaptConfig
    from tlzoo.train.recipe import adapt

    if args.config:
        cfg = AdaptConfig.from_yaml(args.config, **overrides)
    else:
        cfg = AdaptConfig.from_dict({k: v for k, v in overrides.items() if v is not None})
    result = adapt(apply_none_words(cfg))
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
    if target and not has_scheme(target) and not resolve_path(target).exists():
        raise DataError(f"target data {target!r} does not exist (an .npz with 'images', or a folder of images)")
    if args.plugin:
        from tlzoo.plugin import PLUGINS, discover_plugins, get_plugin

        discover_plugins()
        if args.plugin not in PLUGINS:
            get_plugin(args.plugin)  # raises the registry's error (a failed load, or "did you mean")
    if args.backbone:
        from tlzoo.zoo import get_backbone_spec

        get_backbone_spec(args.backbone)


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

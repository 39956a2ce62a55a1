"""``tlzoo tune``: a Keras Tuner search over a plugin's search space (``tlzoo.tune``)."""
from __future__ import annotations

import argparse
from typing import Any

from tlzoo.cli.common import DATA_HELP, add_data_flags, check_data_source, data_options, options, weights_arg


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="Keras Tuner search over a plugin's search space (resumable, distributed)")
    p.add_argument("--plugin", required=True)
    p.add_argument("--data", required=True, help=DATA_HELP)
    add_data_flags(p)
    p.add_argument("--out", required=True, help="search directory; re-running the same command continues it")
    p.add_argument("--tuner", default="random", choices=["random", "hyperband", "bayesian"])
    p.add_argument("--max-trials", type=int, default=10)
    p.add_argument("--space", help="YAML overriding the plugin's search space: "
                                   "NAME: [choices] | value | {min, max, sampling}")
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_data_source(args.data)

    from tlzoo.analysis.tune import TuneConfig, load_space_file, tune

    cfg = TuneConfig(
        plugin=args.plugin, data=args.data, out=args.out, tuner=args.tuner, max_trials=args.max_trials,
        space=load_space_file(args.space) if args.space else None, objective=args.objective,
        weights=weights_arg(args.weights), input_size=args.input_size,
        batch_size=args.batch_size, label_fraction=args.label_fraction, labels_per_class=args.labels_per_class,
        seed=args.seed, plugin_options=options(args.option), cache=not args.no_cache, overwrite=args.overwrite,
        chief=args.chief, worker=args.worker, oracle=args.oracle, data_options=data_options(args),
    )
    result = tune(cfg)
    if result.best_config_path:
        print(f"search directory: {result.out}")
    return 0

"""``tlzoo rank``: rank candidate backbones on the data before training (``tlzoo.rank``)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tlzoo.cli.common import DATA_HELP, add_data_flags, check_data_source, data_options, options, weights_arg


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("rank", help="rank candidate backbones on your data before training "
                                           "(LogME, k-NN, linear probe)")
    p.add_argument("--plugin", required=True)
    p.add_argument("--data", required=True, help=DATA_HELP)
    add_data_flags(p)
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_data_source(args.data)

    from tlzoo.analysis.rank import rank

    weights = weights_arg(args.weights)
    result = rank(args.plugin, args.data, args.backbones, weights=weights,
                  input_size=args.input_size, max_samples=args.max_samples or None, seed=args.seed,
                  cache_dir=args.cache_dir, out=args.out, label_fraction=args.label_fraction,
                  labels_per_class=args.labels_per_class, plugin_options=options(args.option),
                  data_options=data_options(args), verbose=0 if args.json else 1)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    print(result.table())
    if result.out:
        print(f"written: {result.out / 'rank.json'}, {result.out / 'rank.png'}")
    return 0

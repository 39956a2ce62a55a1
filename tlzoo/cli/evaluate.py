"""``tlzoo evaluate``: re-evaluate a run directory (``tlzoo.evaluate``)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tlzoo.cli.common import check_run_dir, print_metrics


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="re-evaluate a run directory")
    p.add_argument("run_dir")
    p.add_argument("--data", help="another data source with the same classes")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_run_dir(args.run_dir)

    from tlzoo.train.recipe import evaluate

    metrics = evaluate(args.run_dir, data=args.data, split=args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics, f"{args.split} metrics of {args.run_dir}")
    return 0

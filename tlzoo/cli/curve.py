"""``tlzoo curve``: the label-efficiency report (``tlzoo.label_curve``)."""
from __future__ import annotations

import argparse
from typing import Any

from tlzoo.cli.common import DATA_HELP, add_data_flags, check_data_source, data_options, options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("curve", help="label-efficiency report: the recipe at several label budgets, "
                                            "transfer vs scratch")
    p.add_argument("--plugin", required=True)
    p.add_argument("--data", required=True, help=DATA_HELP)
    add_data_flags(p)
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_data_source(args.data)

    from tlzoo.analysis.curve import CurveConfig, label_curve

    scratch_schedule = None
    if args.scratch_epochs:
        scratch_schedule = {"kind": "full", "head_epochs": 0, "epochs": args.scratch_epochs, "lr": args.scratch_lr}
    label_curve(CurveConfig(
        plugin=args.plugin, data=args.data, out=args.out, fractions=args.fractions, seeds=args.seeds,
        backbone=args.backbone, weights=args.weights, input_size=args.input_size,
        baseline=None if args.baseline == "none" else args.baseline, scratch_backbone=args.scratch_backbone,
        scratch_input_size=args.scratch_input_size, scratch_schedule=scratch_schedule, metric=args.metric,
        max_samples_seen=args.max_samples_seen, batch_size=args.batch_size, plugin_options=options(args.option),
        data_options=data_options(args),
        runs_dir=args.runs_dir,
    ))
    return 0

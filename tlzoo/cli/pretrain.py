"""``tlzoo pretrain``: pretrain a time-series backbone and add it to the zoo (``tlzoo.pretrain``)."""
from __future__ import annotations

import argparse
from typing import Any

from tlzoo.cli.common import check_data_source, options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("pretrain", help="pretrain a time-series backbone on your data and add it to the zoo")
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_data_source(args.data)

    from tlzoo.zoo.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(plugin=args.plugin, data=args.data, name=args.name, backbone=args.backbone,
                         objective=args.objective, epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.lr, mask_ratio=args.mask_ratio, seed=args.seed,
                         plugin_options=options(args.option), overwrite=args.overwrite)
    result = pretrain(cfg)
    print(f"zoo entry {result.name!r}: {result.path} (final {cfg.objective} loss {result.history[-1]:.4f}); "
          f"use it with: tlzoo adapt --backbone {result.name}")
    return 0

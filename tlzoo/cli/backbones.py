"""``tlzoo backbones``: the zoo, from the catalogue alone (no Keras)."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("backbones", help="list registered backbones")
    p.add_argument("pattern", nargs="?", help="glob, e.g. 'efficientnet*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tlzoo.zoo import backbone_info, list_backbones

    names = list_backbones(args.pattern)
    if args.json:
        print(json.dumps([backbone_info(n) for n in names], indent=2))
        return 0
    print(f"{'name':26} {'family':20} {'size':>5} {'min':>4} {'features':>8} {'params':>12}  weights (licence)")
    for n in names:
        i = backbone_info(n)
        w = ", ".join(f"{k} ({v['licence']})" for k, v in i["weights"].items()) or "-"
        print(f"{n:26} {i['family']:20} {i['default_size']:>5} {i['min_size']:>4} {i['feature_dim']:>8} "
              f"{i['num_params']:>12,}  {w}")
    print(f"{len(names)} backbones")
    return 0

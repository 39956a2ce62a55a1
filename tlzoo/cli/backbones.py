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
    infos = [backbone_info(n) for n in names]
    width = max([26, *(len(n) for n in names)])
    print(f"{'name':{width}} {'family':12} {'size':>5} {'min':>4} {'features':>8} {'params':>12}  "
          f"{'layer groups':38} weights (licence)")
    for n, i in zip(names, infos):
        w = ", ".join(f"{k} ({v['licence']})" for k, v in i["weights"].items()) or "-"
        print(f"{n:{width}} {i['family']:12} {i['default_size']:>5} {i['min_size']:>4} {i['feature_dim']:>8} "
              f"{i['num_params']:>12,}  {i.get('layer_groups') or '-':38} {w}")
    print(f"{len(names)} backbones")
    return 0

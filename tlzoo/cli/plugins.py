"""``tlzoo plugins``: the domain plugins found through the ``tlzoo.plugins`` entry points."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plugins", help="list domain plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tlzoo.plugin import DISCOVERY_ERRORS, plugin_classes

    infos = [c.describe() for c in plugin_classes()]
    if args.json:
        print(json.dumps({"plugins": infos, "failed": DISCOVERY_ERRORS}, indent=2))
        return 0
    for i in infos:
        print(f"{i['name']:22} {i['modality']:10} {i['task']:11} backbone {i['default_backbone']:16} "
              f"{i['description']}")
    for name, err in DISCOVERY_ERRORS.items():
        print(f"{name:22} FAILED TO LOAD: {err}")
    return 0

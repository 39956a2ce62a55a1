"""``tlzoo weights``: the pretrained-weights mirror on this machine: list, verify, import, fetch."""
from __future__ import annotations

import argparse
import json
from typing import Any

from tlzoo.errors import TlzooError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("weights", help="pretrained weights on this machine: list, verify, import, fetch",
                              description="list: what each backbone needs and where it is; verify: sha256 against "
                                          "the mirror's pins; import FILE --backbone NAME: check and place a file (or "
                                          "SavedModel) into the $TLZOO_WEIGHTS_DIR mirror; fetch NAME: download and "
                                          "pin (needs network)")
    p.add_argument("action", choices=["list", "verify", "import", "fetch"])
    p.add_argument("arg", nargs="?", help="list/verify: glob over backbones; import: FILE or DIR; fetch: backbone")
    p.add_argument("--backbone", help="import: the backbone the file is for")
    p.add_argument("--sha256", help="import/fetch: the expected sha256 (else the mirror's pin, if any)")
    p.add_argument("--overwrite", action="store_true", help="replace a different file already in the mirror")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Map the one positional argument onto what each action takes."""
    args.pattern = args.arg if args.action in ("list", "verify") else None
    args.source = args.arg if args.action == "import" else None
    if args.action == "fetch":
        args.backbone = args.backbone or args.arg
    return _run_action(args)


def _run_action(args: argparse.Namespace) -> int:
    from tlzoo.zoo import mirror

    if args.action == "list":
        entries = mirror.list_weights(args.pattern)
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=2))
            return 0
        print(mirror.format_table(entries))
        return 0
    if args.action == "verify":
        results = mirror.verify_weights(args.pattern)
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for r in results:
                print(f"{r['status']:9} {r['backbone']:32} {r['sha256'][:16]}  {r['path']}")
            print(f"{len(results)} present: " + ", ".join(
                f"{sum(r['status'] == s for r in results)} {s}" for s in ("ok", "mismatch", "unpinned")))
        return 1 if any(r["status"] == "mismatch" for r in results) else 0
    if not args.backbone:
        raise TlzooError(f"weights {args.action} needs a backbone name")
    if args.action == "import":
        if not args.source:
            raise TlzooError("weights import needs FILE (or a SavedModel directory) and --backbone NAME")
        entry = mirror.import_weights(args.source, args.backbone, sha256=args.sha256, overwrite=args.overwrite)
    else:
        entry = mirror.fetch_weights(args.backbone, sha256=args.sha256, overwrite=args.overwrite)
    print(f"{entry.backbone}: {entry.path} (sha256 {entry.pin}, pinned in the mirror)")
    return 0

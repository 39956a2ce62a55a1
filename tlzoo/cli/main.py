"""The ``tlzoo`` command: a thin layer over the Python API, one module per command.

Each command module has ``add_parser(subparsers)``, which adds its sub-command(s) with ``func`` set
to the function that runs them, and ``run(args) -> int``. Command modules import nothing heavy at
module level: ``tlzoo --help``, listings and argument errors answer without TensorFlow.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tlzoo.cli import (
    adapt,
    backbones,
    curve,
    demo,
    evaluate,
    explain,
    export,
    plugins,
    predict,
    pretrain,
    rank,
    tune,
    weights,
)
from tlzoo.cli.quiet import quiet_tensorflow_startup, verbose_tensorflow_startup
from tlzoo.cli.signals import Interrupted, interruptible
from tlzoo.errors import TlzooError

# In the order `tlzoo --help` lists them (export adds export and verify).
COMMANDS = (backbones, plugins, adapt, tune, rank, curve, evaluate, predict, export, weights, pretrain, explain, demo)

VERBOSE_HELP = "show TensorFlow's start-up and C++ log lines (hidden by default)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tlzoo",
                                     description="Transfer learning for Keras 3: zoo, plugins, adaptation.")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--plugin-module", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import this module (dotted name, or a .py file) first, for the plugins it registers "
                             "with @register_plugin; repeatable")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for command_parser in set(sub.choices.values()):
        # --verbose after the command too; SUPPRESS keeps a sub-command from resetting one given before it
        command_parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2 for tlzoo's errors, 128 + signal when interrupted)."""
    with interruptible():
        try:
            args = build_parser().parse_args(argv)
            if args.verbose:
                verbose_tensorflow_startup()
            else:
                quiet_tensorflow_startup()
            if args.plugin_module:
                from tlzoo.plugin import import_plugin_module

                for ref in args.plugin_module:
                    import_plugin_module(ref)
            return int(args.func(args) or 0)
        except TlzooError as exc:
            print(f"tlzoo: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            print("tlzoo: interrupted" if code == 130 else "tlzoo: terminated", file=sys.stderr)
            return code


if __name__ == "__main__":
    sys.exit(main())

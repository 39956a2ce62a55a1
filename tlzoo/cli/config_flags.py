"""Command-line flags generated from the run configuration's declarations (``tlzoo.train.config``): each
field's flag, type, choices and help are declared once, there, so a flag cannot be dropped on its way into
the config. Imports no TensorFlow."""
from __future__ import annotations

import argparse
from typing import Any

from tlzoo.cli.common import NONE_WORDS, weights_arg
from tlzoo.train.config import FIELDS, SCHEDULE_FLAGS

_TYPES = {"int": int, "float": float, "str": str, "path": str, "data": str}
_METAVARS = {"int": "N", "float": "X", "str": "NAME", "path": "PATH", "data": "SOURCE"}


def flag_name(name: str) -> str:
    flag = FIELDS[name].metadata["flag"]
    return flag or "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    """One flag per declared field (grouped by config section), and the schedule's flags. Every default is
    None: a flag that is not given leaves the config file's value, or the plugin's default, in place."""
    groups: dict[str, Any] = {}
    for name, f in FIELDS.items():
        meta = f.metadata
        if meta["flag"] is None or name in exclude:
            continue
        section = meta["section"]
        group = groups.get(section) or groups.setdefault(
            section, parser.add_argument_group(f"{section.replace('_', ' ')} ({section}:)"))
        default = f.default if f.default is not None and not callable(f.default) else None
        said = "default" in meta["help"]
        help_text = meta["help"] + (f" (default {default})" if default not in (None, False, "") and not said else "")
        if meta["kind"] == "bool":  # a setting that is on by default gets a --no-... flag
            on = default is True
            group.add_argument("--no-" + flag_name(name)[2:] if on else flag_name(name), dest=name,
                               action="store_const", const=not on, default=None,
                               help=("turn off: " if on else "") + help_text)
            continue
        group.add_argument(flag_name(name), dest=name, type=_TYPES[meta["kind"]], choices=meta["choices"],
                           default=None, help=help_text, metavar=None if meta["choices"] else _METAVARS[meta["kind"]])
    group = groups.get("training") or parser.add_argument_group("training (training:)")
    for name, (kind, help_text) in SCHEDULE_FLAGS.items():
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=_TYPES.get(kind, str), default=None,
                           help=help_text)


def config_overrides(args: argparse.Namespace, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields the flags give (None: not given), with the schedule flags folded into ``schedule``:
    with ``--schedule KIND`` they are its parameters, without it they adjust the plugin's default."""
    out = {name: getattr(args, name, None) for name, f in FIELDS.items()
           if f.metadata["flag"] is not None and name not in exclude}
    if out.get("weights") in NONE_WORDS:
        out["weights"] = NONE_WORDS[0]  # resolved to None by `apply_none_words` after any config file
    out["schedule"] = schedule_from_flags(args)
    return out


def apply_none_words(cfg: Any) -> Any:
    """``--weights none`` means None (random initialisation), even over a config file's weights."""
    cfg.weights = weights_arg(cfg.weights)
    return cfg


def schedule_from_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    from tlzoo.errors import TlzooError

    params = {k: getattr(args, k, None) for k in SCHEDULE_FLAGS if k != "schedule"}
    params = {k: v for k, v in params.items() if v is not None}
    kind_text = getattr(args, "schedule", None)
    if not kind_text:
        return params or None  # adjustments to the plugin's default schedule
    kind, _, n = kind_text.partition(":")
    out: dict[str, Any] = {"kind": kind}
    if kind == "top":
        if not n.isdigit():
            raise TlzooError(f"--schedule top needs a group count, e.g. top:3; got {kind_text!r}")
        out["groups"] = int(n)
    out.update(params)
    if kind == "fine_tune":  # fastai's names
        out = {{"head_epochs": "freeze_epochs", "lr": "base_lr"}.get(k, k): v for k, v in out.items()}
    if kind == "feature_extraction":
        for key in ("head_epochs", "lr_decay"):
            if key in out:
                raise TlzooError(f"--{key.replace('_', '-')} has no effect with --schedule feature_extraction "
                                 "(only the head trains); drop it")
    return out

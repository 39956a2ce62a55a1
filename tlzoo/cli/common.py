"""What the command modules share: ``--option`` parsing, the data flags, printing, and the light
checks (files and run directories exist) that run before a command imports TensorFlow."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from tlzoo.errors import ConfigError, DataError, TlzooError
from tlzoo.paths import resolve_path

DATA_HELP = ".npz, folder of class folders (optionally under train/val/test), label table (.csv/.tsv), or tfds:NAME"


def parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs -> a dict (values parsed as YAML scalars)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise TlzooError(f"--option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


NONE_WORDS = ("none", "None")  # `--weights none`: random initialisation


def weights_arg(value: str | None) -> str | None:
    """``--weights none`` -> None (random init)."""
    return None if value in NONE_WORDS else value


def add_data_flags(p: argparse.ArgumentParser) -> None:
    """How file sources are read (tlzoo.data.DataOptions)."""
    g = p.add_argument_group("reading files")
    g.add_argument("--path-column", help="label table: the file column (default: path, file, filename, image ...)")
    g.add_argument("--label-column", help="label table: the label column, or several 0/1 columns a,b,c (multilabel)")
    g.add_argument("--split-column", help="label table: the train/val/test column (default: split, subset, set)")
    g.add_argument("--label-sep", help="label table: separator of several labels in one cell (multilabel), e.g. '|'")
    g.add_argument("--classes", help="class order, comma-separated (default: sorted names)")
    g.add_argument("--channels", choices=["auto", "gray", "rgb"],
                   help="auto (default): 1 channel if every file is gray, else 3")
    g.add_argument("--skip-bad-files", action="store_true",
                   help="leave unreadable files out (recorded in config.yaml) instead of stopping")
    g.add_argument("--data-cache", metavar="DIR",
                   help="on-disk cache of decoded, resized images, reused by later epochs and runs "
                        "(default $TLZOO_DATA_CACHE; off when unset)")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {"path_column": args.path_column, "label_column": args.label_column, "split_column": args.split_column,
             "label_sep": args.label_sep, "classes": args.classes.split(",") if args.classes else None,
             "channels": args.channels, "skip_bad_files": args.skip_bad_files or None, "cache_dir": args.data_cache}
    return {k: v for k, v in given.items() if v is not None}


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    print(title + ":")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key:18} {value:.4f}")
        elif isinstance(value, int):
            print(f"  {key:18} {value}")
        elif isinstance(value, dict) and "n_labelled" in value:  # a multi-task run: one block per task
            print_metrics(value, f"  task {key}")


# ---------------------------------------------------------------- checks before the heavy imports
# Each says what the library would say later, but before TensorFlow loads (seconds), so that a
# mistyped path answers at once.


def check_data_source(source: str | None) -> None:
    """A file data source that does not exist: the message ``tlzoo.data.read_source`` gives. Sources
    with a scheme (``tfds:NAME``, ``hub:...``, URLs) are left to their readers."""
    if not source or has_scheme(source):
        return
    path = resolve_path(source)
    if path.exists():
        return
    if path.suffix == ".npz":
        raise DataError(f"data file {str(path)!r} does not exist")
    raise DataError(f"data source {source!r} does not exist (a .npz file, a folder, a label table, or tfds:NAME)")


def has_scheme(source: str) -> bool:
    """``tfds:NAME``, ``hub:...``, ``https://...``: not a local path."""
    scheme, sep, _ = source.partition(":")
    return bool(sep) and scheme.isidentifier() and len(scheme) > 1


def check_file(path: str | None, flag: str) -> None:
    if path and not Path(path).expanduser().is_file():
        raise ConfigError(f"{flag} {path!r}: no such file")


def check_run_dir(run_dir: str) -> None:
    """The message ``tlzoo.load_run`` gives for a directory that is not a run."""
    from tlzoo.runs import CONFIG_FILE, MODEL_FILE

    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file() or not (path / MODEL_FILE).is_file():
        raise ConfigError(f"{str(path)!r} is not a tlzoo run directory (no {CONFIG_FILE} / {MODEL_FILE})")


def check_exists(path: str, what: str) -> None:
    """``what`` names the thing: "run directory", "export directory"."""
    if not Path(path).exists():
        raise ConfigError(f"{what} {str(Path(path))!r} does not exist")

"""Run directories written atomically: everything goes to a temporary sibling, which is
renamed into place only when the run succeeded, so a failed run leaves nothing half-written."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from tlzoo.errors import ConfigError


def check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output directory {str(out)!r} is not empty; pass --overwrite or choose another --out")


@contextlib.contextmanager
def atomic_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; on success it replaces ``out``."""
    check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; a run directory follows the umask like any other
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def now() -> str:
    """UTC time, to the second, as run records write it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, str]:
    """The versions a run was made with (recorded in config.yaml and the model card)."""
    import keras
    import tensorflow as tf

    from tlzoo._version import __version__

    return {"python": platform.python_version(), "keras": keras.__version__, "tensorflow": tf.__version__,
            "tlzoo": __version__}


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples -> plain YAML / JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``: readers see the old file
    or the new one, never half of one (for files rewritten while a long job runs)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_plain(data), indent=2, allow_nan=True) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(_plain(data), sort_keys=False))


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{str(path)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{str(path)!r} is not valid YAML: {exc}") from None

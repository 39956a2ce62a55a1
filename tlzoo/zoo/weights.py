"""Resolve pretrained weight files, online or air-gapped.

Order, for a named set of weights such as ``"imagenet"``:
  1. an explicit file path (``weights="/path/file.h5"``) is used as given;
  2. the mirror directory ``$TLZOO_WEIGHTS_DIR`` (files named as Keras names them in its cache,
     flat or under ``models/``);
  3. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``);
  4. Keras' own download (skipped when ``TLZOO_OFFLINE=1``).
If none works, a ``WeightsError`` names the file needed and how to provide it: tlzoo never
falls back to random weights.

Keras applications fetch their files through Keras' private ``file_utils.get_file``;
while a backbone is built, that call is routed through this chain, so the exact file names
and URLs stay Keras' own for every family.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from tlzoo.compat import keras_file_utils, save_weights_to_hdf5_group
from tlzoo.errors import WeightsError

ENV_DIR = "TLZOO_WEIGHTS_DIR"
ENV_OFFLINE = "TLZOO_OFFLINE"
PINS_FILE = "SHA256SUMS"  # `sha256sum` output format, optional, in the mirror directory


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a weight file came from; recorded in the run config for lineage."""

    file: str
    path: str
    source: str  # "explicit" | "mirror" | "keras-cache" | "download"
    sha256: str
    origin: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_root() -> Path | None:
    root = os.environ.get(ENV_DIR)
    return Path(root).expanduser() if root else None


def mirror_dirs() -> list[Path]:
    base = mirror_root()
    return [base, base / "models"] if base else []


def sha256_of_tree(directory: str | os.PathLike[str]) -> str:
    """One digest for a directory (a SavedModel): sha256 over sorted ``relative path + file sha256``."""
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def keras_cache_dir() -> Path:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def read_pins(directory: Path) -> dict[str, str]:
    """``{file name: sha256}`` from a ``SHA256SUMS`` file in ``directory``, if any."""
    pins_path = directory / PINS_FILE
    if not pins_path.is_file():
        return {}
    pins = {}
    for line in pins_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            pins[parts[1].lstrip("*")] = parts[0].lower()
    return pins


def verify(path: Path, expected: str | None, what: str) -> str:
    actual = sha256_of(path)
    if expected and actual != expected.lower():
        raise WeightsError(
            f"sha256 mismatch for {what} at {path}: expected {expected}, got {actual}. "
            "The file is corrupt or not the pinned one; replace it or update the pin."
        )
    return actual


def resolve_explicit(path: str | os.PathLike[str], sha256: str | None = None) -> ResolvedWeights:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    digest = verify(p, sha256, "weights file")
    return ResolvedWeights(file=p.name, path=str(p.resolve()), source="explicit", sha256=digest)


def resolve_named(
    fname: str, origin: str, *, sha256: str | None = None, download: Any = None
) -> ResolvedWeights:
    """Find ``fname`` (a Keras weight file name) through the mirror, cache and download chain."""
    for directory in mirror_dirs():
        candidate = directory / fname
        if candidate.is_file():
            pin = sha256 or read_pins(directory).get(fname)
            digest = verify(candidate, pin, fname)
            return ResolvedWeights(fname, str(candidate.resolve()), "mirror", digest, origin)
    cached = keras_cache_dir() / fname
    if cached.is_file():
        digest = verify(cached, sha256, fname)
        return ResolvedWeights(fname, str(cached), "keras-cache", digest, origin)
    problem = "downloads are disabled (TLZOO_OFFLINE=1)"
    if download is not None and os.environ.get(ENV_OFFLINE, "") not in ("1", "true", "yes"):
        try:
            path = Path(download())
            digest = verify(path, sha256, fname)
            return ResolvedWeights(fname, str(path), "download", digest, origin)
        except WeightsError:
            raise
        except Exception as exc:  # network errors come in many types
            problem = f"download failed ({type(exc).__name__}: {exc})"
    mirrors = ", ".join(str(d) for d in mirror_dirs()) or f"${ENV_DIR} is not set"
    raise WeightsError(
        f"pretrained weights file {fname!r} not found: looked in the mirror ({mirrors}) and the "
        f"Keras cache ({keras_cache_dir()}); {problem}. To provide it, download {origin} on a "
        f"machine with network and put it in the directory named by ${ENV_DIR} (or the Keras "
        "cache), or pass weights='/path/to/file.h5'."
    )


@contextlib.contextmanager
def routed_keras_downloads(
    records: list[ResolvedWeights], sha256: str | None = None
) -> Iterator[None]:
    """Route Keras' weight downloads through ``resolve_named`` while building a backbone."""
    file_utils = keras_file_utils()
    original = file_utils.get_file

    def get_file(fname=None, origin=None, *args: Any, **kwargs: Any):  # Keras' signature
        if kwargs.get("cache_subdir", args[3] if len(args) > 3 else None) != "models":
            return original(fname, origin, *args, **kwargs)
        name = fname or os.path.basename(origin or "")
        record = resolve_named(
            name,
            origin or "",
            sha256=sha256,
            download=lambda: original(fname, origin, *args, **kwargs),
        )
        records.append(record)
        return record.path

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


def save_keras_h5(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights in the h5 layout ``keras.applications`` loads (the format of
    the files in Keras' cache), atomically: to a temporary name, then renamed."""
    import h5py

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            save_weights_to_hdf5_group(f, model)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""Weights management for offline and air-gapped sites: what each backbone needs, what is on
this machine and where, sha256 verification against pins, import into the mirror, and fetch.

The mirror is the directory named by ``$TLZOO_WEIGHTS_DIR`` (see ``weights.py``): Keras weight
files under their Keras names, TF-Hub SavedModels under ``hub/<sha1 of handle>`` (the
``TFHUB_CACHE_DIR`` layout), KerasHub presets under ``keras_hub/<preset>/``, and pins in ``SHA256SUMS``
(``sha256sum`` format; a directory's pin is ``weights.sha256_of_tree`` of it). Resolution itself stays in
``weights.py``, ``hub_catalogue.py`` and ``keras_hub_catalogue.py``; this module only reads the same places
and writes the mirror.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tlzoo.errors import ConfigError, WeightsError
from tlzoo.zoo import get_backbone_spec, list_backbones
from tlzoo.zoo.keras_weight_files import KERAS_WEIGHT_FILES
from tlzoo.zoo.weights import (
    ENV_DIR,
    ENV_OFFLINE,
    PINS_FILE,
    keras_cache_dir,
    mirror_dirs,
    mirror_root,
    read_pins,
    sha256_of,
    sha256_of_tree,
)


@dataclass
class WeightsEntry:
    """One backbone's pretrained weights: what is needed and whether this machine has it."""

    backbone: str
    kind: str  # "keras-file" | "hub-savedmodel" | "keras-hub-preset"
    needs: str  # the Keras file name, the TF-Hub handle or the KerasHub preset
    origin: str  # where it is downloaded from
    present: bool = False
    source: str = ""  # "mirror" | "keras-cache" | "tfhub-cache" | "kaggle-cache" | ""
    path: str = ""
    pin: str | None = None  # sha256 pin found in the mirror's SHA256SUMS
    pin_key: str = ""  # the name the pin is listed under

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DirectoryWeights:
    """Weights that are a directory: a TF-Hub SavedModel or a KerasHub preset. What it is called, where it
    goes in the mirror (also its pin's name), where else it may be, and how to check and download it."""

    kind: str  # "hub-savedmodel" | "keras-hub-preset"
    needs: str  # the TF-Hub handle, or the preset name
    origin: str  # where it downloads from
    key: str  # its place under the mirror, and the name of its pin
    candidates: list[tuple[str, Path]]
    marker: str  # a file every complete copy has

    def is_complete(self, path: Path) -> bool:
        return (path / self.marker).is_file()

    def what(self) -> str:
        return "SavedModel" if self.kind == "hub-savedmodel" else "KerasHub preset"

    def check_loads(self, path: Path, backbone: str) -> None:
        try:
            if self.kind == "hub-savedmodel":
                from tlzoo.zoo.hub import HubLayer

                HubLayer(str(path))
            else:
                from tlzoo.zoo.keras_hub import load_preset

                load_preset(path, load_weights=True)
        except Exception as exc:
            raise WeightsError(f"{path} does not load as {backbone!r}'s {self.what()}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None

    def download(self) -> Path:
        if self.kind == "hub-savedmodel":
            import tensorflow_hub as hub

            return Path(hub.resolve(self.needs))
        from tlzoo.zoo.keras_hub_catalogue import download_preset

        return Path(download_preset(self.origin))


def directory_weights(spec: Any) -> DirectoryWeights | None:
    """The directory ``spec``'s pretrained weights are, or None for a Keras weights file."""
    if spec.family == "tfhub":
        from tlzoo.zoo.hub_catalogue import HUB_SUBDIR, cache_key, local_candidates

        handle = spec.builder_kwargs["handle"]
        return DirectoryWeights("hub-savedmodel", handle, handle, f"{HUB_SUBDIR}/{cache_key(handle)}",
                                local_candidates(handle), "saved_model.pb")
    if spec.family == "keras_hub":
        from tlzoo.zoo import keras_hub_catalogue as kh

        preset = spec.builder_kwargs["preset"]
        if kh.is_local(preset):  # a directory named on the command line: nothing to mirror
            return None
        return DirectoryWeights("keras-hub-preset", preset, kh.builtin_handle(preset) or "", f"{kh.SUBDIR}/{preset}",
                                kh.local_candidates(preset), "config.json")
    return None


def _pins() -> dict[str, str]:
    root = mirror_root()
    return read_pins(root) if root else {}


def entry_for(name: str) -> WeightsEntry:
    """Where ``name``'s pretrained weights are (or would be) on this machine."""
    spec = get_backbone_spec(name)
    pins = _pins()
    folder = directory_weights(spec)
    if folder is not None:
        entry = WeightsEntry(name, folder.kind, folder.needs, folder.origin, pin=pins.get(folder.key),
                             pin_key=folder.key)
        for source, path in folder.candidates:
            if folder.is_complete(path):
                entry.present, entry.source, entry.path = True, source, str(path)
                break
        return entry
    if name not in KERAS_WEIGHT_FILES:
        raise ConfigError(f"backbone {name!r} has no pretrained weights file known to tlzoo")
    fname, origin, _ = KERAS_WEIGHT_FILES[name]
    entry = WeightsEntry(name, "keras-file", fname, origin, pin=pins.get(fname), pin_key=fname)
    for directory in mirror_dirs():
        if (directory / fname).is_file():
            entry.present, entry.source, entry.path = True, "mirror", str(directory / fname)
            if entry.pin is None:
                entry.pin = read_pins(directory).get(fname)
            return entry
    cached = keras_cache_dir() / fname
    if cached.is_file():
        entry.present, entry.source, entry.path = True, "keras-cache", str(cached)
    return entry


def weights_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbones that have pretrained weights."""
    names = []
    for name in list_backbones(pattern):
        spec = get_backbone_spec(name)
        if directory_weights(spec) is not None or name in KERAS_WEIGHT_FILES:
            names.append(name)
    return names


def list_weights(pattern: str | None = None) -> list[WeightsEntry]:
    names = weights_backbones(pattern)
    if pattern and not names:
        raise ConfigError(f"no backbone with pretrained weights matches {pattern!r}")
    return [entry_for(n) for n in names]


def verify_weights(pattern: str | None = None) -> list[dict[str, Any]]:
    """sha256 of every present weights file (or SavedModel) against its pin.
    status: "ok" | "mismatch" | "unpinned"."""
    results = []
    for entry in list_weights(pattern):
        if not entry.present:
            continue
        path = Path(entry.path)
        digest = sha256_of_tree(path) if path.is_dir() else sha256_of(path)
        status = "unpinned" if not entry.pin else ("ok" if digest == entry.pin.lower() else "mismatch")
        results.append({**entry.to_dict(), "sha256": digest, "status": status})
    return results


# ---------------------------------------------------------------- writing the mirror


def _require_mirror() -> Path:
    root = mirror_root()
    if root is None:
        raise ConfigError(f"${ENV_DIR} is not set: name the mirror directory to import into (export {ENV_DIR}=/path)")
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK):
        raise WeightsError(f"the weights mirror {root} (${ENV_DIR}) is not writable")
    return root


def _write_pin(root: Path, key: str, digest: str) -> None:
    """Add or replace ``key``'s line in the mirror's SHA256SUMS, atomically."""
    pins_path = root / PINS_FILE
    lines = [ln for ln in (pins_path.read_text().splitlines() if pins_path.is_file() else [])
             if ln.split()[-1:] != [key] and ln.split()[-1:] != [f"*{key}"]]
    lines.append(f"{digest}  {key}")
    tmp = pins_path.with_name(f".{PINS_FILE}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(pins_path)


def _check_loads_keras(name: str, path: Path) -> None:
    from tlzoo.zoo import build_backbone

    spec = get_backbone_spec(name)
    size = spec.weights_size or spec.default_size
    try:
        build_backbone(name, str(path), (size, size, spec.channels))
    except Exception as exc:
        raise WeightsError(f"{path} does not load as {name!r} weights: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def import_weights(src: str | os.PathLike[str], backbone: str, *, sha256: str | None = None,
                   overwrite: bool = False) -> WeightsEntry:
    """Place ``src`` (a Keras weights file, a SavedModel directory for a hub backbone, or a KerasHub preset
    directory) into the mirror after checking its hash (``sha256`` or the mirror's pin) and that it loads."""
    src_path = Path(src).expanduser()
    entry = entry_for(backbone)
    root = _require_mirror()
    expected = (sha256 or entry.pin or "").lower() or None
    folder = directory_weights(get_backbone_spec(backbone))
    if folder is not None:
        if not folder.is_complete(src_path):
            raise WeightsError(f"{src_path} is not a {folder.what()} directory (no {folder.marker}); {backbone!r} "
                               f"needs one")
        digest = sha256_of_tree(src_path)
        if expected and digest != expected:
            raise WeightsError(f"sha256 mismatch for {folder.what()} {src_path} ({backbone!r}): expected {expected}, "
                               f"got {digest}. It is not the pinned one; replace it or update the pin.")
        folder.check_loads(src_path, backbone)
        target = root / entry.pin_key
        if target.exists() and not overwrite and sha256_of_tree(target) != digest:
            raise WeightsError(f"{target} already holds a different {folder.what()}; pass --overwrite to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=target.parent))
        try:
            shutil.copytree(src_path, tmp / "m")
            if target.exists():
                shutil.rmtree(target)
            (tmp / "m").replace(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        if not src_path.is_file():
            raise WeightsError(f"weights file {str(src)!r} does not exist")
        digest = sha256_of(src_path)
        if expected and digest != expected:
            raise WeightsError(f"sha256 mismatch for {src_path} ({backbone!r}, {entry.needs}): expected {expected}, "
                               f"got {digest}. It is not the pinned file; replace it or update the pin.")
        _check_loads_keras(backbone, src_path)
        target = root / entry.needs
        if target.exists() and not overwrite and sha256_of(target) != digest:
            raise WeightsError(f"{target} already holds a different file; pass --overwrite to replace it")
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            shutil.copyfile(src_path, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    _write_pin(root, entry.pin_key, digest)
    return entry_for(backbone)


def fetch_weights(backbone: str, *, sha256: str | None = None, overwrite: bool = False) -> WeightsEntry:
    """Download ``backbone``'s weights (Keras' URL with Keras' own hash check, or the TF-Hub
    handle) and import them into the mirror, pinning their sha256."""
    if os.environ.get(ENV_OFFLINE, "") in ("1", "true", "yes"):
        raise WeightsError(f"cannot fetch {backbone!r}: downloads are disabled ({ENV_OFFLINE}=1); fetch on a machine "
                           f"with network, then copy the mirror or use `tlzoo weights import`")
    entry = entry_for(backbone)
    _require_mirror()
    with tempfile.TemporaryDirectory(prefix="tlzoo-fetch-") as tmp:
        try:
            folder = directory_weights(get_backbone_spec(backbone))
            if folder is not None:
                downloaded = folder.download()
            else:
                import keras

                _, origin, keras_hash = KERAS_WEIGHT_FILES[backbone]
                downloaded = Path(keras.utils.get_file(entry.needs, origin, file_hash=keras_hash,
                                                      cache_subdir="models", cache_dir=tmp))
        except Exception as exc:  # network errors come in many types
            raise WeightsError(f"cannot fetch {backbone!r} from {entry.origin}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        return import_weights(downloaded, backbone, sha256=sha256, overwrite=overwrite)


def format_table(entries: list[WeightsEntry]) -> str:
    """``tlzoo weights list`` as text: one row per backbone, then a count."""
    width = max([32, *(len(e.backbone) for e in entries)])
    rows = [f"{'backbone':{width}} {'kind':16} {'status':8} {'source':12} {'pinned':6}  location / needs"]
    for e in entries:
        where = e.path if e.present else e.needs
        rows.append(f"{e.backbone:{width}} {e.kind:16} {'present' if e.present else 'absent':8} {e.source or '-':12} "
                    f"{'yes' if e.pin else 'no':6}  {where}")
    present = sum(e.present for e in entries)
    mirror = mirror_root()
    rows.append(f"{present} of {len(entries)} present; mirror: {mirror or f'${ENV_DIR} not set'}; "
                f"Keras cache: {keras_cache_dir()}")
    return "\n".join(rows)

"""Directory manifests: every file with its sha256, written last, checked before anything is trusted."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tlzoo._version import __version__
from tlzoo.errors import ConfigError, IntegrityError
from tlzoo.runs.directory import write_json
from tlzoo.zoo.weights import sha256_of

MANIFEST_FILE = "manifest.json"  # written last: its presence marks a complete export
MANIFEST_SCHEMA = "tlzoo.export.manifest/1"
SIGNATURE_FILE = "manifest.sig"  # optional, written after the manifest: signs it, so it cannot be listed in it


def _listed_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.relative_to(root).as_posix() not in (MANIFEST_FILE, SIGNATURE_FILE))


def write_manifest(root: Path) -> dict[str, Any]:
    """``manifest.json``: every file under ``root`` with its sha256 and size. Written last."""
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "tlzoo_version": __version__,
        "algorithm": "sha256",
        "files": {p.relative_to(root).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
                  for p in _listed_files(root)},
    }
    write_json(root / MANIFEST_FILE, manifest)
    return manifest


def check_manifest(root: Path) -> dict[str, Any]:
    """Every listed file present with its sha256, and nothing unlisted; else ``IntegrityError``."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"export directory {str(root)!r} does not exist")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise IntegrityError(f"{str(root)!r} has no {MANIFEST_FILE}: not a complete tlzoo export "
                             f"(an interrupted export leaves none); export the run again")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{str(path)!r} is not a valid manifest: {exc}") from None
    bad, missing = [], []
    for rel, entry in files.items():
        p = root / rel
        if not p.is_file():
            missing.append(rel)
        elif sha256_of(p) != entry.get("sha256"):
            bad.append(rel)
    extra = [p.relative_to(root).as_posix() for p in _listed_files(root)
             if p.relative_to(root).as_posix() not in files]
    problems = ([f"sha256 mismatch: {', '.join(bad)}"] if bad else []) + \
               ([f"missing: {', '.join(missing)}"] if missing else []) + \
               ([f"not in the manifest: {', '.join(extra)}"] if extra else [])
    if problems:
        raise IntegrityError(f"{str(root)!r} does not match its {MANIFEST_FILE} ({'; '.join(problems)}); "
                             f"the export was modified or damaged: refusing it, export the run again")
    return manifest

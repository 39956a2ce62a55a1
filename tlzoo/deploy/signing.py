"""Ed25519 signatures over an export's ``manifest.json`` (optional; needs the ``cryptography`` package).

The manifest lists every file's sha256, so a valid signature over its exact bytes vouches for the
whole export: ``verify(..., public_key=...)`` refuses a manifest edited and re-hashed after signing,
an unsigned export, and a signature made with another key. ``manifest.sig`` is JSON: the base64
signature, the sha256 of the signed bytes and the signing key's fingerprint (sha256 of its raw 32
bytes), so a wrong key is named as such. Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo
public), as ``tlzoo keys generate`` or ``openssl genpkey -algorithm ed25519`` write them.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tlzoo.deploy.formats import require
from tlzoo.deploy.manifest import MANIFEST_FILE, SIGNATURE_FILE
from tlzoo.errors import ConfigError, IntegrityError

SIGNATURE_SCHEMA = "tlzoo.export.signature/1"
PRIVATE_KEY_FILE = "tlzoo_ed25519.pem"
PUBLIC_KEY_FILE = "tlzoo_ed25519.pub.pem"


def _read_pem(path: str | Path, kind: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{kind} key file {str(p)!r} does not exist")
    data = p.read_bytes()
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{kind} key file {str(p)!r} is not a PEM file (no '-----BEGIN' line); tlzoo reads "
                          f"Ed25519 keys in PEM, as `tlzoo keys generate` writes them")
    return data


def _load_key(path: str | Path, private: bool) -> Any:
    """An Ed25519 key (private or public) from a PEM file, or ``ConfigError`` saying what the file is instead."""
    require("cryptography")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    kind = "private" if private else "public"
    data = _read_pem(path, kind)
    if private and b"PUBLIC KEY-----" in data:
        raise ConfigError(f"{str(path)!r} is a public key; signing needs the private key (--sign-key)")
    if not private and b"PRIVATE KEY-----" in data:
        raise ConfigError(f"{str(path)!r} is a private key; verification takes the public key "
                          f"({PUBLIC_KEY_FILE} beside it), and the private key should not travel")
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except TypeError:  # only private keys can be encrypted
        raise ConfigError(f"private key {str(path)!r} is encrypted with a passphrase; tlzoo signs with an "
                          f"unencrypted PEM key (keep it readable only by its owner)") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"cannot read the {kind} key {str(path)!r}: {str(exc).splitlines()[0]}") from None
    expected = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, expected):
        raise ConfigError(f"{str(path)!r} holds a {type(key).__name__.lstrip('_')}, not an Ed25519 {kind} key; "
                          f"make one with `tlzoo keys generate --out DIR`")
    return key


def load_private_key(path: str | Path) -> Any:
    """An Ed25519 private key from a PEM file."""
    return _load_key(path, private=True)


def load_public_key(path: str | Path) -> Any:
    """An Ed25519 public key from a PEM file."""
    return _load_key(path, private=False)


def fingerprint(public_key: Any) -> str:
    """sha256 of the raw 32-byte public key, hex."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_manifest(root: Path, private_key: Any) -> dict[str, Any]:
    """``manifest.sig`` beside ``manifest.json``: the Ed25519 signature over its exact bytes."""
    data = (Path(root) / MANIFEST_FILE).read_bytes()
    record = {"schema": SIGNATURE_SCHEMA, "algorithm": "ed25519", "signed_file": MANIFEST_FILE,
              "signed_sha256": hashlib.sha256(data).hexdigest(),
              "public_key_sha256": fingerprint(private_key.public_key()),
              "signature": base64.b64encode(private_key.sign(data)).decode("ascii")}
    (Path(root) / SIGNATURE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def check_signature(root: Path, public_key_path: str | Path) -> dict[str, Any]:
    """The export's ``manifest.sig`` is a valid signature of ``manifest.json`` by this public key; else
    ``IntegrityError``. Checks the signature only: ``check_manifest`` checks the files against it."""
    key = load_public_key(public_key_path)  # first: a missing `cryptography` gets the install hint
    from cryptography.exceptions import InvalidSignature

    root = Path(root)
    sig_path = root / SIGNATURE_FILE
    if not sig_path.is_file():
        raise IntegrityError(f"{str(root)!r} is not signed (no {SIGNATURE_FILE}) but a public key was given: "
                             f"refusing it; export it again with --sign-key")
    try:
        record = json.loads(sig_path.read_text())
        signature = base64.b64decode(record["signature"], validate=True)
        signed_by = str(record["public_key_sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{str(sig_path)!r} is not a valid tlzoo signature file: {exc}") from None
    ours = fingerprint(key)
    if signed_by != ours:
        raise IntegrityError(f"{str(root)!r} was signed by key {signed_by[:16]}..., not by the public key "
                             f"{str(public_key_path)!r} ({ours[:16]}...): refusing it")
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        raise IntegrityError(f"{str(root)!r} has no {MANIFEST_FILE}: not a complete tlzoo export")
    try:
        key.verify(signature, manifest.read_bytes())
    except InvalidSignature:
        raise IntegrityError(f"{str(root)!r}: the signature does not match {MANIFEST_FILE} (it was changed after "
                             f"signing, or the signature was): refusing it") from None
    return {"algorithm": "ed25519", "public_key_sha256": ours, "valid": True}


def generate_keys(out: str | Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair in ``out``: the private key readable by its owner only, the public key
    beside it. Refuses to replace existing key files."""
    require("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    out = Path(out)
    private, public = out / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing:
        raise ConfigError(f"key file(s) {', '.join(existing)} exist; choose another --out (tlzoo never replaces "
                          f"a key: exports signed with it would no longer verify)")
    out.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public

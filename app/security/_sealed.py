"""Sealed records: a clinical record survives the wipe of the tablet that holds it, unreadable
on that tablet (SECURITY.md 28, issue 12 finding 5).

Each record waiting for the central record is also written, as it is queued, to a file sealed
with libsodium's sealed box (PyNaCl `SealedBox`: X25519 + XSalsa20-Poly1305, an ephemeral
sender key) to the Trust's public key. The tablet holds only the public key, so nobody holding
the tablet can open the file, and sealing needs no PIN: a wipe after ten wrong PINs, when no
data key is available, still leaves every unsent record recoverable by Trust IT with the
private key (`kerbside recover-sealed`). No home-made cryptography here.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from app.errors import InvalidInput

SEALED_DIR = "sealed"
SUFFIX = SEALED_SUFFIX = ".sealed"
KEY_SETTING = "trust_public_key"  # base64 of the Trust's 32-byte X25519 public key
FORMAT = SEALED_FORMAT = 1


def read_key(text: str | bytes, what: str = "key") -> bytes:
    """A 32-byte key from base64 text (or the raw 32 bytes); InvalidInput otherwise."""
    raw = text if isinstance(text, bytes) else text.encode()
    if len(raw) == 32:
        return raw
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise InvalidInput(f"the {what} must be 32 bytes, base64-encoded", field=what)
    return key


def new_keypair() -> tuple[str, str]:
    """(public, private) as base64: for Trust IT (`kerbside trust-keygen`) and tests."""
    from nacl.public import PrivateKey

    private = PrivateKey.generate()
    return (
        base64.b64encode(bytes(private.public_key)).decode(),
        base64.b64encode(bytes(private)).decode(),
    )


def seal(public_key_b64: str, record: dict[str, Any]) -> bytes:
    from nacl.public import PublicKey, SealedBox

    key = PublicKey(read_key(public_key_b64, "trust public key"))
    return bytes(SealedBox(key).encrypt(json.dumps(record, sort_keys=True).encode()))


def unseal(private_key: bytes, blob: bytes) -> dict[str, Any]:
    """Open one sealed file (Trust IT, with the private key); InvalidInput if it is not ours."""
    from nacl.exceptions import CryptoError
    from nacl.public import PrivateKey, SealedBox

    try:
        body = SealedBox(PrivateKey(private_key)).decrypt(blob)
        record = json.loads(body)
    except (CryptoError, ValueError) as exc:
        raise InvalidInput(
            "a sealed file does not open with this key (another Trust's, or damaged)",
            field="sealed",
        ) from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InvalidInput("a sealed file is not in a format this Kerbside reads", field="sealed")
    return record


def write_sealed(directory: Path, name: str, blob: bytes) -> Path:
    """Atomically write `name` + SUFFIX, owner-only, fsynced (it must outlive a wipe)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{name}{SUFFIX}"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".seal-", suffix=".tmp")
    try:
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target

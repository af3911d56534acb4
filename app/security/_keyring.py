"""The OS keyring: which backends we trust, and the secrets we keep there.

On a headless Linux box `keyring` silently picks the `fail` backend, and with keyrings.alt
installed it silently picks a plaintext file (SECURITY.md 10). Both would defeat the device
secret, so only the platform keychains are accepted unless KERBSIDE_ALLOW_INSECURE_KEYRING=1
is set for tests, headless scripts and the demo, and then we warn loudly.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys

import keyring
import keyring.backend
from keyring.errors import KeyringError

from app.errors import KeyringRefused

log = logging.getLogger("kerbside.security")

SERVICE = "kerbside"
INSECURE_ENV = "KERBSIDE_ALLOW_INSECURE_KEYRING"

# module.qualname of backends that keep secrets in an OS-protected store.
TRUSTED_BACKENDS = frozenset(
    {
        "keyring.backends.Windows.WinVaultKeyring",
        "keyring.backends.macOS.Keyring",
        "keyring.backends.SecretService.Keyring",
        "keyring.backends.libsecret.Keyring",
        "keyring.backends.kwallet.DBusKeyring",
        "keyring.backends.kwallet.DBusKeyringKWallet4",
    }
)

_warned = False


def backend_name(backend: keyring.backend.KeyringBackend | None = None) -> str:
    backend = backend or keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _leaf_backends(backend: keyring.backend.KeyringBackend) -> list[keyring.backend.KeyringBackend]:
    inner = getattr(backend, "backends", None)  # ChainerBackend
    if inner is None:
        return [backend]
    return [leaf for b in inner for leaf in _leaf_backends(b)]


def insecure_allowed() -> bool:
    return os.environ.get(INSECURE_ENV) == "1"


def check_backend() -> str:
    """The name of the backend in use, or KeyringRefused if it cannot protect a secret."""
    global _warned
    backend = keyring.get_keyring()
    name = backend_name(backend)
    leaves = _leaf_backends(backend)
    trusted = bool(leaves) and all(backend_name(leaf) in TRUSTED_BACKENDS for leaf in leaves)
    if trusted:
        return name
    if insecure_allowed():
        if not _warned:
            _warned = True
            message = (
                f"WARNING: {INSECURE_ENV}=1: using the keyring backend {name}, which does not "
                "protect the device secret. Use only with synthetic data (tests, demo)."
            )
            print(message, file=sys.stderr)
        return name
    raise KeyringRefused(
        f"the OS keyring backend ({name}) cannot protect the device secret; unlock the "
        "system keychain (Secret Service, KWallet, Windows Credential Locker or macOS "
        f"Keychain), or set {INSECURE_ENV}=1 for tests with synthetic data only"
    )


def _get(account: str) -> str | None:
    try:
        return keyring.get_password(SERVICE, account)
    except KeyringError as exc:
        raise KeyringRefused("the OS keyring is locked or unavailable") from exc


def _set(account: str, value: str) -> None:
    try:
        keyring.set_password(SERVICE, account, value)
    except KeyringError as exc:
        raise KeyringRefused("the OS keyring refused to store a secret") from exc


def _delete(account: str) -> None:
    try:
        keyring.delete_password(SERVICE, account)
    except KeyringError:
        pass  # already gone: the goal of a delete


def create_device_secret(profile_id: str) -> bytes:
    account = f"device-secret/{profile_id}"
    if _get(account) is not None:
        raise KeyringRefused("a device secret already exists for this profile")
    secret = secrets.token_bytes(32)
    _set(account, secret.hex())
    if _get(account) != secret.hex():
        raise KeyringRefused("the OS keyring did not keep the device secret")
    return secret


def device_secret(profile_id: str) -> bytes:
    """The device secret; never made afresh over existing data (SECURITY.md 11)."""
    value = _get(f"device-secret/{profile_id}")
    if value is None:
        raise KeyringRefused(
            "the device secret for this profile is not in the OS keyring (was the keychain "
            "reset or changed?); the cache cannot be opened"
        )
    return bytes.fromhex(value)


def delete_device_secret(profile_id: str) -> None:
    _delete(f"device-secret/{profile_id}")


def store_client_secret(profile_id: str, secret: str) -> None:
    _set(f"client-secret/{profile_id}", secret)


def client_secret(profile_id: str) -> str | None:
    return _get(f"client-secret/{profile_id}")


def delete_client_secret(profile_id: str) -> None:
    _delete(f"client-secret/{profile_id}")


def profile_generation(profile_id: str) -> int | None:
    """The generation of the last profile.json written on this device (None: never recorded).

    profile.json can be replaced by an older copy (resetting the wrong-PIN counter or
    bringing back a removed user's key slot); the keyring copy is what a restored file is
    compared against (SECURITY.md 26).
    """
    value = _get(f"profile-generation/{profile_id}")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise KeyringRefused("the OS keyring holds a damaged profile record") from None


def set_profile_generation(profile_id: str, generation: int) -> None:
    _set(f"profile-generation/{profile_id}", str(generation))


def delete_profile_generation(profile_id: str) -> None:
    _delete(f"profile-generation/{profile_id}")

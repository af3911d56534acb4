"""The OS keyring: which backends we trust, and the secrets we keep there.

On a headless Linux box `keyring` silently picks the `fail` backend, and with keyrings.alt
installed it silently picks a plaintext file (SECURITY.md 10). Both would defeat the device
secret, so only the platform keychains are accepted unless KERBSIDE_ALLOW_INSECURE_KEYRING=1
is set for tests, headless scripts and the demo, and then we warn loudly.

Kerbside registers no keyring backend of its own: a `KeyringBackend` subclass defined at import
time joins keyring's automatic choice, which then chains it with the real keychain and the
chain is refused. The demo and the tests make their in-memory backend when they need it and
pass it to `keyring.set_keyring`. Otherwise the backend is keyring's own automatic choice; when
that is a chain mixing OS keychains with plaintext stores (keyrings.alt installed beside a
desktop keychain), the choice is made again among the OS keychains only.

profile.json records the *kind* of store ("secret-service", "kwallet", ...), not a class name:
a keyring upgrade that moves Secret Service from one class to another must not lock officers
out of their cache.

The installed tablet build (PyInstaller, `sys.frozen`) has no opt-in at all: it ignores
KERBSIDE_ALLOW_INSECURE_KEYRING, so no officer can be talked into weakening the device secret.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys

import keyring
import keyring.backend
import keyring.core
from keyring.errors import KeyringError

from app.errors import KeyringRefused

log = logging.getLogger("kerbside.security")

SERVICE = "kerbside"
INSECURE_ENV = "KERBSIDE_ALLOW_INSECURE_KEYRING"
CHAINER = "keyring.backends.chainer.ChainerBackend"
UNTRUSTED_PREFIX = "untrusted:"

# module.qualname of backends that keep secrets in an OS-protected store -> the store's kind.
STORE_KINDS: dict[str, str] = {
    "keyring.backends.Windows.WinVaultKeyring": "windows-credential-locker",
    "keyring.backends.macOS.Keyring": "macos-keychain",
    "keyring.backends.SecretService.Keyring": "secret-service",
    "keyring.backends.libsecret.Keyring": "secret-service",
    "keyring.backends.kwallet.DBusKeyring": "kwallet",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "kwallet",
}
TRUSTED_BACKENDS = frozenset(STORE_KINDS)

_warned = False


def backend_name(backend: keyring.backend.KeyringBackend | None = None) -> str:
    backend = backend or keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _leaf_backends(backend: keyring.backend.KeyringBackend) -> list[keyring.backend.KeyringBackend]:
    inner = getattr(backend, "backends", None)  # ChainerBackend
    if inner is None:
        return [backend]
    return [leaf for b in inner for leaf in _leaf_backends(b)]


def _trusted(backend: keyring.backend.KeyringBackend) -> bool:
    return backend_name(backend) in TRUSTED_BACKENDS


def store_kind(class_name: str) -> str | None:
    """The kind of store a backend class (as profile format 1 recorded it) writes to; None
    for a chain, whose members the name does not say."""
    if class_name == CHAINER:
        return None
    return STORE_KINDS.get(class_name, f"{UNTRUSTED_PREFIX}{class_name}")


def frozen_build() -> bool:
    """True in the PyInstaller build: the one that ships to tablets."""
    return bool(getattr(sys, "frozen", False))


def insecure_allowed() -> bool:
    return not frozen_build() and os.environ.get(INSECURE_ENV) == "1"


def _os_keychain_or_chosen() -> keyring.backend.KeyringBackend:
    """keyring's backend; a chain with plaintext members is narrowed to its OS keychains."""
    backend = keyring.get_keyring()
    leaves = _leaf_backends(backend)
    if backend_name(backend) == CHAINER and any(map(_trusted, leaves)):
        if not all(map(_trusted, leaves)):
            keyring.core.init_backend(limit=lambda b: backend_name(b) == CHAINER or _trusted(b))
            backend = keyring.get_keyring()
    return backend


def current_kinds() -> list[str]:
    """The kinds of store the backend in use reads from, the one it writes to first."""
    leaves = _leaf_backends(_os_keychain_or_chosen())
    kinds = [store_kind(backend_name(leaf)) or CHAINER for leaf in leaves]
    return list(dict.fromkeys(kinds))


def check_backend() -> str:
    """The kind of store in use ("secret-service"...), or KeyringRefused if it cannot protect
    a secret. With the insecure opt-in, "untrusted:<class>"."""
    global _warned
    backend = _os_keychain_or_chosen()
    name = backend_name(backend)
    leaves = _leaf_backends(backend)
    if leaves and all(map(_trusted, leaves)):
        return current_kinds()[0]
    if insecure_allowed():
        if not _warned:
            _warned = True
            message = (
                f"WARNING: {INSECURE_ENV}=1: using the keyring backend {name}, which does not "
                "protect the device secret. Use only with synthetic data (tests, demo)."
            )
            print(message, file=sys.stderr)
        return f"{UNTRUSTED_PREFIX}{name}"
    raise KeyringRefused(
        f"the OS keyring backend ({name}) cannot protect the device secret; unlock the "
        "system keychain (Secret Service, KWallet, Windows Credential Locker or macOS "
        "Keychain) and try again, or ask IT to check this device (kerbside doctor)"
    )


def check_same_store(recorded: str | None) -> None:
    """Refuse to look for a profile's secrets in another kind of store than it was made with
    (a swapped keychain would otherwise read as a missing device secret)."""
    check_backend()
    kinds = current_kinds()
    if recorded is not None and recorded not in kinds:
        raise KeyringRefused(
            f"this profile's device secret is kept in the {recorded} store, but the OS keyring "
            f"in use now is {', '.join(kinds)}; the cache cannot be opened"
        )


class MemoryKeyringBase:
    """Secrets in this process's memory only. Not a KeyringBackend until `memory_keyring()`
    makes one, so importing this module registers nothing with keyring (see module doc)."""

    priority = -1.0  # never keyring's automatic choice, even once registered

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


def memory_keyring() -> keyring.backend.KeyringBackend:
    """A fresh in-memory backend for the demo (and tests) to pass to `keyring.set_keyring`."""
    global _MemoryKeyring
    if _MemoryKeyring is None:

        class MemoryKeyring(MemoryKeyringBase, keyring.backend.KeyringBackend):
            pass

        MemoryKeyring.__qualname__ = "MemoryKeyring"  # its name in profile.json
        _MemoryKeyring = MemoryKeyring
    return _MemoryKeyring()


_MemoryKeyring: type[keyring.backend.KeyringBackend] | None = None


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


def _client_account(profile_id: str, source: str | None) -> str:
    """The home source's secret keeps the account enrolment always used (None); another
    source's secret has its own (`SourceSettings.keyring_name`)."""
    if source is None:
        return f"client-secret/{profile_id}"
    return f"client-secret/{profile_id}:source:{source}"


def store_client_secret(profile_id: str, secret: str, source: str | None = None) -> None:
    _set(_client_account(profile_id, source), secret)


def client_secret(profile_id: str, source: str | None = None) -> str | None:
    return _get(_client_account(profile_id, source))


def delete_client_secret(profile_id: str, source: str | None = None) -> None:
    _delete(_client_account(profile_id, source))


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


def _site_account(client_id: str, source: str | None) -> str:
    if source is None:
        return f"site-client-secret/{client_id}"
    return f"site-client-secret/{client_id}:source:{source}"


def store_site_client_secret(client_id: str, secret: str, source: str | None = None) -> None:
    """The device's client secret as Trust IT provisioned it (`kerbside provision`); each
    enrolment copies it to its profile's own entry. `source`: None for the home central
    record, else the name of a read-only source in the site configuration (two Trusts may
    well give this device the same client id)."""
    _set(_site_account(client_id, source), secret)


def site_client_secret(client_id: str, source: str | None = None) -> str | None:
    return _get(_site_account(client_id, source))


def probe_keyring() -> str:
    """Write, read back and delete a throwaway entry: the keychain is unlocked and writable.
    Returns the kind of store; KeyringRefused says what failed."""
    kind = check_backend()
    account = f"doctor-probe/{secrets.token_hex(8)}"
    value = secrets.token_hex(16)
    _set(account, value)
    try:
        if _get(account) != value:
            raise KeyringRefused("the OS keyring did not give back what was stored")
    finally:
        _delete(account)
    if _get(account) is not None:
        raise KeyringRefused("the OS keyring did not delete an entry")
    return kind


def audit_head(profile_id: str) -> tuple[int, str] | None:
    """The newest audit entry this device committed (seq, hash), kept outside the cache so
    that entries cut off the end of the chain, or a chain re-hashed after an edit, show."""
    value = _get(f"audit-head/{profile_id}")
    if not value:
        return None
    seq, _, digest = value.partition(":")
    try:
        return int(seq), digest
    except ValueError:
        raise KeyringRefused("the OS keyring holds a damaged audit record") from None


def set_audit_head(profile_id: str, seq: int, digest: str) -> None:
    current = audit_head(profile_id)
    if current is None or seq > current[0]:
        _set(f"audit-head/{profile_id}", f"{seq}:{digest}")


def delete_audit_head(profile_id: str) -> None:
    _delete(f"audit-head/{profile_id}")

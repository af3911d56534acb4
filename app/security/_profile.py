"""A profile: one tablet's cache directory, its users' key slots, lockout and wipe.

Key slots work like LUKS: one random 256-bit data key encrypts the cache; each user holds a
copy wrapped (AES-256-GCM) by a key derived from their PIN with Argon2id *and* the device
secret from the OS keyring. Changing a PIN rewraps one slot and never re-encrypts the cache.
A copied profile directory is useless without the keyring's device secret, and a leaked device
secret still leaves a memory-hard KDF per PIN guess.

`profile.json` holds no patient data: key slots, lockout counters, the central records it syncs
with ("sources": the home Trust's first, then read-only neighbours), policy.
It is guarded three ways (SECURITY.md 26, issue 12 findings 3 and 4):
- a MAC over the whole document, keyed from the device secret in the OS keyring, so editing
  the failure counter, the token URL or a limit makes the profile refuse to open;
- a generation number under the MAC with a monotonic copy in the keyring, so restoring an
  older copy of the file (to reset the counter or bring back a removed user) is refused;
- an exclusive lock file around every read-modify-write, unique temporary names and an atomic
  replace, so parallel wrong-PIN attempts are each counted and none trips over another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import (
    CacheWiped,
    InvalidInput,
    LockedOut,
    ProfileError,
    ProfileTampered,
    UnlockFailed,
)
from app.security import _keyring

log = logging.getLogger("kerbside.security")

PROFILE_FILE = "profile.json"
CACHE_FILE = "cache.db"
STATUS_FILE = "status.json"
LOCK_FILE = "profile.lock"
MAC_FIELD = "mac"
TAMPERED = (
    "the profile file fails its integrity check (edited outside Kerbside?); "
    "the cache stays closed: ask Trust IT to re-enrol this tablet"
)
ROLLED_BACK = (
    "the profile file is older than the last one this tablet saved (restored from a copy?); "
    "the cache stays closed: ask Trust IT to re-enrol this tablet"
)
# profile.json's layout. 2: the keyring is recorded as the kind of store ("keyring_store"),
# not format 1's backend class name ("keyring_backend"). 3: the central record ("server") is
# the home entry of a list of sources ("sources", issue 14). Older formats migrate forward once
# verified (`_migrate`; the next save writes them); a newer one is refused, since this
# Kerbside cannot know what it means.
FORMAT = 3
_USER_ID = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost. The default takes ~0.15 s and 64 MiB here: cheap for one unlock,
    expensive for an offline guesser."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 2


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Growing delays after `free_attempts` failures, then a wipe at `max_failures`."""

    max_failures: int = 10
    free_attempts: int = 3
    base_delay_s: float = 5.0
    max_delay_s: float = 300.0

    def delay_after(self, failures: int) -> float:
        if failures < self.free_attempts:
            return 0.0
        return float(
            min(self.base_delay_s * 2 ** (failures - self.free_attempts), self.max_delay_s)
        )


@dataclass(slots=True)
class ServerSettings:
    base_url: str
    client_id: str
    token_url: str | None = None
    ca_bundle: str | None = None


HOME = "home"  # the role of the Trust whose records this team writes (and the home's usual name)
READ_ONLY = "read-only"  # a neighbour or a regional shared record: read, never written to
SOURCE_ROLES = (HOME, READ_ONLY)
# Source names travel in keyring accounts, sync's JSON and audit entries: a safe, short charset.
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_SOURCE_FIELDS = (
    "name",
    "base_url",
    "client_id",
    "token_url",
    "ca_bundle",
    "display_name",
    "ods_code",
    "role",
    "revoked_at",
)


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One FHIR R4 central record the profile syncs with (issue 14). Configuration only: no
    patient data, readable without a PIN; the client secret is in the OS keyring."""

    name: str
    base_url: str
    client_id: str
    token_url: str | None = None
    ca_bundle: str | None = None
    display_name: str | None = None  # the Trust's name as officers know it
    ods_code: str | None = None  # the Trust's ODS organisation code
    role: str = READ_ONLY
    # When a read-only source told this device it is revoked (ISO instant): what it brought
    # was erased and sync no longer asks it; `source remove` (and add again) ends it.
    revoked_at: str | None = None

    @property
    def is_home(self) -> bool:
        return self.role == HOME

    @property
    def server(self) -> ServerSettings:
        return ServerSettings(self.base_url, self.client_id, self.token_url, self.ca_bundle)

    @property
    def keyring_name(self) -> str | None:
        """The `source` argument of the keyring's client-secret functions: None for the home
        source, whose secret stays in the account enrolment has always used."""
        return None if self.is_home else self.name


def _source_entry(source: SourceSettings) -> dict[str, Any]:
    """A source as profile.json keeps it: `revoked_at` only once set (a profile written
    without it stays readable by the release before it)."""
    entry = asdict(source)
    if entry.get("revoked_at") is None:
        entry.pop("revoked_at", None)
    return entry


def check_source_name(name: str) -> None:
    if not _SOURCE_NAME.match(name):
        raise InvalidInput(
            "a source name is 1-32 lower-case letters, digits, - or _, starting with a letter "
            "or digit (e.g. trust-2)",
            field="name",
        )


def _source_from_server(server: dict[str, Any]) -> dict[str, Any]:
    """Format 2's `server` as format 3's home source."""
    return {
        "name": HOME,
        "base_url": server.get("base_url"),
        "client_id": server.get("client_id"),
        "token_url": server.get("token_url"),
        "ca_bundle": server.get("ca_bundle"),
        "display_name": None,
        "ods_code": None,
        "role": HOME,
    }


MIN_PIN_LENGTH = 6
MAX_PIN_LENGTH = 16  # the unlock pad's limit
MIN_PIN_SETTING = "min_pin_length"  # the centre's policy may ask for longer PINs


def check_pin(pin: str, *, min_length: int = MIN_PIN_LENGTH) -> None:
    """Refuse PINs an observer or a guesser would try first (NCSC device guidance; NIST
    800-63B's blocklist idea). Six digits is the floor; the centre's policy may raise it.

    Refused: fewer digits than the minimum, anything but digits (the tablet's pad has only
    digits, so a PIN set from the CLI must be typeable there), runs with a constant step even
    across 9->0 (123456, 987654, 135791, 890123), a repeated block (111111, 121212, 123123)
    and doubled digits (112233).
    """
    minimum = max(MIN_PIN_LENGTH, min_length)
    if not pin.isascii() or not pin.isdigit():
        raise InvalidInput("the PIN must be digits only", field="pin")
    if len(pin) < minimum:
        raise InvalidInput(f"the PIN must have at least {minimum} digits", field="pin")
    if len(pin) > MAX_PIN_LENGTH:
        raise InvalidInput(f"the PIN must have at most {MAX_PIN_LENGTH} digits", field="pin")
    if len(set(pin)) == 1:
        raise InvalidInput("the PIN must not repeat one digit", field="pin")
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if len(steps) == 1:
        raise InvalidInput("the PIN must not be a run of digits like 123456", field="pin")
    for size in range(2, len(pin) // 2 + 1):
        if len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size):
            raise InvalidInput("the PIN must not repeat a pattern like 121212", field="pin")
    if len(pin) % 2 == 0 and pin[0::2] == pin[1::2]:
        raise InvalidInput("the PIN must not double each digit like 112233", field="pin")


def check_user_id(user_id: str) -> None:
    if not _USER_ID.match(user_id):
        raise InvalidInput(
            "a user name is 1-64 letters, digits or . _ @ - (e.g. a collar or staff number)",
            field="user",
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An OS advisory lock on `path`, held until the block ends (released if we die)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on the Windows tablets
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                    continue
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _canonical(data: dict[str, Any]) -> bytes:
    body = {k: v for k, v in data.items() if k != MAC_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _mac_key(device_secret: bytes, profile_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"kerbside/profile-mac/v1/{profile_id}".encode(),
    ).derive(device_secret)


def profile_mac(data: dict[str, Any], device_secret: bytes) -> str:
    """HMAC-SHA256 over every field but the MAC itself: all of profile.json is guarded, so a
    field added later is covered without anyone remembering to list it."""
    key = _mac_key(device_secret, str(data["profile_id"]))
    return hmac.new(key, _canonical(data), hashlib.sha256).hexdigest()


def _recorded_store(data: dict[str, Any]) -> str | None:
    """The kind of keyring store the profile's device secret is in (None: not known)."""
    if data["format"] == 1:
        return _keyring.store_kind(str(data.get("keyring_backend", "")))
    return data.get("keyring_store")


def _source_ok(raw: Any) -> bool:
    """One entry of profile.json's `sources` has the shape `SourceSettings` needs."""
    return (
        isinstance(raw, dict)
        and set(raw) <= set(_SOURCE_FIELDS)
        and all(isinstance(raw.get(k), str | None) for k in _SOURCE_FIELDS)
        and isinstance(raw.get("name"), str)
        and bool(_SOURCE_NAME.match(raw["name"]))
        and isinstance(raw.get("base_url"), str)
        and isinstance(raw.get("client_id"), str)
        and raw.get("role") in SOURCE_ROLES
        and (raw["name"] != HOME or raw["role"] == HOME)
    )


def _sources_ok(sources: Any) -> bool:
    """Every entry well formed, names unique, at most one home source and it comes first."""
    if not isinstance(sources, list) or not all(map(_source_ok, sources)):
        return False
    names = [s["name"] for s in sources]
    roles = [s["role"] for s in sources]
    return len(set(names)) == len(names) and HOME not in roles[1:]


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """profile.json brought forward to FORMAT, in memory."""
    if data["format"] == 1:
        data["keyring_store"] = _recorded_store(data)
        data.pop("keyring_backend", None)
        data["format"] = 2
    if data["format"] == 2:
        # The one central record becomes the home source. Its secret stays in its keyring
        # account (`keyring_name` is None for home), so nothing moves in the keyring.
        server = data.pop("server", None)
        data["sources"] = [_source_from_server(server)] if isinstance(server, dict) else []
        data["format"] = 3
    return data


class Profile:
    """A profile directory. Load with `Profile.load`, make with `Profile.create`."""

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.directory = directory
        self._data = data
        self._lock = threading.RLock()
        self._lock_depth = 0

    # -- paths and plain facts ---------------------------------------------------------------
    @property
    def cache_path(self) -> Path:
        return self.directory / CACHE_FILE

    @property
    def status_path(self) -> Path:
        return self.directory / STATUS_FILE

    @property
    def profile_id(self) -> str:
        return str(self._data["profile_id"])

    @property
    def users(self) -> list[str]:
        return sorted(self._data["users"])

    @property
    def wiped(self) -> dict[str, Any] | None:
        return self._data.get("wiped")

    @property
    def lockout(self) -> LockoutPolicy:
        return LockoutPolicy(**self._data["lockout"])

    @property
    def failures(self) -> int:
        return int(self._data.get("failures", 0))

    @property
    def locked_until(self) -> float:
        return float(self._data.get("locked_until", 0.0))

    @property
    def sources(self) -> list[SourceSettings]:
        """The central records this profile syncs with, the home source (if set) first."""
        return [
            SourceSettings(**{k: raw.get(k) for k in _SOURCE_FIELDS})
            for raw in self._data.get("sources", [])
        ]

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        which = f"named {name} " if _SOURCE_NAME.match(name) else "of that name "
        raise ProfileError(f"no source {which}on this profile (kerbside source list)")

    @property
    def home_source(self) -> SourceSettings | None:
        return next((s for s in self.sources if s.is_home), None)

    @property
    def server(self) -> ServerSettings | None:
        """The home source's connection settings (None until one is set)."""
        home = self.home_source
        return home.server if home is not None else None

    @property
    def settings(self) -> dict[str, Any]:
        """Non-secret preferences and centre policy (night mode, idle lock, cache TTL)."""
        return dict(self._data.get("settings", {}))

    @property
    def admins(self) -> list[str]:
        """Users who may add and remove users and change the team: the first enrolled user,
        and any user an admin named (a profile from before roles: its earliest slot)."""
        named = self._data.get("admins")
        if isinstance(named, list):
            return sorted(u for u in named if u in self._data["users"])
        slots = self._data.get("users", {})
        if not slots:
            return []
        return [min(slots, key=lambda u: (slots[u].get("created", 0), u))]

    def require_admin(self, user_id: str, what: str) -> None:
        if user_id not in self.admins:
            raise ProfileError(f"only an admin user may {what}")

    @property
    def min_pin_length(self) -> int:
        """The centre's minimum (device policy or site configuration), never below six."""
        value = self._data.get("settings", {}).get(MIN_PIN_SETTING, MIN_PIN_LENGTH)
        try:
            return max(MIN_PIN_LENGTH, int(value))
        except (TypeError, ValueError):
            return MIN_PIN_LENGTH

    @property
    def generation(self) -> int:
        return int(self._data.get("generation", 0))

    def update_settings(self, **values: Any) -> None:
        with self._locked():
            self._data.setdefault("settings", {}).update(values)
            self._save()

    def set_server(self, server: ServerSettings | None) -> None:
        """Set (or with None, clear) the home source's connection; its name, display name and
        ODS code stay. A new home source is named "home"."""
        with self._locked():
            sources = [s for s in self._data.get("sources", []) if s.get("role") != HOME]
            if server is not None:
                home = self.home_source
                entry = _source_entry(home) if home is not None else _source_from_server({})
                entry.update(asdict(server))
                sources.insert(0, entry)
            self._data["sources"] = sources
            self._save()

    def add_source(self, source: SourceSettings, client_secret: str) -> None:
        """Add a source and keep its client secret in the OS keyring.

        The caller proves who asked (an admin's PIN) and checks the address first. Names are
        unique; a profile has at most one home source, always first. The secret is stored
        before the profile names the source, and taken back if the profile cannot be saved,
        so a source is never listed without its secret.
        """
        check_source_name(source.name)
        if source.role not in SOURCE_ROLES:
            raise InvalidInput(f"a source's role is {' or '.join(SOURCE_ROLES)}", field="role")
        if source.name == HOME and not source.is_home:
            raise InvalidInput("the name 'home' is kept for the home source", field="name")
        with self._locked():
            self._refuse_if_wiped()
            if any(s.name == source.name for s in self.sources):
                raise ProfileError(f"this profile already has a source named {source.name}")
            home = self.home_source
            if source.is_home and home is not None:
                raise ProfileError(
                    f"this profile already has a home source ({home.name}); re-enrol the "
                    "tablet to change it"
                )
            entry = _source_entry(source)
            sources = list(self._data.get("sources", []))
            if source.is_home:
                sources.insert(0, entry)
            else:
                sources.append(entry)
            _keyring.store_client_secret(self.profile_id, client_secret, source.keyring_name)
            self._data["sources"] = sources
            try:
                self._save()
            except BaseException:
                _keyring.delete_client_secret(self.profile_id, source.keyring_name)
                raise

    def mark_source_revoked(self, name: str, at: str) -> SourceSettings:
        """A read-only source revoked this device (its data is already erased): sync and
        look-up skip it from now on, and the sync screen and `source list` say so. Its client
        secret leaves the keyring now: a credential its Trust has revoked has no use here and
        should not outlive the revocation until an admin removes the source. Returns it as
        saved."""
        with self._locked():
            source = self.source(name)
            if source.is_home:
                raise ProfileError("the home source's revocation wipes the profile instead")
            for raw in self._data["sources"]:
                if raw.get("name") == name:
                    raw["revoked_at"] = at
            self._save()
            _keyring.delete_client_secret(self.profile_id, source.keyring_name)
            return self.source(name)

    def remove_source(self, name: str) -> SourceSettings:
        """Forget a read-only source's settings and its keyring secret; returns what it was.

        The home source cannot be removed (its records are the team's own: re-enrol instead).
        The caller has proved who asked and erased what the source brought into the cache.
        """
        with self._locked():
            source = self.source(name)
            if source.is_home:
                raise ProfileError(
                    "the home source cannot be removed; re-enrol the tablet to change it"
                )
            self._data["sources"] = [s for s in self._data["sources"] if s.get("name") != name]
            self._save()
            _keyring.delete_client_secret(self.profile_id, source.keyring_name)
            return source

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / PROFILE_FILE).exists()

    @classmethod
    def load(cls, directory: Path) -> Profile:
        """Read and verify profile.json (ProfileTampered if its MAC or generation is wrong)."""
        if not cls.exists(directory):
            raise ProfileError("no Kerbside profile here; enrol first (kerbside enrol)")
        profile = cls(directory, {})
        with profile._locked():
            pass
        return profile

    @staticmethod
    def _read(directory: Path) -> dict[str, Any]:
        path = directory / PROFILE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProfileError("no Kerbside profile here; enrol first (kerbside enrol)") from None
        except (OSError, ValueError) as exc:
            raise ProfileError("the profile file cannot be read") from exc
        if not isinstance(data, dict) or not isinstance(data.get("format"), int):
            raise ProfileError("the profile file is not in a format this Kerbside reads")
        if data["format"] > FORMAT:
            raise ProfileError(
                f"this profile was made by a newer Kerbside (profile format {data['format']}, "
                f"this app reads up to {FORMAT}); update the app"
            )
        if data["format"] < 1 or not isinstance(data.get("profile_id"), str):
            raise ProfileError("the profile file is not in a format this Kerbside reads")
        return data

    def _verify(self) -> None:
        """Check the MAC and that the file is not older than the last one saved here.

        A wiped profile is not checked: its key slots and device secret are gone, so nothing
        in it opens anything. A profile written before MACs existed (no MAC, no generation in
        the keyring) is accepted once and gains both at its next save, which every unlock
        attempt makes.
        """
        if self.wiped:
            return
        recorded = _keyring.profile_generation(self.profile_id)
        mac = self._data.get(MAC_FIELD)
        if mac is None and recorded is None:
            return
        secret = self._device_secret()
        if not isinstance(mac, str) or not hmac.compare_digest(
            mac, profile_mac(self._data, secret)
        ):
            log.warning("profile.json failed its integrity check")
            raise ProfileTampered(TAMPERED)
        if recorded is not None and self.generation < recorded:
            log.warning("profile.json is older than the last saved generation")
            raise ProfileTampered(ROLLED_BACK)

    def _check_shape(self) -> None:
        """Every field the code reads has the type it expects, and KDF costs are bounded: a
        damaged (or hand-made, pre-MAC) file is one clear ProfileError, never a KeyError or an
        Argon2 call asking for a terabyte (found by tests/security/test_fuzz_parsers.py)."""
        d = self._data
        damaged = ProfileError("the profile file is damaged; ask Trust IT to re-enrol this tablet")

        def kdf_ok(kdf: Any) -> bool:
            return (
                isinstance(kdf, dict)
                and all(
                    isinstance(kdf.get(k), int) for k in ("time_cost", "memory_kib", "parallelism")
                )
                and 1 <= kdf["time_cost"] <= 16
                and 8 <= kdf["memory_kib"] <= 1 << 21
                and 1 <= kdf["parallelism"] <= 16
            )

        def b64_ok(value: Any) -> bool:
            if not isinstance(value, str):
                return False
            try:
                base64.b64decode(value.encode(), validate=True)
            except ValueError:
                return False
            return True

        users = d.get("users")
        if not isinstance(users, dict) or not isinstance(d.get("settings", {}), dict):
            raise damaged
        for slot in users.values():
            if not isinstance(slot, dict) or not kdf_ok(slot.get("kdf")):
                raise damaged
            if not all(b64_ok(slot.get(k)) for k in ("salt", "nonce", "wrapped_key")):
                raise damaged
        if self.wiped is not None and not isinstance(self.wiped, dict):
            raise damaged
        if not _sources_ok(d.get("sources", [])):  # read before unlock, even when wiped
            raise damaged
        if self.wiped:
            return
        if not kdf_ok(d.get("kdf")) or not isinstance(d.get("lockout"), dict):
            raise damaged
        try:
            policy = LockoutPolicy(**d["lockout"])
            float(d.get("failures", 0))
            float(d.get("locked_until", 0.0))
        except (TypeError, ValueError):
            raise damaged from None
        if not all(isinstance(getattr(policy, f), int | float) for f in policy.__slots__):
            raise damaged

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the profile lock and work on a freshly read, verified copy of the file.

        Another process may have written since we last read (a parallel unlock attempt), so
        every read-modify-write starts from the disk. Nested use joins the outer lock.
        """
        with self._lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            with _exclusive(self.directory / LOCK_FILE):
                self._lock_depth = 1
                try:
                    self._data = self._read(self.directory)
                    self._verify()  # the MAC covers the file as written, so before _migrate
                    self._data = _migrate(self._data)
                    self._check_shape()
                    yield
                finally:
                    self._lock_depth = 0

    @classmethod
    def create(
        cls,
        directory: Path,
        user_id: str,
        pin: str,
        *,
        kdf: KdfParams | None = None,
        lockout: LockoutPolicy | None = None,
    ) -> tuple[Profile, bytes]:
        """A new profile with its first user; returns it and the fresh data key."""
        check_user_id(user_id)
        check_pin(pin)
        backend = _keyring.check_backend()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        with _exclusive(directory / LOCK_FILE):
            return cls._create_locked(directory, user_id, pin, backend, kdf, lockout)

    @classmethod
    def _create_locked(
        cls,
        directory: Path,
        user_id: str,
        pin: str,
        backend: str,
        kdf: KdfParams | None,
        lockout: LockoutPolicy | None,
    ) -> tuple[Profile, bytes]:
        previous: dict[str, Any] | None = None
        if cls.exists(directory):
            previous = _migrate(cls._read(directory))
            if not previous.get("wiped"):
                raise ProfileError("a profile already exists here")
        if (directory / CACHE_FILE).exists():
            raise ProfileError("a cache file already exists here; refusing to overwrite it")
        profile_id = str(uuid.uuid4())
        # A re-enrolment after a wipe keeps the home source's settings, as it always kept the
        # server's. Read-only sources are not carried: their secrets went with the wipe, so
        # they are added again (`kerbside source add`, or the site configuration at enrol).
        before = (previous or {}).get("sources", [])
        carried = [s for s in before[:1] if s["role"] == HOME] if _sources_ok(before) else []
        data: dict[str, Any] = {
            "format": FORMAT,
            "profile_id": profile_id,
            "keyring_store": backend,
            "kdf": asdict(kdf or KdfParams()),
            "lockout": asdict(lockout or LockoutPolicy()),
            "failures": 0,
            "locked_until": 0.0,
            "users": {},
            "admins": [user_id],
            "sources": carried,
            "settings": previous.get("settings", {}) if previous else {},
        }
        profile = cls(directory, data)
        device_secret = _keyring.create_device_secret(profile_id)
        data_key = secrets.token_bytes(32)
        data["users"][user_id] = profile._wrap(user_id, pin, data_key, device_secret)
        profile._lock_depth = 1  # the caller holds the directory lock
        try:
            profile._save()
        finally:
            profile._lock_depth = 0
        return profile, data_key

    # -- key slots ---------------------------------------------------------------------------
    def _kek(
        self, user_id: str, pin: str, salt: bytes, device_secret: bytes, kdf: dict[str, int]
    ) -> bytes:
        stretched = hash_secret_raw(
            pin.encode("utf-8"),
            salt,
            time_cost=kdf["time_cost"],
            memory_cost=kdf["memory_kib"],
            parallelism=kdf["parallelism"],
            hash_len=32,
            type=Type.ID,
        )
        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=salt,
            info=f"kerbside/keyslot/v1/{self.profile_id}/{user_id}".encode(),
        ).derive(stretched + device_secret)

    def _wrap(
        self, user_id: str, pin: str, data_key: bytes, device_secret: bytes
    ) -> dict[str, Any]:
        salt = secrets.token_bytes(16)
        nonce = secrets.token_bytes(12)
        kdf = dict(self._data["kdf"])
        kek = self._kek(user_id, pin, salt, device_secret, kdf)
        aad = f"{self.profile_id}/{user_id}".encode()
        return {
            "salt": _b64(salt),
            "nonce": _b64(nonce),
            "kdf": kdf,
            "wrapped_key": _b64(AESGCM(kek).encrypt(nonce, data_key, aad)),
            "created": time.time(),
        }

    def _try_unwrap(self, user_id: str, pin: str, device_secret: bytes) -> bytes | None:
        slot = self._data["users"].get(user_id)
        if slot is None:
            # Spend the same effort as a real slot so timing does not reveal user names.
            self._kek(user_id, pin, secrets.token_bytes(16), device_secret, self._data["kdf"])
            return None
        kek = self._kek(user_id, pin, _unb64(slot["salt"]), device_secret, slot["kdf"])
        aad = f"{self.profile_id}/{user_id}".encode()
        try:
            return AESGCM(kek).decrypt(_unb64(slot["nonce"]), _unb64(slot["wrapped_key"]), aad)
        except InvalidTag:
            return None

    def _device_secret(self) -> bytes:
        self._refuse_if_wiped()
        recorded = _recorded_store(self._data)
        _keyring.check_same_store(recorded)
        secret = _keyring.device_secret(self.profile_id)
        if recorded is None and self._data["format"] == FORMAT:
            # Format 1 named only a chain: now we know its kind (written by the next save).
            self._data["keyring_store"] = _keyring.check_backend()
        return secret

    def _refuse_if_wiped(self) -> None:
        if self.wiped:
            raise CacheWiped(
                f"this cache was wiped ({self.wiped.get('reason', 'policy')}); enrol again and sync"
            )

    def unlock(self, user_id: str, pin: str, *, now: float | None = None) -> bytes:
        """The data key for a correct PIN. Wrong PINs count towards delays and the wipe.

        The attempt is counted (and its delay set) on disk *before* the KDF runs and cleared
        only when the PIN proves right, so killing the process mid-guess still costs a guess.
        The profile lock is held throughout: parallel guesses queue and each one counts.
        """
        with self._locked():
            self._refuse_if_wiped()
            now = time.time() if now is None else now
            policy = self.lockout
            if self.failures >= policy.max_failures:  # a guesser died before the wipe
                self._wipe_for_failures()
            wait = self.locked_until - now
            if wait > 0:
                raise LockedOut(
                    f"too many wrong PINs: try again in {int(wait + 0.999)} s",
                    failures=self.failures,
                    retry_after_s=wait,
                    attempts_left=policy.max_failures - self.failures,
                )
            secret = self._device_secret()
            failures = self.failures + 1
            delay = policy.delay_after(failures)
            self._data["failures"] = failures
            self._data["locked_until"] = now + delay if delay else 0.0
            self._save()
            data_key = self._try_unwrap(user_id, pin, secret)
            if data_key is not None:
                self._data["failures"] = 0
                self._data["locked_until"] = 0.0
                self._save()
                return data_key
            if failures >= policy.max_failures:
                self._wipe_for_failures()
            left = policy.max_failures - failures
            text = (
                f"wrong user or PIN; {left} attempt{'s' if left != 1 else ''} left before the wipe"
            )
            if delay:
                text += f"; wait {int(delay)} s"
            raise UnlockFailed(text, failures=failures, retry_after_s=delay, attempts_left=left)

    def _wipe_for_failures(self) -> None:
        log.warning("wrong PIN limit reached: wiping the cache")
        fate = self.wipe("too many wrong PINs")
        raise CacheWiped(
            f"too many wrong PINs: the cache has been wiped; {fate}; enrol again and sync"
        )

    def verify_pin(self, user_id: str, pin: str) -> bytes:
        """`unlock` under another name, for actions that ask for a PIN again (add a user...)."""
        return self.unlock(user_id, pin)

    def add_user(
        self, by_user: str, by_pin: str, new_user: str, new_pin: str, *, admin: bool = False
    ) -> bytes:
        """Enrol `new_user` (an admin's PIN proves who asked); returns the data key so the
        caller can write the audit entry."""
        check_user_id(new_user)
        with self._locked():
            check_pin(new_pin, min_length=self.min_pin_length)
            if new_user in self._data["users"]:
                raise ProfileError("that user is already enrolled on this profile")
            data_key = self.unlock(by_user, by_pin)
            self.require_admin(by_user, "add users")
            admins = self.admins
            self._data["users"][new_user] = self._wrap(
                new_user, new_pin, data_key, self._device_secret()
            )
            self._data["admins"] = sorted({*admins, new_user} if admin else set(admins))
            self._save()
            return data_key

    def change_pin(self, user_id: str, old_pin: str, new_pin: str) -> None:
        with self._locked():
            check_pin(new_pin, min_length=self.min_pin_length)
            data_key = self.unlock(user_id, old_pin)
            self._data["users"][user_id] = self._wrap(
                user_id, new_pin, data_key, self._device_secret()
            )
            self._save()

    def remove_user(self, by_user: str, by_pin: str, user_id: str) -> bytes:
        """Remove a user's key slot (admins only); returns the data key for the audit entry."""
        with self._locked():
            if user_id not in self._data["users"]:
                raise ProfileError("no such user on this profile")
            if len(self._data["users"]) == 1:
                raise ProfileError("cannot remove the last user; wipe the profile instead")
            data_key = self.unlock(by_user, by_pin)
            self.require_admin(by_user, "remove users")
            admins = [u for u in self.admins if u != user_id]
            if not admins:
                raise ProfileError("cannot remove the last admin; name another admin first")
            del self._data["users"][user_id]
            self._data["admins"] = admins
            self._save()
            return data_key

    # -- wipe --------------------------------------------------------------------------------
    @property
    def sealed_dir(self) -> Path:
        """Where this profile's unsent records are sealed to the Trust (kept by a wipe)."""
        from app.security._sealed import SEALED_DIR

        return self.directory / SEALED_DIR / self.profile_id

    def unsent_fate(self) -> str:
        """What a wipe now does to records not yet accepted by the centre, in words (counts
        only). With no Trust key they are destroyed: say so, loudly (SECURITY.md 28)."""
        from app.security._sealed import KEY_SETTING, SUFFIX

        pending = 0
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
            pending = int(status.get("outbox", {}).get("pending", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        sealed = len(list(self.sealed_dir.glob(f"*{SUFFIX}"))) if self.sealed_dir.exists() else 0
        if self.settings.get(KEY_SETTING):
            return f"{sealed} unsent record(s) are sealed for Trust IT to recover"
        if pending:
            log.warning("wipe destroys %d unsent record(s): no Trust key to seal them", pending)
            return (
                f"WARNING: {pending} unsent record(s) were destroyed (no Trust key is configured "
                "to seal them)"
            )
        return "no unsent records were lost"

    def wipe(self, reason: str) -> str:
        """Crypto-erase (key slots and device secret go first), then delete the cache files.

        Deleting files alone is not enough on flash storage; without the slots and the secret
        the ciphertext left in free blocks cannot be read. The sealed records (`sealed_dir`)
        stay: only the Trust's private key opens them. Returns what became of unsent records.
        """
        with self._locked():
            fate = self.unsent_fate()
            self._wipe_locked(reason)
            return fate

    def _wipe_locked(self, reason: str) -> None:
        sources = self.sources
        self._data["users"] = {}
        self._data["wiped"] = {"reason": reason, "at": time.time()}
        self._data["failures"] = 0
        self._data["locked_until"] = 0.0
        self._data.pop(MAC_FIELD, None)
        self._save()
        _keyring.delete_device_secret(self.profile_id)
        _keyring.delete_client_secret(self.profile_id)
        for source in sources:
            _keyring.delete_client_secret(self.profile_id, source.keyring_name)
        _keyring.delete_profile_generation(self.profile_id)
        _keyring.delete_audit_head(self.profile_id)
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                (self.directory / (CACHE_FILE + suffix)).unlink()
            except FileNotFoundError:
                pass
        try:
            self.status_path.unlink()
        except FileNotFoundError:
            pass

    # -- persistence -------------------------------------------------------------------------
    def _save(self) -> None:
        """MAC, then an atomic replace from a uniquely named temporary file; call under the lock.

        A crash leaves the old or the new file, never half of one. The keyring's generation is
        raised only after the file is in place: a crash between the two leaves the file one
        generation ahead, which is accepted, never behind.
        """
        if not self._lock_depth:
            raise RuntimeError("profile.json is written under the profile lock only")
        generation: int | None = None
        if not self.wiped:
            recorded = _keyring.profile_generation(self.profile_id) or 0
            generation = max(self.generation, recorded) + 1
            self._data["generation"] = generation
            self._data[MAC_FIELD] = profile_mac(self._data, self._device_secret())
        path = self.directory / PROFILE_FILE
        body = json.dumps(self._data, indent=1, sort_keys=True).encode()
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".profile-", suffix=".tmp")
        try:
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # Windows cannot open directories
            dir_fd = None
        if dir_fd is not None:
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        if generation is not None:
            _keyring.set_profile_generation(self.profile_id, generation)

"""A profile: one tablet's cache directory, its users' key slots, lockout and wipe.

Key slots work like LUKS: one random 256-bit data key encrypts the cache; each user holds a
copy wrapped (AES-256-GCM) by a key derived from their PIN with Argon2id *and* the device
secret from the OS keyring. Changing a PIN rewraps one slot and never re-encrypts the cache.
A copied profile directory is useless without the keyring's device secret, and a leaked device
secret still leaves a memory-hard KDF per PIN guess.

`profile.json` holds no patient data: key slots, lockout counters, server address, policy.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import CacheWiped, InvalidInput, LockedOut, ProfileError, UnlockFailed
from app.security import _keyring

log = logging.getLogger("kerbside.security")

PROFILE_FILE = "profile.json"
CACHE_FILE = "cache.db"
STATUS_FILE = "status.json"
FORMAT = 1
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


def check_pin(pin: str) -> None:
    """Refuse PINs an observer would guess first (NIST 800-63B blocklist idea, kept small)."""
    if len(pin) < 6:
        raise InvalidInput("the PIN must have at least 6 characters", field="pin")
    if len(set(pin)) == 1:
        raise InvalidInput("the PIN must not repeat one character", field="pin")
    if pin.isdigit():
        steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
        if steps in ({1}, {-1}):
            raise InvalidInput("the PIN must not be a run of digits like 123456", field="pin")


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


class Profile:
    """A profile directory. Load with `Profile.load`, make with `Profile.create`."""

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.directory = directory
        self._data = data

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
    def server(self) -> ServerSettings | None:
        raw = self._data.get("server")
        return ServerSettings(**raw) if raw else None

    @property
    def settings(self) -> dict[str, Any]:
        """Non-secret preferences and centre policy (night mode, idle lock, cache TTL)."""
        return dict(self._data.get("settings", {}))

    def update_settings(self, **values: Any) -> None:
        self._data.setdefault("settings", {}).update(values)
        self._save()

    def set_server(self, server: ServerSettings | None) -> None:
        self._data["server"] = asdict(server) if server else None
        self._save()

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (directory / PROFILE_FILE).exists()

    @classmethod
    def load(cls, directory: Path) -> Profile:
        path = directory / PROFILE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProfileError("no Kerbside profile here; enrol first (kerbside enrol)") from None
        except (OSError, ValueError) as exc:
            raise ProfileError("the profile file cannot be read") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ProfileError("the profile file is not in a format this Kerbside reads")
        return cls(directory, data)

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
        previous: dict[str, Any] | None = None
        if cls.exists(directory):
            previous = cls.load(directory)._data
            if not previous.get("wiped"):
                raise ProfileError("a profile already exists here")
        if (directory / CACHE_FILE).exists():
            raise ProfileError("a cache file already exists here; refusing to overwrite it")
        profile_id = str(uuid.uuid4())
        data: dict[str, Any] = {
            "format": FORMAT,
            "profile_id": profile_id,
            "keyring_backend": backend,
            "kdf": asdict(kdf or KdfParams()),
            "lockout": asdict(lockout or LockoutPolicy()),
            "failures": 0,
            "locked_until": 0.0,
            "users": {},
            "server": previous.get("server") if previous else None,
            "settings": previous.get("settings", {}) if previous else {},
        }
        profile = cls(directory, data)
        device_secret = _keyring.create_device_secret(profile_id)
        data_key = secrets.token_bytes(32)
        data["users"][user_id] = profile._wrap(user_id, pin, data_key, device_secret)
        profile._save()
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
        backend = _keyring.check_backend()
        if backend != self._data["keyring_backend"]:
            raise _keyring.KeyringRefused(
                "the OS keyring backend has changed since this profile was made; "
                "the cache cannot be opened"
            )
        return _keyring.device_secret(self.profile_id)

    def _refuse_if_wiped(self) -> None:
        if self.wiped:
            raise CacheWiped(
                f"this cache was wiped ({self.wiped.get('reason', 'policy')}); enrol again and sync"
            )

    def unlock(self, user_id: str, pin: str, *, now: float | None = None) -> bytes:
        """The data key for a correct PIN. Wrong PINs count towards delays and the wipe."""
        self._refuse_if_wiped()
        now = time.time() if now is None else now
        wait = self.locked_until - now
        if wait > 0:
            raise LockedOut(
                f"too many wrong PINs: try again in {int(wait + 0.999)} s",
                failures=self.failures,
                retry_after_s=wait,
                attempts_left=self.lockout.max_failures - self.failures,
            )
        secret = self._device_secret()
        data_key = self._try_unwrap(user_id, pin, secret)
        if data_key is not None:
            if self.failures or self.locked_until:
                self._data["failures"] = 0
                self._data["locked_until"] = 0.0
                self._save()
            return data_key
        return self._record_failure(now)

    def _record_failure(self, now: float) -> bytes:
        policy = self.lockout
        failures = self.failures + 1
        self._data["failures"] = failures
        if failures >= policy.max_failures:
            log.warning("wrong PIN limit reached: wiping the cache")
            self.wipe("too many wrong PINs")
            raise CacheWiped("too many wrong PINs: the cache has been wiped; enrol again and sync")
        delay = policy.delay_after(failures)
        self._data["locked_until"] = now + delay if delay else 0.0
        self._save()
        left = policy.max_failures - failures
        text = f"wrong user or PIN; {left} attempt{'s' if left != 1 else ''} left before the wipe"
        if delay:
            text += f"; wait {int(delay)} s"
        raise UnlockFailed(text, failures=failures, retry_after_s=delay, attempts_left=left)

    def verify_pin(self, user_id: str, pin: str) -> bytes:
        """`unlock` under another name, for actions that ask for a PIN again (add a user...)."""
        return self.unlock(user_id, pin)

    def add_user(self, by_user: str, by_pin: str, new_user: str, new_pin: str) -> None:
        check_user_id(new_user)
        check_pin(new_pin)
        if new_user in self._data["users"]:
            raise ProfileError("that user is already enrolled on this profile")
        data_key = self.unlock(by_user, by_pin)
        self._data["users"][new_user] = self._wrap(
            new_user, new_pin, data_key, self._device_secret()
        )
        self._save()

    def change_pin(self, user_id: str, old_pin: str, new_pin: str) -> None:
        check_pin(new_pin)
        data_key = self.unlock(user_id, old_pin)
        self._data["users"][user_id] = self._wrap(user_id, new_pin, data_key, self._device_secret())
        self._save()

    def remove_user(self, by_user: str, by_pin: str, user_id: str) -> None:
        if user_id not in self._data["users"]:
            raise ProfileError("no such user on this profile")
        if len(self._data["users"]) == 1:
            raise ProfileError("cannot remove the last user; wipe the profile instead")
        self.unlock(by_user, by_pin)
        del self._data["users"][user_id]
        self._save()

    # -- wipe --------------------------------------------------------------------------------
    def wipe(self, reason: str) -> None:
        """Crypto-erase (key slots and device secret go first), then delete the cache files.

        Deleting files alone is not enough on flash storage; without the slots and the secret
        the ciphertext left in free blocks cannot be read.
        """
        self._data["users"] = {}
        self._data["wiped"] = {"reason": reason, "at": time.time()}
        self._data["failures"] = 0
        self._data["locked_until"] = 0.0
        self._save()
        _keyring.delete_device_secret(self.profile_id)
        _keyring.delete_client_secret(self.profile_id)
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
        """Atomic replace: a crash leaves the old or the new file, never half of one."""
        path = self.directory / PROFILE_FILE
        tmp = path.with_suffix(".json.tmp")
        body = json.dumps(self._data, indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY)
        except OSError:  # Windows cannot open directories
            return
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

"""An unlocked profile: the data key in memory and the main thread's Store.

Workers (sync, import) open their own Store with `open_store()`: SQLite connections stay on the
thread that made them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from app import times
from app.errors import CacheExpired, CacheWiped, ClockBehind, KerbsideError, ProfileError
from app.security import KdfParams, LockoutPolicy, Profile, audit_head, set_audit_head
from app.services._lookups import expire_lookups
from app.store import HOME_SOURCE, SCHEMA_VERSION, PatientIndexReader, Store, utc_now
from app.times import iso_instant, parse_instant

log = logging.getLogger("kerbside.services")
T = TypeVar("T")

DEFAULT_CACHE_TTL_HOURS = 72.0
LAST_REFRESH = "last_refresh"  # meta key: when the cache last matched the centre (sync/import)
LAST_SYNC = "last_sync"
# The app's keys in each source's sync state (sync's own are `sync.*`), written by
# `app.services.syncing.run_sync`: when the source last synced, and why its last attempt failed.
SOURCE_LAST_SYNC = "kerbside.last_sync"
SOURCE_LAST_ERROR = "kerbside.last_error"
# A source's state on the sync screen, in `kerbside sync` and the status summary.
SOURCE_OK, SOURCE_FAILED, SOURCE_REVOKED, SOURCE_NEVER = "ok", "failed", "revoked", "never"
# The latest time the cache can vouch for (SECURITY.md 25): the central record's `Date` at each
# sync, and the local clock's high-water mark. Kept inside the encrypted cache, so it cannot be
# edited without the PIN; a clock that reads earlier than it counts as expired.
TRUSTED_TIME = "trusted_time"
CLOCK_TOLERANCE = timedelta(minutes=5)  # NTP steps and a server a little ahead are not attacks
HIGH_WATER_STEP = timedelta(minutes=1)  # write the mark at most this often (each write fsyncs)
CLOCK_BEHIND = (
    "this tablet's clock reads earlier than the last trusted time the cache has seen; "
    "patient data stays locked until the clock is right"
)


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """What the header and the search screen show of the cache, read in one go on a worker:
    records waiting and refused, the last completed sync, and why patient data is locked
    (None while the cache is fresh)."""

    waiting: int
    refused: int
    last_sync: datetime | None
    locked_reason: str | None


@dataclass(frozen=True)
class SourceState:
    """What this cache holds from one source and how its last sync went (no patient data):
    `state` is ok, failed (its last attempt; `error` says why in one line), revoked (it
    revoked this device: its data is erased) or never (not synced yet)."""

    name: str
    role: str
    display_name: str | None
    state: str
    last_sync: str | None  # ISO instant of its last successful sync
    error: str | None
    patients: int
    resources: dict[str, int]

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def is_home(self) -> bool:
        return self.role == "home"

    def summary(self) -> dict[str, Any]:
        """The status summary's entry (`"sources": {NAME: ...}`; `source list` reads it)."""
        return {
            "role": self.role,
            "state": self.state,
            "ok": self.state == SOURCE_OK,
            "error": self.error,
            "last_sync": self.last_sync,
            "patients": self.patients,
            "resources": self.resources,
        }


@dataclass
class Session:
    profile: Profile
    user_id: str
    store: Store
    _data_key: bytes | None = field(repr=False)
    _marker: Path | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False, compare=False)
    # What the audit check found when the cache was opened ([]: the chain holds).
    audit_broken: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._watch_audit(self.store)

    def on_worker(self, fn: Callable[[Session], T]) -> T:
        """Run a service call on this (worker) thread over its own connection to the cache.

        SQLite connections belong to the thread that opened them: the copy shares profile,
        user and key, never the main thread's Store, and owns no open-marker (only the main
        session's `close` removes it).
        """
        store = self.open_store()
        try:
            return fn(self.on_store(store))
        finally:
            store.close()

    def on_store(self, store: Store) -> Session:
        """This session over another connection (one the caller opened and will close)."""
        return dataclasses.replace(self, store=store, _marker=None)

    def open_store(self) -> Store:
        """A second connection to the same cache, for use on another thread."""
        if self._data_key is None:
            raise ProfileError("the app is locked: unlock it to use the cache")
        return self._watch_audit(Store.open(self.profile.cache_path, self._data_key))

    # -- the audit chain (SECURITY.md 27) ----------------------------------------------------
    def _watch_audit(self, store: Store) -> Store:
        profile_id = self.profile.profile_id
        store.audit_committed = lambda seq, digest: set_audit_head(profile_id, seq, digest)
        return store

    def audit_problems(self, store: Store | None = None) -> list[str]:
        """Every way the local audit chain fails ([] when it holds), checked against the
        head kept in the OS keyring. Run on unlock, before each upload and by `kerbside audit`.
        """
        return (store or self.store).audit_problems(audit_head(self.profile.profile_id))

    @property
    def closed(self) -> bool:
        """True once `close` ran (a wipe or a lock closes the session under the screens)."""
        return self._closed

    # -- locked means locked (SECURITY.md 30) ------------------------------------------------
    @property
    def is_locked(self) -> bool:
        return self._data_key is None

    def lock(self) -> None:
        """Close the cache and drop the data key; `resume` needs a key derived from a PIN again.

        While the app shows its lock screen nothing in this process can read the cache: the
        connection (and SQLCipher's copy of the key inside it) is closed and our reference to
        the key is gone. Python cannot scrub an immutable `bytes`, so the promise is "no live
        reference", not "zeroed memory"; the closed SQLCipher connection does zero its own.
        """
        if self._data_key is None:
            return
        expire_due_lookups(self)  # a shift ends in a lock: what a look-up fetched goes on time
        self.store.close()
        self._data_key = None

    def resume(self, data_key: bytes) -> None:
        """Reopen the cache with a key from `derive_key` after the user proved their PIN."""
        if self._data_key is not None:
            return
        store = Store.open(self.profile.cache_path, data_key)
        self.store = self._watch_audit(store)
        try:
            self.check_clock()
        except ClockBehind:
            store.close()
            raise
        self._data_key = data_key
        expire_due_lookups(self)

    def close(self) -> None:
        self._closed = True
        if self._data_key is not None:
            self.store.close()
        self._data_key = None
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
            self._marker = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- freshness (DESIGN.md section 6: stale caches lock themselves) -----------------------
    @property
    def cache_ttl(self) -> timedelta:
        hours = float(self.profile.settings.get("cache_ttl_hours", DEFAULT_CACHE_TTL_HOURS))
        return timedelta(hours=hours)

    def last_refresh(self) -> datetime | None:
        value = self.store.get_meta(LAST_REFRESH)
        return parse_instant(value)

    def trusted_time(self) -> datetime | None:
        return parse_instant(self.store.get_meta(TRUSTED_TIME))

    def check_clock(self, now: datetime | None = None) -> datetime:
        """The time to decide expiry by: the clock, refused if it is behind the trusted mark.

        Moves the high-water mark forward as the clock advances, before any refusal, so a
        refused look at an expired cache also fixes the mark a clock set back must pass.
        """
        now = now or times.now()
        mark = self.trusted_time()
        if mark is None or now > mark + HIGH_WATER_STEP:
            self.store.set_meta(TRUSTED_TIME, iso_instant(now, timespec="milliseconds"))
        if mark is not None and now < mark - CLOCK_TOLERANCE:
            log.warning("device clock is behind the trusted time mark")
            raise ClockBehind(CLOCK_BEHIND)
        return max(now, mark) if mark is not None else now

    def check_fresh(self, now: datetime | None = None) -> None:
        """Refuse patient data when the cache has not matched the centre within its TTL, when
        the clock is behind the trusted mark, or when its last refresh lies in the future."""
        current = self.check_clock(now)
        last = self.last_refresh()
        if last is not None and (
            current - last > self.cache_ttl or last > current + CLOCK_TOLERANCE
        ):
            raise CacheExpired(
                "this cache has not synced within its time limit; patient data stays locked "
                "until it syncs with the central record"
            )

    def status(self) -> SessionStatus:
        """The header's figures and the freshness verdict (expired, or a clock behind the
        trusted mark, both lock patient data), from one connection."""
        counts = self.outbox_counts()
        try:
            self.check_fresh()
            locked_reason = None
        except CacheExpired as exc:
            locked_reason = str(exc)
        return SessionStatus(
            waiting=counts.get("pending", 0),
            refused=counts.get("rejected", 0),
            last_sync=self.last_sync(),
            locked_reason=locked_reason,
        )

    def outbox_counts(self) -> dict[str, int]:
        """Records on this device per outbox state; empty while the cache is closed (locked,
        or closed under the screens by a wipe)."""
        return {} if self._closed or self.is_locked else self.store.outbox_counts()

    def last_sync(self) -> datetime | None:
        """When sync last completed; None when never or when the session is closed."""
        if self._closed or self.is_locked:
            return None
        return parse_instant(self.store.get_meta(LAST_SYNC))

    def patient_index(self) -> PatientIndexReader:
        """The search index of this session's cache (for `PatientSearch`)."""
        return self.store.patient_index()

    def mark_refreshed(self, *, synced: bool, server_time: datetime | None = None) -> None:
        """The cache matches the centre as of now: the central record's clock when a sync
        brought one (a tablet clock set ahead must not date the refresh in the future), else
        this clock. The server's time also resets the trusted mark: it is the trusted source,
        and a mark pushed ahead by a wrong local clock must not lock the cache for good."""
        when = server_time or times.now()
        stamp = iso_instant(when, timespec="milliseconds")
        self.store.set_meta(LAST_REFRESH, stamp)
        if synced:
            self.store.set_meta(LAST_SYNC, stamp)
        if server_time is not None:
            self.store.set_meta(TRUSTED_TIME, stamp)
        else:
            self.check_clock(when)

    def source_states(self, errors: dict[str, str] | None = None) -> list[SourceState]:
        """Every source of the profile, home first, with what the cache holds from it and how
        its last sync went (the sync screen's rows, the status summary's `sources`).
        `errors`: failures of the run that just ended that the cache does not keep (home's:
        a failed run leaves the cache as it was); None: home's as the status summary
        recorded it at the end of the last run, so the sync screen says home failed too."""
        store = self.store
        errors = self._home_error_on_record() if errors is None else errors
        states = []
        for source in self.profile.sources:
            sid = HOME_SOURCE if source.is_home else store.source_id(source.name)
            counts = store.count_by_type(source=sid) if sid is not None else {}
            last_sync = error = None
            if sid is not None:
                last_sync = store.get_sync_state(sid, SOURCE_LAST_SYNC)
                error = store.get_sync_state(sid, SOURCE_LAST_ERROR)
            if source.is_home:
                last_sync = store.get_meta(LAST_SYNC) or last_sync
            error = errors.get(source.name, error)
            if source.revoked_at:
                state = SOURCE_REVOKED
            elif error is not None:
                state = SOURCE_FAILED
            elif last_sync is None:
                state = SOURCE_NEVER
            else:
                state = SOURCE_OK
            states.append(
                SourceState(
                    source.name,
                    source.role,
                    source.display_name,
                    state,
                    last_sync,
                    error,
                    counts.get("Patient", 0),
                    counts,
                )
            )
        return states

    def _home_error_on_record(self) -> dict[str, str]:
        home = self.profile.home_source
        try:
            summary = json.loads(self.profile.status_path.read_text(encoding="utf-8"))
            error = summary["sources"][home.name]["error"] if home else None
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {home.name: error} if home and isinstance(error, str) and error else {}

    # -- the plaintext status summary --------------------------------------------------------
    def write_status(self, errors: dict[str, str] | None = None) -> dict[str, Any]:
        """Counts only, so `kerbside status` and Trust IT can see state without a PIN
        (`errors`: see `source_states`; a write between runs keeps home's last failure, a
        sync that reached home passes `{}` to clear it)."""
        counts = self.store.count_by_type()
        outbox = self.store.outbox_counts()
        summary = {
            "sources": {s.name: s.summary() for s in self.source_states(errors)},
            "schema_version": self.store.schema_version,
            "patients": counts.get("Patient", 0),
            "resources": counts,
            "last_sync": self.store.get_meta(LAST_SYNC),
            "last_refresh": self.store.get_meta(LAST_REFRESH),
            "outbox": {s: outbox.get(s, 0) for s in ("pending", "rejected", "sent")},
            "audit_not_uploaded": self.store.audit_not_uploaded(),
            "updated_at": utc_now(),
        }
        path = self.profile.status_path
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        try:
            os.write(fd, json.dumps(summary, indent=1, sort_keys=True).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return summary


def read_status(profile_dir: Path) -> dict[str, Any]:
    """What `kerbside status` shows: no PIN needed, no patient data."""
    profile = Profile.load(profile_dir)
    status: dict[str, Any] = {
        "profile_id": profile.profile_id,
        "users": profile.users,
        "wiped": profile.wiped,
        "failures": profile.failures,
        "server": profile.server.base_url if profile.server else None,
        "schema_version": None,
        "supported_schema_version": SCHEMA_VERSION,
        "patients": 0,
        "resources": {},
        "last_sync": None,
        "outbox": {"pending": 0, "rejected": 0, "sent": 0},
    }
    try:
        status.update(json.loads(profile.status_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        log.warning("status summary unreadable; showing profile facts only")
    return status


def load_profile(profile_dir: Path) -> Profile:
    """The profile without a PIN (users, lockout, wiped?), for the unlock screen."""
    return Profile.load(profile_dir)


def profile_settings(profile_dir: Path) -> dict[str, Any]:
    """The device settings (night mode, idle minutes...) readable without a PIN; empty when
    there is no readable profile yet, so a first start shows the defaults."""
    try:
        return Profile.load(profile_dir).settings
    except ProfileError:
        return {}


def save_profile_settings(profile_dir: Path, **values: Any) -> None:
    """Remember device settings in the profile (not secrets: no PIN needed)."""
    Profile.load(profile_dir).update_settings(**values)


def _open_marker(profile: Profile) -> tuple[Path, bool]:
    """Mark this process as having the cache open; report whether a dead process left one.

    A marker left behind means the last user did not close cleanly (crash, power loss), so
    the integrity checks run before the cache is trusted (SECURITY.md 6).
    """
    unclean = False
    for marker in profile.directory.glob(".open-*"):
        try:
            pid = int(marker.name.split("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            unclean = True
            marker.unlink(missing_ok=True)
    mine = profile.directory / f".open-{os.getpid()}"
    mine.touch(mode=0o600, exist_ok=True)
    return mine, unclean


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def derive_key(profile_dir: Path, user_id: str, pin: str) -> tuple[Profile, bytes]:
    """The slow half of `unlock` (Argon2, ~0.15 s), and a schema migration the cache still
    needs: the UI runs it on a worker thread and then calls `open_session` on the thread that
    will use the Store, so that opening the cache there is quick. The key is the profile's
    only after a PIN check, so nothing is opened before it."""
    profile = Profile.load(profile_dir)
    data_key = profile.unlock(user_id, pin)
    _migrate_ahead(profile, data_key)
    return profile, data_key


def _migrate_ahead(profile: Profile, data_key: bytes) -> None:
    """Bring the cache's schema up to date on this (worker) thread. A migration can take
    seconds (the cache keyed by source: 12 s at 100,000 patients on the development box),
    and a cache opened by `open_session` on the GUI thread would hold the window still that
    long. The plaintext status summary names the schema it last saw: when it is current,
    nothing is opened here."""
    if not profile.cache_path.exists():
        return
    try:
        status = json.loads(profile.status_path.read_text(encoding="utf-8"))
        if status.get("schema_version") == SCHEMA_VERSION:
            return
    except (OSError, ValueError, AttributeError):
        pass  # no summary (or an unreadable one): open the cache to find out
    Store.open(profile.cache_path, data_key).close()


def unlock(profile_dir: Path, user_id: str, pin: str) -> Session:
    profile, data_key = derive_key(profile_dir, user_id, pin)
    return open_session(profile, user_id, data_key)


def open_session(profile: Profile, user_id: str, data_key: bytes) -> Session:
    """The fast half of `unlock`: open the cache on the calling thread (connections are
    per thread) with a key from `derive_key`."""
    store = Store.open(profile.cache_path, data_key)
    marker, unclean = _open_marker(profile)
    if unclean:
        log.warning("cache was not closed cleanly; checking integrity")
        if not store.check_integrity():
            store.close()
            marker.unlink(missing_ok=True)
            raise ProfileError(
                "the cache failed its integrity check after a crash; "
                "wipe it and sync again (no acknowledged record is lost "
                "from the central record)"
            )
    session = Session(profile, user_id, store, data_key, marker)
    try:
        session.check_clock()  # every command that opens the cache refuses a clock set back
    except ClockBehind:
        session.close()
        raise
    _purge_if_due(session)
    expire_due_lookups(session)
    session.audit_broken = session.audit_problems()
    if session.audit_broken:
        log.warning("the local audit chain is broken (%d problems)", len(session.audit_broken))
    try:
        reseal_pending(session)
    except OSError as exc:  # a full disk must not stop the officer unlocking
        log.warning("sealed copies not refreshed: %s", type(exc).__name__)
    return session


def enrol(
    profile_dir: Path,
    user_id: str,
    pin: str,
    *,
    kdf: KdfParams | None = None,
    lockout: LockoutPolicy | None = None,
) -> Session:
    """A new profile, its first user and an empty cache."""
    profile, data_key = Profile.create(profile_dir, user_id, pin, kdf=kdf, lockout=lockout)
    store = Store.create(profile.cache_path, data_key)
    marker, _ = _open_marker(profile)
    session = Session(profile, user_id, store, data_key, marker)
    session.write_status()
    return session


# -- user management: admins only, each change audited (issue 12 finding 2) ----------------------
ADD_USER_ACTION = "add-user"
REMOVE_USER_ACTION = "remove-user"
CHANGE_TEAM_ACTION = "change-team"


def record_admin_action(session: Session, action: str, detail: str) -> None:
    """One admin action in the audit trail: who, which action, a detail that names users,
    teams or sources, never a patient."""
    import uuid

    session.store.audit(
        user_id=session.user_id,
        action=action,
        patient_id=None,
        source=None,
        reason=detail,
        event_id=str(uuid.uuid4()),
    )


def _audit_admin_action(
    profile: Profile, by_user: str, data_key: bytes, action: str, detail: str
) -> None:
    with open_session(profile, by_user, data_key) as session:
        record_admin_action(session, action, detail)


def add_user(
    profile_dir: Path,
    by_user: str,
    by_pin: str,
    new_user: str,
    new_pin: str,
    *,
    admin: bool = False,
) -> None:
    """Enrol another user; only an admin may, and the audit trail records who added whom."""
    profile = Profile.load(profile_dir)
    data_key = profile.add_user(by_user, by_pin, new_user, new_pin, admin=admin)
    detail = f"{new_user} (admin)" if admin else new_user
    _audit_admin_action(profile, by_user, data_key, ADD_USER_ACTION, detail)


def remove_user(profile_dir: Path, by_user: str, by_pin: str, user_id: str) -> None:
    """Remove a user's key slot; only an admin may, and it is audited."""
    profile = Profile.load(profile_dir)
    data_key = profile.remove_user(by_user, by_pin, user_id)
    _audit_admin_action(profile, by_user, data_key, REMOVE_USER_ACTION, user_id)


def audit_team_change(session: Session, team_text: str) -> None:
    """Only an admin changes the team new encounters name; the change is audited."""
    session.profile.require_admin(session.user_id, "change the team")
    record_admin_action(session, CHANGE_TEAM_ACTION, team_text)


# -- sealed records (SECURITY.md 28) ----------------------------------------------------------
def seal_records(session: Session, items: list[tuple[str, str, str | None, bytes]]) -> int:
    """Seal (client_id, kind, patient_id, payload) records to the Trust's public key, into
    files a wipe leaves behind; returns how many were sealed (0: no Trust key configured)."""
    import base64

    from app.security import SEALED_FORMAT as FORMAT
    from app.security import TRUST_KEY_SETTING as KEY_SETTING
    from app.security import seal, write_sealed

    public_key = session.profile.settings.get(KEY_SETTING)
    if not public_key:
        return 0
    for client_id, kind, patient_id, payload in items:
        record = {
            "format": FORMAT,
            "profile_id": session.profile.profile_id,
            "client_id": client_id,
            "kind": kind,
            "patient_id": patient_id,
            "payload": base64.b64encode(payload).decode(),
            "sealed_at": iso_instant(times.now()),
        }
        write_sealed(session.profile.sealed_dir, client_id, seal(public_key, record))
    return len(items)


def reseal_pending(session: Session, store: Store | None = None) -> int:
    """Seal every pending record that has no sealed file yet (a crash between the commit and
    the seal, or a key configured after the record was made); drop the files of records the
    centre has accepted. Run on unlock, after each sync and before a wipe with the key."""
    from app.security import SEALED_SUFFIX as SUFFIX
    from app.security import TRUST_KEY_SETTING as KEY_SETTING

    if not session.profile.settings.get(KEY_SETTING):
        return 0
    store = store or session.store
    unsent = store.unsent_outbox()
    directory = session.profile.sealed_dir
    have = (
        {p.name[: -len(SUFFIX)] for p in directory.glob(f"*{SUFFIX}")}
        if directory.exists()
        else set()
    )
    missing = [row for row in unsent if row[0] not in have]
    for name in have - {row[0] for row in unsent}:
        (directory / f"{name}{SUFFIX}").unlink(missing_ok=True)  # accepted or discarded
    return seal_records(session, missing)


PURGE_SETTING = "purge_after_hours"  # the centre's policy: no sync for this long erases the cache
PURGED_REASON = "not synced within the centre's purge limit"


def expire_due_lookups(
    session: Session, store: Store | None = None, *, synced: bool = False
) -> int:
    """Erase what online look-ups fetched once its time has come (`_lookups`): on unlock,
    after each sync (`synced`), on lock. A failure is logged, never stops the officer: the
    next unlock, lock or sync tries again."""
    try:
        return expire_lookups(
            store or session.store, settings=session.profile.settings, synced=synced
        )
    except KerbsideError as exc:
        log.warning("look-ups not expired: %s", type(exc).__name__)
        return 0


def _purge_if_due(session: Session, now: datetime | None = None) -> None:
    """Crypto-erase a cache that has not matched the centre for `purge_after_hours` (policy,
    under the profile's MAC), on the trusted clock; unsent records are sealed first."""
    hours = session.profile.settings.get(PURGE_SETTING)
    last = session.last_refresh()
    if not isinstance(hours, int | float) or hours <= 0 or last is None:
        return
    if session.check_clock(now) - last <= timedelta(hours=float(hours)):
        return
    log.warning("cache past the centre's purge limit: erasing it")
    reseal_pending(session)
    profile = session.profile
    session.close()
    fate = profile.wipe(PURGED_REASON)
    raise CacheWiped(f"this cache was not synced for too long and has been erased; {fate}")

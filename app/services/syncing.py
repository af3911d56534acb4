"""Run sync for an unlocked profile: the Store behind sync's port, the client from the profile's
server settings and keyring secret, revocation -> wipe, centre policy -> settings, status.

The UI calls `sync_on_worker` from a worker thread (it opens and closes its own Store: SQLite
connections stay on their thread); the CLI calls `run_sync` with the session's own Store.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import times
from app.errors import CacheWiped, ProfileError
from app.fhir import CACHED_TYPES, DEVICE_ID_SYSTEM, KERBSIDE, USER_ID_SYSTEM
from app.security import HOME, READ_ONLY, Profile, SourceSettings, client_secret
from app.services.session import (
    SOURCE_FAILED,
    SOURCE_LAST_ERROR,
    SOURCE_LAST_SYNC,
    SOURCE_NEVER,
    SOURCE_OK,
    SOURCE_REVOKED,
    Session,
    expire_due_lookups,
    reseal_pending,
)
from app.store import HOME_SOURCE, BuiltIndex, BulkPreparer, Prepared, Store
from app.times import iso_instant
from sync import (
    AuditIdentity,
    AuditRecord,
    Cancelled,
    ClientCredentials,
    DeviceRevoked,
    FhirClient,
    HeldVersion,
    HttpSession,
    OutboxItem,
    Progress,
    RetryPolicy,
    SyncEngine,
    SyncError,
    SyncOptions,
    SyncReport,
    Timeouts,
    discover_token_url,
    new_http_session,
)

log = logging.getLogger("kerbside.services")

AUDIT_EVENT_TAG_SYSTEM = f"{KERBSIDE}/Id/audit-event"
REVOKED_REASON = "device revoked"
# Resources per local commit when the app syncs behind the UI: each commit holds the GIL for a
# moment the GUI thread feels. Measured at 100k patients (bench_ui_stall): 10,000 (the engine's
# default, best for throughput) stalls the GUI up to 98 ms, 6,000 up to 85 ms for a sync ~20%
# longer, 4,000 up to 75 ms but ~50% longer. DESIGN.md section 8 allows 100 ms.
UI_WRITE_BATCH = 6_000
# The app's own keys in a source's sync state (sync's are `sync.*`): what the last attempt
# found, the source's last device policy, and how far its audit upload got (read-only only).
LAST_SYNC_KEY = SOURCE_LAST_SYNC
LAST_ERROR_KEY = SOURCE_LAST_ERROR
POLICY_KEY = "kerbside.policy"
AUDIT_MARK = "kerbside.audit_uploaded_seq"


class StoreSyncPort:
    """`sync.SyncStore` over the encrypted Store (each writing call is one transaction), scoped
    to one source: what sync pulls, counts, reconciles and keeps state about is that source's
    part of the cache, so sync itself knows nothing of sources.

    Pushes are scoped too. The home source gets the outbox (field records always go home) and
    the whole audit trail, chained, as before. A read-only source gets no records, and of the
    audit trail only the openings of its own records (`audit.source` = its sid), so each Trust
    learns who read its data; those go without the chain extension (the chain is checked by
    home, which holds all of it: a Trust holding every n-th link would see gaps that are not
    there) and are tracked by a per-source mark in its sync state, `AUDIT_MARK`, since
    `audit.uploaded_at` is home's."""

    def __init__(self, store: Store, *, source: int) -> None:
        if source not in {s.sid for s in store.sources()}:
            raise ValueError(f"source {source} is not registered in this cache")
        self.store = store
        self.source = source
        self._audit_seqs: dict[str, int] = {}  # event id -> seq of what pending_audit gave

    # -- pull ------------------------------------------------------------------------------
    def cursor(self, rtype: str) -> str | None:
        return self.store.cursor(self.source, rtype)

    def apply_page(
        self,
        rtype: str,
        resources: Sequence[dict[str, Any]],
        cursor: str | None,
        deleted_ids: Sequence[str] = (),
    ) -> int:
        return self.store.apply_page(self.source, rtype, resources, cursor, deleted_ids)

    def held_versions(self, rtype: str, ids: Sequence[str]) -> dict[str, HeldVersion]:
        held = self.store.held_versions(self.source, rtype, ids)
        return {rid: HeldVersion(v, u) for rid, (v, u) in held.items()}

    def known_ids(self, rtype: str) -> Iterator[str]:
        return self.store.resource_ids(self.source, rtype)

    def count(self, rtype: str) -> int:
        return self.store.count_by_type(rtype, source=self.source).get(rtype, 0)

    def begin_bulk_load(self) -> None:
        self.store.begin_bulk_load()

    def bulk_preparer(self) -> Callable[[], BulkPreparer]:
        return self.store.bulk_preparer(self.source)

    def put_bulk(self, prepared: Sequence[Prepared], *, into_empty: bool) -> int:
        return self.store.put_prepared(self.source, prepared, into_empty=into_empty)

    def finish_bulk_load(self, built: BuiltIndex | None = None) -> None:
        self.store.finish_bulk_load(built)

    def abandon_bulk_load(self) -> None:
        self.store.abandon_bulk_load()

    def bulk_load_pending(self) -> bool:
        return self.store.bulk_load_pending()

    def holds_search_data(self) -> bool:
        return self.store.holds_search_data()

    def get_state(self, key: str) -> str | None:
        return self.store.get_sync_state(self.source, key)

    def set_state(self, key: str, value: str | None) -> None:
        self.store.set_sync_state(self.source, key, value)

    def repoint_patient(self, old_id: str, new_id: str) -> int:
        return self.store.repoint_patient(self.source, old_id, new_id)

    # -- push ------------------------------------------------------------------------------
    @property
    def is_home(self) -> bool:
        return self.source == HOME_SOURCE

    def pending_outbox(self, limit: int) -> list[OutboxItem]:
        if not self.is_home:
            return []  # a read-only source is never written to
        return [OutboxItem(*row) for row in self.store.pending_outbox(limit)]

    def record_attempt(self, seq: int, at: str) -> None:
        self.store.record_outbox_attempt(seq, at)

    def mark_sent(
        self, seq: int, response: bytes, resources: Sequence[dict[str, Any]], at: str
    ) -> None:
        self.store.mark_outbox_sent(seq, response, resources, at)

    def mark_rejected(self, seq: int, reason: str, response: bytes | None, at: str) -> None:
        self.store.mark_outbox_rejected(seq, reason, response, at)

    # -- audit -----------------------------------------------------------------------------
    def pending_audit(self, limit: int) -> list[AuditRecord]:
        if not self.is_home:
            return self._pending_audit_here(limit)
        return [
            AuditRecord(
                e.event_id,
                e.at,
                e.user_id,
                e.action,
                e.patient_id,
                e.reason,
                seq=e.seq,
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in self.store.audit_entries(only_not_uploaded=True, limit=limit)
        ]

    def mark_audit_uploaded(self, event_ids: Sequence[str], at: str) -> None:
        if self.is_home:
            self.store.mark_audit_uploaded(event_ids, at)
            return
        seqs = [self._audit_seqs.pop(e) for e in event_ids if e in self._audit_seqs]
        if seqs:
            self._advance_audit_mark(max(seqs))

    def _audit_mark(self) -> int:
        value = self.store.get_sync_state(self.source, AUDIT_MARK)
        return int(value) if value and value.isdigit() else 0

    def _advance_audit_mark(self, seq: int) -> None:
        if seq > self._audit_mark():
            self.store.set_sync_state(self.source, AUDIT_MARK, str(seq))

    def _pending_audit_here(self, limit: int) -> list[AuditRecord]:
        """Openings of this source's records after its mark, oldest first, unchained. None
        left: the mark moves to the head read before looking, so the next run does not scan
        the entries about other sources again."""
        head = self.store.audit_head()
        entries = self.store.audit_entries(
            source=self.source, after_seq=self._audit_mark(), limit=limit
        )
        if not entries:
            self._advance_audit_mark(head)
            return []
        self._audit_seqs.update((e.event_id, e.seq) for e in entries)
        return [
            AuditRecord(e.event_id, e.at, e.user_id, e.action, e.patient_id, e.reason)
            for e in entries
        ]


def build_client(
    profile: Profile,
    http: HttpSession | None = None,
    *,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
    cancel: threading.Event | None = None,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
    source: str | None = None,
) -> FhirClient:
    """A FhirClient for one of the profile's sources (default: the home central record), its
    secret read from the OS keyring."""
    if source is None:
        settings = profile.home_source
        if settings is None:
            raise ProfileError(
                "this profile has no central record set; enrol with --server, "
                "--client-id and the client secret"
            )
    else:
        settings = profile.source(source)
    server = settings.server
    secret = client_secret(profile.profile_id, settings.keyring_name)
    if not secret:
        if settings.is_home:
            raise ProfileError(
                "the client secret for the central record is not in the OS keyring; enrol again"
            )
        raise ProfileError(
            f"the client secret for source {settings.name} is not in the OS keyring; "
            "remove the source and add it again"
        )
    http = http or new_http_session()
    token_url = server.token_url or discover_token_url(
        http, server.base_url, ca_bundle=server.ca_bundle, timeouts=timeouts
    )
    return FhirClient(
        server.base_url,
        http,
        auth=ClientCredentials(token_url, server.client_id, secret),
        ca_bundle=server.ca_bundle,
        timeouts=timeouts,
        retry=retry,
        cancel=cancel,
        sleep=sleep,
        rng=rng,
    )


def sync_options(profile: Profile, **overrides: Any) -> SyncOptions:
    """Kerbside's options: the cached types in pull order, and who the audit trail names."""
    identity = AuditIdentity(
        device_id=profile.profile_id,
        device_system=DEVICE_ID_SYSTEM,
        user_system=USER_ID_SYSTEM,
        event_tag_system=AUDIT_EVENT_TAG_SYSTEM,
    )
    group = profile.settings.get("cohort_group")  # from the site configuration at enrolment
    return SyncOptions(
        **{
            "types": CACHED_TYPES,
            "audit": identity,
            "bulk_group": group if isinstance(group, str) and group else None,
            **overrides,
        }
    )


# A source's state as the sync screen and `kerbside sync` show it.
OK, FAILED, REVOKED, NEVER = SOURCE_OK, SOURCE_FAILED, SOURCE_REVOKED, SOURCE_NEVER
# Device-policy settings a larger value makes stricter; for the others (hours and minutes
# before a purge, an expiry or a lock) the smaller is stricter.
STRICTER_WHEN_LARGER = frozenset({"min_pin_length"})
# SyncReport counters a run over several sources adds up.
_SUMMED = (
    "pulled",
    "pushed",
    "rejected",
    "deleted",
    "audit_uploaded",
    "merged",
    "pages",
    "received",
    "rescans",
    "requests",
    "retries",
    "bytes_received",
)
MAX_ERROR_TEXT = 200


@dataclass
class SourceResult:
    """One source's part of a sync run. `error` is one line without patient data (None when
    ok); `report` is empty when the source failed or was not asked (revoked)."""

    name: str
    role: str
    display_name: str | None
    state: str  # OK, FAILED or REVOKED
    report: SyncReport = field(default_factory=SyncReport)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == OK

    @property
    def label(self) -> str:
        return self.display_name or self.name


@dataclass
class MultiSyncReport(SyncReport):
    """A run over every source of the profile. Its own `SyncReport` fields are the totals
    (counts added up, `push_blocked`, `server` and `rejections` from home, which alone is
    written to; `policy` the strictest of the sources', as applied), so every caller of a
    single-source report reads it unchanged; `sources` holds each source's part, home first.
    """

    sources: dict[str, SourceResult] = field(default_factory=dict)
    # Home's failure, when the caller asked for a report rather than the exception
    # (`run_sync(..., raise_home_failure=False)`): the run failed all the same.
    home_failure: SyncError | ProfileError | None = None

    @property
    def totals(self) -> SyncReport:
        return self

    @property
    def failed_sources(self) -> list[SourceResult]:
        return [r for r in self.sources.values() if not r.ok]


def combine_policies(policies: Iterable[dict[str, float]]) -> dict[str, float]:
    """The strictest of several sources' device policies: the shortest purge, cache lifetime
    and idle lock, the longest minimum PIN (`STRICTER_WHEN_LARGER`)."""
    combined: dict[str, float] = {}
    for policy in policies:
        for key, value in policy.items():
            if key not in combined:
                combined[key] = value
            elif key in STRICTER_WHEN_LARGER:
                combined[key] = max(combined[key], value)
            else:
                combined[key] = min(combined[key], value)
    return combined


def one_line_error(exc: BaseException) -> str:
    """What a source's failure is shown as: the error's own text (sync's and the profile's
    errors are one safe line already), first line only, capped."""
    text = (str(exc).strip().splitlines() or [""])[0].strip() or type(exc).__name__
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def run_sync(
    session: Session,
    *,
    store: Store | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    http: HttpSession | None = None,
    options: SyncOptions | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] | None = None,
    raise_home_failure: bool = True,
) -> MultiSyncReport:
    """One sync run for this session's profile over every source, home first, on the
    calling thread (docs/design/multi-trust.md section 4).

    Home pushes (records, then its audit trail) and pulls; then each read-only source pulls
    and receives the audit entries of openings of its own records. `store` is the Store of the
    calling thread (default: the session's own, for the main thread).

    - Home failing fails the run, as before any other source existed: revocation wipes the
      profile and raises CacheWiped; any other error propagates once the read-only sources
      have been asked (one source failing does not stop the others: a neighbour refreshes
      while home is down) and the status summary is refreshed (records may have been sent
      before the failure).
      With `raise_home_failure=False` (the CLI, which prints every source's outcome) it is
      returned instead, in `home_failure`, with home's part FAILED (its counts: what it did
      before failing) and the neighbours' parts as they went.
    - A read-only source failing (any SyncError, a missing secret) is recorded in its part of
      the report and in its sync state, and the run goes on. Its revocation erases what it
      brought (the sid kept, empty) and marks it revoked in the profile; it is not asked
      again until an admin removes and adds it. Cancelling stops the whole run.
    - Each source's device policy is kept; the device applies the strictest of them.
    - Freshness (`mark_refreshed`, so `check_fresh` and the header) follows home only.
    """
    store = store if store is not None else session.store
    profile = session.profile
    here = session if store is session.store else session.on_store(store)
    options = options or sync_options(profile)
    # The chain is checked before every upload: a broken one is reported to the centre and
    # its entries stay here (SECURITY.md 27).
    options = dataclasses.replace(options, audit_chain_problems=tuple(here.audit_problems(store)))
    started = time.monotonic()
    results: dict[str, SourceResult] = {}
    run = _Run(here, store, options, progress, cancel, http, retry, sleep)
    home_failure: SyncError | ProfileError | None = None
    try:
        try:
            results.update(run.home())
        except Cancelled:
            raise
        except (SyncError, ProfileError) as exc:
            home_failure = exc  # the neighbours still sync; the run fails after them
        for source in profile.sources:
            if not source.is_home:
                results[source.name] = run.read_only(source, check_first=home_failure is not None)
        if home_failure is not None:
            raise home_failure
    except CacheWiped:
        raise
    except BaseException as exc:
        home = profile.home_source
        _write_status(here, {home.name: run.home_error} if home and run.home_error else None)
        if exc is not home_failure or raise_home_failure or home is None:
            raise
        failed = SourceResult(
            home.name, home.role, home.display_name, FAILED, run.home_partial, run.home_error
        )
        report = _totals({home.name: failed, **results}, run.policy)
        report.home_failure = home_failure
        report.seconds = round(time.monotonic() - started, 3)
        return report
    if options.pull:
        expire_due_lookups(here, store, synced=True)  # after the pulls: the cohort's rows stay
    try:
        reseal_pending(here, store)  # drops the sealed copies of records the centre accepted
    except OSError as exc:
        log.warning("sealed copies not refreshed: %s", type(exc).__name__)
    _write_status(here, {})  # home synced: any failure of its recorded earlier is over
    report = _totals(results, run.policy)
    report.seconds = round(time.monotonic() - started, 3)
    return report


@dataclass
class _Run:
    """The parts of one `run_sync`, sharing its store, options and transport settings."""

    session: Session
    store: Store
    options: SyncOptions
    progress: Progress | None
    cancel: threading.Event | None
    http: HttpSession | None
    retry: RetryPolicy | None
    sleep: Callable[[float], None] | None
    policy: dict[str, float] = field(default_factory=dict)
    home_error: str | None = None
    home_partial: SyncReport = field(default_factory=SyncReport)  # home's run up to its failure

    def client(self, source: str | None) -> FhirClient:
        return build_client(
            self.session.profile,
            self.http,
            retry=self.retry,
            cancel=self.cancel,
            sleep=self.sleep,
            source=source,
        )

    def engine(self, client: FhirClient, sid: int) -> SyncEngine:
        port = StoreSyncPort(self.store, source=sid)
        return SyncEngine(client, port, self.options, progress=self.progress, cancel=self.cancel)

    def home(self) -> dict[str, SourceResult]:
        session, store, profile = self.session, self.store, self.session.profile
        engine: SyncEngine | None = None
        try:
            client = self.client(None)
            home = profile.home_source
            assert home is not None  # build_client refused a profile without one
            engine = self.engine(client, HOME_SOURCE)
            report = engine.run()
        except DeviceRevoked:
            log.warning("this device was revoked by the central record: wiping the cache")
            reseal_pending(session, store)  # every unsent record sealed to the Trust first
            if store is not session.store:
                store.close()
            fate = profile.wipe(REVOKED_REASON)
            raise CacheWiped(
                "this device was revoked by the central record: the cache has been wiped; "
                f"{fate}; enrol again"
            ) from None
        except Cancelled:
            raise
        except (SyncError, ProfileError) as exc:
            # Not written to the cache: a failed run leaves it as it was (the officer sees the
            # failure on the spot); the status summary says it.
            self.home_error = one_line_error(exc)
            if engine is not None:
                self.home_partial = engine.report
            raise
        self.apply_policy(HOME_SOURCE, report.policy)
        if self.options.pull:
            session.mark_refreshed(synced=True, server_time=client.server_date)
        _remember(store, HOME_SOURCE, synced_at=client.server_date or times.now())
        return {home.name: SourceResult(home.name, home.role, home.display_name, OK, report)}

    def read_only(self, source: SourceSettings, *, check_first: bool = False) -> SourceResult:
        """`check_first` (home failed this run: often no network at all): one quick look
        (`probe`) before the whole sync, so a dead network costs seconds per neighbour, not
        every retry's wait."""
        store, profile = self.store, self.session.profile

        def result(state: str, error: str | None, report: SyncReport | None = None) -> SourceResult:
            return SourceResult(
                source.name, source.role, source.display_name, state, report or SyncReport(), error
            )

        if source.revoked_at:
            return result(REVOKED, revoked_text(source))
        sid = store.source_id(source.name)
        if sid is None:  # named by a site file or an older release: registered on first use
            sid = store.ensure_source(source.name, READ_ONLY)
        if self.progress is not None:
            self.progress(f"source {source.name}", 0, None)
        if check_first and not probe(profile, http=self.http, source=source.name):
            log.warning("a read-only source was not synced: it did not answer a quick check")
            error = NOT_ANSWERING
            _remember(store, sid, error=error)
            return result(FAILED, error)
        try:
            client = self.client(source.name)
            report = self.engine(client, sid).run()
        except Cancelled:
            raise
        except DeviceRevoked:
            log.warning("a read-only source revoked this device: erasing what it brought")
            store.erase_source(sid)  # registered still, empty: the sid is never reused
            revoked = profile.mark_source_revoked(source.name, iso_instant(times.now()))
            return result(REVOKED, revoked_text(revoked))
        except (SyncError, ProfileError) as exc:
            # The home source's records are in; this Trust's stay as they were (labelled
            # with their last sync), and the run goes on to the next source.
            log.warning("a read-only source was not synced: %s", type(exc).__name__)
            error = one_line_error(exc)
            _remember(store, sid, error=error)
            return result(FAILED, error)
        self.apply_policy(sid, report.policy)
        _remember(store, sid, synced_at=client.server_date or times.now())
        return result(OK, None, report)

    def apply_policy(self, sid: int, policy: dict[str, float]) -> None:
        """Keep this source's policy (when it sent one) and apply the strictest of every
        active source's last policy, so a neighbour that fails this run still counts."""
        if policy:
            self.store.set_sync_state(sid, POLICY_KEY, json.dumps(policy, sort_keys=True))
        active = {HOME_SOURCE} | {
            sid
            for s in self.session.profile.sources
            if not s.is_home and not s.revoked_at
            for sid in [self.store.source_id(s.name)]
            if sid is not None
        }
        kept = [_policy_of(self.store, s) for s in sorted(active)]
        combined = combine_policies(p for p in kept if p)
        settings = self.session.profile.settings
        changed = {k: v for k, v in combined.items() if settings.get(k) != v}
        if changed:  # profile.json is rewritten (and its generation raised) only on a change
            self.session.profile.update_settings(**changed)
        self.policy = combined


# A neighbour's outcome when home had failed and it did not answer a quick check either.
NOT_ANSWERING = "it did not answer (checked once, as the home central record had failed)"


def revoked_text(source: SourceSettings) -> str:
    return (
        f"{source.display_name or source.name} revoked this device: what it brought is "
        "erased; an admin can remove the source and add it again"
    )


def _policy_of(store: Store, sid: int) -> dict[str, float]:
    value = store.get_sync_state(sid, POLICY_KEY)
    try:
        policy = json.loads(value) if value else {}
    except ValueError:
        return {}
    if not isinstance(policy, dict):
        return {}
    return {
        k: float(v)
        for k, v in policy.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _remember(
    store: Store, sid: int, *, synced_at: datetime | None = None, error: str | None = None
) -> None:
    """A source's last outcome in its sync state (the status summary and the sync screen
    read it): a success clears the error and dates the sync; a failure keeps the date."""
    try:
        if error is None:
            if synced_at is not None:
                stamp = iso_instant(synced_at, timespec="milliseconds")
                store.set_sync_state(sid, LAST_SYNC_KEY, stamp)
            store.set_sync_state(sid, LAST_ERROR_KEY, None)
        else:
            store.set_sync_state(sid, LAST_ERROR_KEY, error)
    except Exception as exc:  # the outcome must not be masked by its bookkeeping
        log.warning("sync outcome not recorded: %s", type(exc).__name__)


def _totals(results: dict[str, SourceResult], policy: dict[str, float]) -> MultiSyncReport:
    total = MultiSyncReport(sources=results, policy=dict(policy))
    for i, part in enumerate(results.values()):
        report = part.report
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(report, name))
        for rtype, n in report.pulled_by_type.items():
            total.pulled_by_type[rtype] = total.pulled_by_type.get(rtype, 0) + n
        total.audit_chain_broken |= report.audit_chain_broken
        total.bulk_export |= report.bulk_export
        if i == 0 and part.role == HOME:
            total.reconciled += report.reconciled
            total.rejections += report.rejections
            total.warnings += report.warnings
            total.push_blocked = report.push_blocked
            total.server = report.server
            continue
        total.reconciled += [f"{part.name}:{t}" for t in report.reconciled]
        total.warnings += [f"source {part.name}: {w}" for w in report.warnings]
        if part.state == FAILED:
            total.warnings.append(f"source {part.name} not synced: {part.error}")
        elif part.state == REVOKED:
            total.warnings.append(f"source {part.name}: {part.error}")
    return total


def sync_on_worker(
    session: Session,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    http: HttpSession | None = None,
) -> SyncReport:
    """`run_sync` for a worker thread (QThread/pool): opens and closes its own Store."""
    store = session.open_store()
    options = sync_options(session.profile, write_batch=UI_WRITE_BATCH)
    try:
        return run_sync(
            session, store=store, progress=progress, cancel=cancel, http=http, options=options
        )
    finally:
        store.close()  # a second close (after a wipe closed it) is a no-op


def _write_status(session: Session, errors: dict[str, str] | None = None) -> None:
    try:
        session.write_status(errors)
    except Exception as exc:  # a status file must never mask the sync outcome
        log.warning("status summary not written: %s", type(exc).__name__)


def probe(
    profile: Profile,
    *,
    timeout_s: float = 4.0,
    http: HttpSession | None = None,
    source: str | None = None,
) -> bool:
    """Whether the central record (or the profile's source `source`) answers
    `GET [base]/metadata` right now.

    The connectivity check the UI runs off its thread when the OS cannot say (or says
    "online" behind a captive portal): unauthenticated, one attempt, short timeouts, the same
    TLS rules as sync. Any failure, including a refused certificate, is simply "not now".
    """
    server = profile.server if source is None else profile.source(source).server
    if server is None:
        return False
    own = http is None
    http = http or new_http_session()
    try:
        client = FhirClient(
            server.base_url,
            http,
            ca_bundle=server.ca_bundle,
            timeouts=Timeouts(connect_s=timeout_s, read_s=timeout_s),
            retry=RetryPolicy(attempts=1, bad_body_attempts=1),
        )
        answer = client.get(client.url("metadata"), label="capability statement")
    except SyncError as exc:
        log.debug("central record probe failed: %s", type(exc).__name__)
        return False
    finally:
        if own:
            http.close()
    body = answer.body
    return isinstance(body, dict) and body.get("resourceType") == "CapabilityStatement"

"""Run sync for an unlocked profile: the Store behind sync's port, the client from the profile's
server settings and keyring secret, revocation -> wipe, centre policy -> settings, status.

The UI calls `sync_on_worker` from a worker thread (it opens and closes its own Store: SQLite
connections stay on their thread); the CLI calls `run_sync` with the session's own Store.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from app.errors import CacheWiped, ProfileError
from app.fhir import CACHED_TYPES, DEVICE_ID_SYSTEM, KERBSIDE, USER_ID_SYSTEM
from app.security import Profile, client_secret
from app.services.session import Session, expire_due_lookups, reseal_pending
from app.store import HOME_SOURCE, BuiltIndex, BulkPreparer, Prepared, Store
from sync import (
    AuditIdentity,
    AuditRecord,
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


class StoreSyncPort:
    """`sync.SyncStore` over the encrypted Store (each writing call is one transaction), scoped
    to one source: what sync pulls, counts, reconciles and keeps state about is that source's
    part of the cache, so sync itself knows nothing of sources. Pushes (outbox, audit) go to
    the home source whatever the scope: a caller runs them against home only."""

    def __init__(self, store: Store, *, source: int) -> None:
        if source not in {s.sid for s in store.sources()}:
            raise ValueError(f"source {source} is not registered in this cache")
        self.store = store
        self.source = source

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

    def get_state(self, key: str) -> str | None:
        return self.store.get_sync_state(self.source, key)

    def set_state(self, key: str, value: str | None) -> None:
        self.store.set_sync_state(self.source, key, value)

    def repoint_patient(self, old_id: str, new_id: str) -> int:
        return self.store.repoint_patient(self.source, old_id, new_id)

    # -- push ------------------------------------------------------------------------------
    def pending_outbox(self, limit: int) -> list[OutboxItem]:
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
        self.store.mark_audit_uploaded(event_ids, at)


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
) -> SyncReport:
    """One sync run for this session's profile, on the calling thread.

    `store` is the Store of the calling thread (default: the session's own, for the main
    thread). Revocation wipes the profile and raises CacheWiped; any other SyncError propagates
    after the plaintext status summary is refreshed (records may have been sent before it).
    """
    store = store if store is not None else session.store
    profile = session.profile
    here = session if store is session.store else session.on_store(store)
    client = build_client(profile, http, retry=retry, cancel=cancel, sleep=sleep)
    options = options or sync_options(profile)
    # The chain is checked before every upload: a broken one is reported to the centre and
    # its entries stay here (SECURITY.md 27).
    options = dataclasses.replace(options, audit_chain_problems=tuple(here.audit_problems(store)))
    port = StoreSyncPort(store, source=HOME_SOURCE)
    engine = SyncEngine(client, port, options, progress=progress, cancel=cancel)
    try:
        report = engine.run()
    except DeviceRevoked:
        log.warning("this device was revoked by the central record: wiping the cache")
        reseal_pending(here, store)  # every unsent record sealed to the Trust first
        if store is not session.store:
            store.close()
        fate = profile.wipe(REVOKED_REASON)
        raise CacheWiped(
            "this device was revoked by the central record: the cache has been wiped; "
            f"{fate}; enrol again"
        ) from None
    except BaseException:
        _write_status(here)
        raise
    if report.policy:
        profile.update_settings(**report.policy)
    if options.pull:
        here.mark_refreshed(synced=True, server_time=client.server_date)
        expire_due_lookups(here, store, synced=True)  # after the pull: the cohort's rows stay
    try:
        reseal_pending(here, store)  # drops the sealed copies of records the centre accepted
    except OSError as exc:
        log.warning("sealed copies not refreshed: %s", type(exc).__name__)
    _write_status(here)
    return report


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


def _write_status(session: Session) -> None:
    try:
        session.write_status()
    except Exception as exc:  # a status file must never mask the sync outcome
        log.warning("status summary not written: %s", type(exc).__name__)


def probe(profile: Profile, *, timeout_s: float = 4.0, http: HttpSession | None = None) -> bool:
    """Whether the central record answers `GET [base]/metadata` right now.

    The connectivity check the UI runs off its thread when the OS cannot say (or says
    "online" behind a captive portal): unauthenticated, one attempt, short timeouts, the same
    TLS rules as sync. Any failure, including a refused certificate, is simply "not now".
    """
    server = profile.server
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

"""One sync run over several central records (issue 14 slice 3, docs/design/multi-trust.md
section 4), over real HTTP to one reference server per `generate --trusts` folder: home first
(records and the whole audit trail go there), then each read-only source, which receives the
openings of its own records only. A neighbour failing or revoking this device is that
neighbour's outcome, never home's; home's revocation still wipes everything."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.errors import CacheWiped, ProfileError
from app.security import Profile, client_secret
from app.services.lookup import LookupQuery, LookupReason, look_up, lookup_sources
from app.services.records import ACCESS_REASONS, open_record
from app.services.search import PatientSearch
from app.services.session import read_status
from app.services.sources import list_sources
from app.services.syncing import (
    FAILED,
    NOT_ANSWERING,
    OK,
    REVOKED,
    MultiSyncReport,
    combine_policies,
    run_sync,
)
from app.store import HOME_SOURCE
from app.synthetic import generate_trusts
from sync import Cancelled, RetryPolicy, SyncError
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT
from tests.support.clock import ManualClock
from tests.support.sync import (
    FAST_RETRY,
    cache_cohort,
    enrol_sources,
    index_contents,
    search_all,
    server_cohort,
    trust_servers,
)

PEOPLE = 200
SEED = 23


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


@pytest.fixture
def server_clock() -> ManualClock:
    """Overrides conftest's wall clock: both servers' time (their `Date`, hence each source's
    last-sync stamp) moves only when a test moves it."""
    return ManualClock()


@pytest.fixture
def servers(
    tmp_path: Path, region: Path, server_clock: ManualClock
) -> Iterator[list[ReferenceServer]]:
    with trust_servers(tmp_path, region, 2, clock=server_clock) as started:
        yield started


@pytest.fixture
def synced(session: Any, servers: list[ReferenceServer]) -> tuple[Any, int]:
    """`session` with home = trust-1 and read-only trust-2, after one run; (session, sid)."""
    (west,) = enrol_sources(session, servers[0], servers[1])
    run_sync(session)
    return session, west


def _ids(server: ReferenceServer, rtype: str = "Patient") -> list[str]:
    admin = server.session(admin=True)
    return sorted(r["id"] for r in search_all(admin, f"{server.base_url}/{rtype}"))


def _speaks_welsh(server: ReferenceServer) -> str:
    """Change one Patient at `server` (its first by id: language cy-GB); returns its id."""
    admin = server.session(admin=True)
    patient = _ids(server)[0]
    body = admin.get(f"{server.base_url}/Patient/{patient}", timeout=30).json()
    body["language"] = "cy-GB"
    assert admin.put(f"{server.base_url}/Patient/{patient}", json=body, timeout=30).ok
    return patient


def _audited_patients(server: ReferenceServer) -> list[str]:
    """The Patients the AuditEvents at `server` name (what it learnt of reads)."""
    events = search_all(server.session(admin=True), f"{server.base_url}/AuditEvent")
    return sorted(
        entity["what"]["reference"]
        for event in events
        for entity in event.get("entity", [])
        if "what" in entity
    )


def test_one_run_syncs_every_source_home_first_and_each_learns_of_reads_of_its_records(
    session: Any, servers: list[ReferenceServer]
) -> None:
    home_server, west_server = servers
    (west,) = enrol_sources(session, home_server, west_server)
    phases: list[str] = []
    report = run_sync(session, progress=lambda phase, done, total: phases.append(phase))

    assert list(report.sources) == ["home", "trust-2"]
    assert [p.state for p in report.sources.values()] == [OK, OK]
    assert all(p.report.bulk_export for p in report.sources.values())
    assert report.pulled == sum(p.report.pulled for p in report.sources.values()) > 0
    assert phases.index("source trust-2") > phases.index("push")
    store = session.store
    for sid, server in ((HOME_SOURCE, home_server), (west, west_server)):
        assert cache_cohort(store, source=sid) == server_cohort(server, server.session(admin=True))

    # The status summary (no PIN) and `source list` carry each source's figures.
    status = read_status(session.profile.directory)
    assert set(status["sources"]) == {"home", "trust-2"}
    for name, sid in (("home", HOME_SOURCE), ("trust-2", west)):
        entry = status["sources"][name]
        assert entry["ok"] is True and entry["error"] is None and entry["state"] == OK
        assert entry["last_sync"] is not None
        assert entry["patients"] == store.count_by_type("Patient", source=sid)["Patient"]
    listed = {row["name"]: row for row in list_sources(session.profile.directory)}
    assert listed["trust-2"]["patients"] == status["sources"]["trust-2"]["patients"]
    assert listed["trust-2"]["state"] == OK

    # Openings: one of a home record, two of the neighbour's (one id both Trusts use).
    home_ids, west_ids = _ids(home_server), _ids(west_server)
    collided = sorted(set(home_ids) & set(west_ids))
    assert collided
    only_west = sorted(set(west_ids) - set(home_ids))
    open_record(session, home_ids[0], ACCESS_REASONS[0])
    open_record(session, collided[0], ACCESS_REASONS[0], source=west)
    open_record(session, only_west[0], ACCESS_REASONS[0], source=west)
    # (Opening a person both Trusts know writes an entry per Trust's record.)
    pending = store.audit_entries(only_not_uploaded=True)
    of_west = sorted(f"Patient/{e.patient_id}" for e in pending if e.source == west)
    assert {f"Patient/{collided[0]}", f"Patient/{only_west[0]}"} <= set(of_west)
    report = run_sync(session)
    assert [p.state for p in report.sources.values()] == [OK, OK]
    assert report.sources["home"].report.audit_uploaded == len(pending)  # the whole trail
    assert report.sources["trust-2"].report.audit_uploaded == len(of_west)
    assert report.audit_uploaded == len(pending) + len(of_west)
    assert _audited_patients(west_server) == of_west
    # Unchained at the neighbour, so its own chain check sees no gap in a partial trail.
    assert west_server.audit_chains()["flagged"] == []
    assert home_server.audit_chains()["flagged"] == []
    # Sent once: the next run sends nothing again anywhere.
    again = run_sync(session)
    assert again.audit_uploaded == 0
    assert _audited_patients(west_server) == of_west


@pytest.mark.parametrize("bulk", [False, True], ids=["paged", "bulk"])
def test_a_neighbours_first_load_leaves_homes_search_answering(
    session: Any, servers: list[ReferenceServer], bulk: bool
) -> None:
    """Hazard H13. A first load into a cache with nothing to search goes through the
    bulk-load path (no search until its index build); a neighbour's first load goes into a
    cache whose home records are searchable and must not take them out of search: paged, it
    indexes page by page; through `$export`, it sets no bulk-load mark, clears nothing and
    indexes each batch as it writes it. The index it leaves is the one a full rebuild
    derives."""
    home_server, west_server = servers
    west_server.configure(bulk_export=bulk)
    (west,) = enrol_sources(session, home_server, west_server)
    home_name = ""
    seen: list[tuple[bool, int]] = []
    neighbour = False
    loading = "bulk " if bulk else "pull Patient"

    def progress(phase: str, done: int, total: int | None) -> None:
        nonlocal neighbour, home_name
        if phase == "source trust-2":  # home is synced and searchable
            neighbour = True
            home_name = session.store.conn.execute(
                "SELECT display_name FROM patient_index WHERE source = 1 LIMIT 1"
            ).fetchone()[0]
        if neighbour and phase.startswith(loading) and done:
            hits = PatientSearch(session.store).search(home_name).hits
            seen.append((session.store.bulk_load_pending(), len(hits)))

    report = run_sync(session, progress=progress)
    assert report.sources["home"].report.bulk_export
    assert report.sources["trust-2"].report.bulk_export is bulk
    assert seen and all(not pending and hits for pending, hits in seen)
    assert cache_cohort(session.store, source=west) == server_cohort(
        west_server, west_server.session(admin=True)
    )
    loaded = index_contents(session.store)
    with session.store.transaction() as conn:
        for indexer in session.store.indexers:
            indexer.rebuild(conn)
    assert index_contents(session.store) == loaded


def test_a_neighbour_down_is_its_own_failure_while_home_syncs(
    synced: tuple[Any, int], servers: list[ReferenceServer], server_clock: ManualClock
) -> None:
    session, west = synced
    home_server, west_server = servers
    store = session.store
    west_before = cache_cohort(store, source=west)
    west_server.stop()
    server_clock.next_second()
    patient = _speaks_welsh(home_server)

    report = run_sync(session, retry=FAST_RETRY)
    home, neighbour = report.sources["home"], report.sources["trust-2"]
    assert home.state == OK and home.report.pulled == 1
    assert neighbour.state == FAILED and neighbour.error
    assert "\n" not in neighbour.error
    assert any(w.startswith("source trust-2 not synced: ") for w in report.warnings)
    assert store.get_resource(HOME_SOURCE, "Patient", patient)["language"] == "cy-GB"
    assert cache_cohort(store, source=west) == west_before  # kept as it was, not half-erased
    status = read_status(session.profile.directory)["sources"]
    assert status["home"]["ok"] is True
    assert status["trust-2"]["ok"] is False and status["trust-2"]["state"] == FAILED
    assert status["trust-2"]["error"] == neighbour.error
    last_good = status["trust-2"]["last_sync"]
    assert last_good is not None  # its last good sync stays dated, for the stale label

    west_server.restart()
    server_clock.next_second()  # a later second than the last good sync, on the server's word
    report = run_sync(session)
    assert report.sources["trust-2"].state == OK
    status = read_status(session.profile.directory)["sources"]["trust-2"]
    assert status["error"] is None and status["last_sync"] > last_good


def test_home_down_fails_the_run_but_the_neighbour_still_refreshes(
    synced: tuple[Any, int], servers: list[ReferenceServer], server_clock: ManualClock
) -> None:
    session, west = synced
    home_server, west_server = servers
    store = session.store
    home_before = cache_cohort(store, source=HOME_SOURCE)
    last_good = read_status(session.profile.directory)["sources"]["trust-2"]["last_sync"]
    home_server.stop()
    server_clock.next_second()
    patient = _speaks_welsh(west_server)

    with pytest.raises(SyncError) as failed:
        run_sync(session, retry=FAST_RETRY)
    assert not isinstance(failed.value, Cancelled)
    # The neighbour was asked all the same: its change is in, home's records as they were.
    assert store.get_resource(west, "Patient", patient)["language"] == "cy-GB"
    assert cache_cohort(store, source=HOME_SOURCE) == home_before
    status = read_status(session.profile.directory)["sources"]
    assert status["home"]["ok"] is False and status["home"]["state"] == FAILED
    assert status["home"]["error"] and "\n" not in status["home"]["error"]
    assert status["trust-2"]["ok"] is True and status["trust-2"]["last_sync"] > last_good
    # The sync screen's rows say the same: home failed (with why), the neighbour synced.
    home_row, west_row = session.source_states()
    assert (home_row.state, home_row.error) == (FAILED, status["home"]["error"])
    assert west_row.state == OK
    session.write_status()  # a write between runs (a record saved) keeps home's failure
    assert read_status(session.profile.directory)["sources"]["home"]["state"] == FAILED

    home_server.restart()
    run_sync(session)
    assert [row.state for row in session.source_states()] == [OK, OK]
    assert read_status(session.profile.directory)["sources"]["home"]["error"] is None


def test_with_home_down_a_neighbour_down_too_costs_one_quick_check_not_its_retries(
    synced: tuple[Any, int], servers: list[ReferenceServer]
) -> None:
    """Home failing often means no network at all: each neighbour is looked at once
    (`probe`) before its whole sync, so a dead network does not cost every retry's wait
    again per Trust."""
    session, west = synced
    store = session.store
    west_before = cache_cohort(store, source=west)
    home_server, west_server = servers
    west_server.stop()
    syncing = ["home"]
    waits: list[str] = []  # whose part each retry's back-off fell in (recorded, not slept)

    def progress(phase: str, _done: int, _total: int | None) -> None:
        if phase.startswith("source "):  # each read-only source's part begins so
            syncing[0] = phase

    def run() -> MultiSyncReport:
        syncing[0] = "home"
        return run_sync(
            session,
            retry=RetryPolicy(attempts=3),
            progress=progress,
            sleep=lambda _s: waits.append(syncing[0]),
        )

    run()
    assert waits.count("source trust-2") == 2  # with home up, a neighbour down is retried

    home_server.stop()
    waits.clear()
    with pytest.raises(SyncError):
        run()
    assert "source trust-2" not in waits  # home down: the neighbour is looked at once
    status = read_status(session.profile.directory)["sources"]
    assert status["home"]["state"] == FAILED
    assert (status["trust-2"]["state"], status["trust-2"]["error"]) == (FAILED, NOT_ANSWERING)
    assert cache_cohort(store, source=west) == west_before


def test_cancelling_during_homes_sync_asks_no_neighbour(
    synced: tuple[Any, int], servers: list[ReferenceServer]
) -> None:
    session, _west = synced
    cancel = threading.Event()
    phases: list[str] = []

    def progress(phase: str, _done: int, _total: int | None) -> None:
        phases.append(phase)
        cancel.set()  # the officer pressed Cancel as soon as home began

    with pytest.raises(Cancelled):
        run_sync(session, progress=progress, cancel=cancel)
    assert phases and "source trust-2" not in phases


def test_a_deletion_at_the_neighbour_leaves_homes_patient_of_the_same_id(
    synced: tuple[Any, int], servers: list[ReferenceServer]
) -> None:
    session, west = synced
    home_server, west_server = servers
    collided = sorted(set(_ids(home_server)) & set(_ids(west_server)))[0]
    store = session.store
    home_copy = store.get_resource(HOME_SOURCE, "Patient", collided)
    assert home_copy is not None and store.get_resource(west, "Patient", collided) is not None
    admin = west_server.session(admin=True)
    resp = admin.delete(f"{west_server.base_url}/Patient/{collided}", timeout=30)
    assert resp.status_code in (200, 204), resp.text

    report = run_sync(session)
    assert report.sources["trust-2"].report.deleted >= 1
    assert report.sources["home"].report.deleted == 0
    assert store.get_resource(west, "Patient", collided) is None
    assert store.get_resource(HOME_SOURCE, "Patient", collided) == home_copy
    members = store.people([f"src:{west}:{collided}"])
    assert members == {}


REASON = LookupReason("ETREAT", "Found collapsed at the bus station")


def test_a_neighbours_revocation_erases_only_its_records_and_home_goes_on(
    synced: tuple[Any, int], servers: list[ReferenceServer]
) -> None:
    session, west = synced
    _home_server, west_server = servers
    store = session.store
    home_before = cache_cohort(store)
    assert store.count_by_type(source=west)
    west_server.revoke(TABLET_CLIENT[0])

    report = run_sync(session)
    assert report.sources["home"].state == OK
    neighbour = report.sources["trust-2"]
    assert neighbour.state == REVOKED and "revoked this device" in (neighbour.error or "")
    assert store.count_by_type(source=west) == {}
    assert cache_cohort(store) == home_before
    assert [s.sid for s in store.sources()] == [HOME_SOURCE, west]  # kept, empty
    profile = Profile.load(session.profile.directory)
    assert profile.wiped is None
    assert profile.source("trust-2").revoked_at is not None
    # Its client secret left the keyring with the revocation (the in-memory test keyring
    # stands in for the OS keychain); home's stays.
    assert client_secret(profile.profile_id, profile.source("trust-2").keyring_name) is None
    assert client_secret(profile.profile_id) is not None
    # A look-up cannot ask it any more, and says why when asked by name.
    assert [s.name for s in lookup_sources(session)] == ["home"]
    with pytest.raises(ProfileError, match="revoked this device"):
        look_up(session, "trust-2", LookupQuery(nhs_number="9434765919"), REASON)
    status = read_status(session.profile.directory)["sources"]["trust-2"]
    assert (status["state"], status["ok"], status["patients"]) == (REVOKED, False, 0)

    # Not asked again: the next run goes to home only.
    west_server.clear_requests()
    again = run_sync(session)
    assert again.sources["trust-2"].state == REVOKED
    assert west_server.requests() == []


def test_homes_revocation_still_wipes_everything(
    synced: tuple[Any, int], servers: list[ReferenceServer]
) -> None:
    session, _west = synced
    home_server, _west_server = servers
    cache = session.profile.cache_path
    home_server.revoke(TABLET_CLIENT[0])
    with pytest.raises(CacheWiped):
        run_sync(session)
    assert not cache.exists()
    assert Profile.load(session.profile.directory).wiped is not None


def test_the_device_applies_the_strictest_policy_of_its_sources(
    session: Any, servers: list[ReferenceServer]
) -> None:
    home_server, west_server = servers
    home_server.set_policy(TABLET_CLIENT[0], purge_after_hours=200, cache_ttl_hours=48)
    west_server.set_policy(TABLET_CLIENT[0], purge_after_hours=100, idle_lock_minutes=5)
    enrol_sources(session, home_server, west_server)
    report = run_sync(session)
    settings = Profile.load(session.profile.directory).settings
    expected = {"purge_after_hours": 100.0, "cache_ttl_hours": 48.0, "idle_lock_minutes": 5.0}
    assert {k: settings[k] for k in expected} == expected == report.policy
    # Unchanged policies do not rewrite profile.json (nor raise its generation).
    generation = Profile.load(session.profile.directory).generation
    run_sync(session)
    assert Profile.load(session.profile.directory).generation == generation
    # The neighbour down: its last policy still counts.
    west_server.stop()
    run_sync(session, retry=FAST_RETRY)
    assert Profile.load(session.profile.directory).settings["purge_after_hours"] == 100.0


def test_combining_policies_takes_the_strictest_value_of_each() -> None:
    combined = combine_policies(
        [
            {"purge_after_hours": 72.0, "min_pin_length": 6.0},
            {"purge_after_hours": 24.0, "min_pin_length": 8.0, "idle_lock_minutes": 3.0},
            {},
        ]
    )
    assert combined == {"purge_after_hours": 24.0, "min_pin_length": 8.0, "idle_lock_minutes": 3.0}


def test_the_status_summary_names_no_patient(
    synced: tuple[Any, int], servers: list[ReferenceServer]
) -> None:
    session, _west = synced
    raw = session.profile.status_path.read_text()
    for rid in _ids(servers[1])[:20]:
        assert rid not in raw
    assert json.loads(raw)["sources"]["trust-2"]["patients"] > 0

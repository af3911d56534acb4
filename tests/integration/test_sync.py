"""Sync against the real reference server over HTTP on 127.0.0.1, into a real SQLCipher cache.

The central record's data is changed between (and during) syncs through an admin session, as a
Trust's own systems would change it; the cache is then compared with what the server serves.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
import requests

from app.errors import CacheWiped
from app.fhir import CACHED_TYPES
from app.security import Profile
from app.services.syncing import run_sync, sync_options
from app.store import HOME_SOURCE
from sync import Cancelled, SyncError, outcome_text
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT
from tests.support.sync import (
    FAST_RETRY,
    UNIDENTIFIED,
    assert_cache_equals_server,
    cache_cohort,
    change,
    held_on_server,
    record_encounters,
    search_all,
    server_cohort,
    store_digest,
)


@pytest.fixture(autouse=True)
def paged_first_load(reference: ReferenceServer) -> None:
    """These tests pin the paged pull, first load included; a server offering `$export`
    has its first load tested in test_sync_bulk.py."""
    reference.configure(bulk_export=False)


def delete(reference: ReferenceServer, admin: requests.Session, rtype: str, rid: str) -> None:
    resp = admin.delete(f"{reference.base_url}/{rtype}/{rid}", timeout=30)
    assert resp.status_code in (200, 204), resp.text


def ids_in_order(reference: ReferenceServer, admin: requests.Session, rtype: str) -> list[str]:
    return [
        r["id"]
        for r in search_all(admin, f"{reference.base_url}/{rtype}", {"_sort": "_lastUpdated"})
    ]


def test_first_sync_caches_the_cohort_byte_for_byte_and_reports_progress(
    tablet: Any, reference: ReferenceServer
) -> None:
    calls: list[tuple[str, int, int | None]] = []
    report = run_sync(tablet, progress=lambda *call: calls.append(call))
    expected = server_cohort(reference, reference.session(admin=True))
    assert cache_cohort(tablet.store) == expected  # the very bytes the server serves
    assert len(expected["Patient"]) == 40
    assert report.pulled == sum(len(v) for v in expected.values())
    assert report.pulled_by_type == {t: len(v) for t, v in expected.items() if v}
    # Progress: (phase, done, total), a phase per cached type, counts that end at the total.
    assert calls[0] == ("connect", 0, None)
    for rtype in CACHED_TYPES:
        mine = [c for c in calls if c[0] == f"pull {rtype}"]
        assert mine[0][1] == 0
        assert mine[-1][1] == mine[-1][2] == len(expected[rtype])
        assert [c[1] for c in mine] == sorted(c[1] for c in mine)
    assert all(isinstance(d, int) and (t is None or isinstance(t, int)) for _, d, t in calls)


def test_incremental_sync_sees_updates_and_deletions_and_a_no_op_is_cheap(
    tablet: Any, reference: ReferenceServer
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    patients = ids_in_order(reference, admin, "Patient")
    flags = ids_in_order(reference, admin, "Flag")
    change(reference, admin, "Patient", patients[3])
    change(reference, admin, "Flag", flags[0])
    delete(reference, admin, "Patient", patients[5])
    delete(reference, admin, "Flag", flags[1])
    report = run_sync(tablet)
    assert report.pulled == 2 and report.deleted == 2
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", patients[5]) is None
    assert (
        tablet.store.get_resource(HOME_SOURCE, "Patient", patients[3])["meta"]["versionId"] == "2"
    )
    assert_cache_equals_server(tablet, reference)

    reference.clear_requests()
    quiet = run_sync(tablet)
    assert (quiet.pulled, quiet.deleted, quiet.pushed, quiet.reconciled) == (0, 0, 0, [])
    searches = [
        r
        for r in reference.requests()
        if r["method"] == "GET"
        and "/_history" not in r["path"]
        and r["path"].rstrip("/").split("/")[-1] in CACHED_TYPES
    ]
    # One page per type (no re-listing, no id reconciliation, no rescans).
    assert len(searches) == len(CACHED_TYPES)
    assert all("_lastUpdated=ge" in r["query"] for r in searches)
    assert quiet.requests <= 2 * len(CACHED_TYPES) + 5
    assert cache_cohort(tablet.store) == server_cohort(reference, admin)


def test_deletions_reach_the_tablet_without_type_history(
    tablet: Any, reference: ReferenceServer
) -> None:
    reference.configure(history=False)  # the CapabilityStatement then lists no history-type
    metadata = requests.get(f"{reference.base_url}/metadata", timeout=30).json()
    patient_caps = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "Patient")
    assert "history-type" not in {i["code"] for i in patient_caps["interaction"]}
    run_sync(tablet)
    admin = reference.session(admin=True)
    patients = ids_in_order(reference, admin, "Patient")
    delete(reference, admin, "Patient", patients[0])
    delete(reference, admin, "Patient", patients[-1])
    change(reference, admin, "Patient", patients[7])
    report = run_sync(tablet)
    assert report.deleted == 2 and "Patient" in report.reconciled
    assert_cache_equals_server(tablet, reference)
    assert not any("/_history" in r["path"] for r in reference.requests())


def test_a_pushed_encounter_lands_once_with_references_resolved(
    tablet: Any, reference: ReferenceServer
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    known = ids_in_order(reference, admin, "Patient")[2]
    client_ids = record_encounters(tablet, [{"id": known}, UNIDENTIFIED])
    report = run_sync(tablet)
    assert (report.pushed, report.rejected) == (2, 0)
    assert [r.state for r in tablet.store.outbox_rows()] == ["sent", "sent"]
    for client_id in client_ids:
        held = held_on_server(admin, reference.base_url, client_id)
        assert {t: len(v) for t, v in held.items()} == {
            "Encounter": 1,
            "QuestionnaireResponse": 1,
            "Provenance": 1,
            "Observation": 1,
        }
        encounter = held["Encounter"][0]
        subject = encounter["subject"]["reference"]
        assert (
            subject.startswith("Patient/")
            and admin.get(f"{reference.base_url}/{subject}", timeout=30).status_code == 200
        )
        if client_id == client_ids[0]:
            assert subject == f"Patient/{known}"
        own = f"Encounter/{encounter['id']}"
        for rtype in ("Observation", "QuestionnaireResponse"):
            assert held[rtype][0]["encounter"]["reference"] == own
            assert held[rtype][0]["subject"]["reference"] == subject
        targets = {t["reference"] for t in held["Provenance"][0]["target"]}
        assert own in targets and not any(t.startswith("urn:") for t in targets)
        for target in targets:
            assert admin.get(f"{reference.base_url}/{target}", timeout=30).status_code == 200
    # The next sync sends nothing again, and the server still holds everything once.
    again = run_sync(tablet)
    assert again.pushed == 0
    for client_id in client_ids:
        held = held_on_server(admin, reference.base_url, client_id)
        assert all(len(v) == 1 for v in held.values())
    # The encounters came back with the pull, as the server holds them.
    assert_cache_equals_server(tablet, reference)


def test_a_rejected_record_is_kept_with_the_servers_reason(
    tablet: Any, reference: ReferenceServer
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    patients = ids_in_order(reference, admin, "Patient")
    doomed, fine = record_encounters(tablet, [{"id": patients[4]}, {"id": patients[6]}])
    payload = tablet.store.outbox_row(doomed).payload
    # The central record merges the person away before the tablet syncs: the encounter's
    # subject no longer exists, which the server's business rules refuse (422).
    delete(reference, admin, "Patient", patients[4])
    report = run_sync(tablet)
    assert (report.pushed, report.rejected) == (1, 1)
    [rejection] = report.rejections
    row = tablet.store.outbox_row(doomed)
    assert row is not None and row.state == "rejected" and row.payload == payload
    assert rejection.client_id == doomed and rejection.status == 422
    served = orjson.loads(
        tablet.store.conn.execute(
            "SELECT response FROM outbox WHERE client_id = ?", (doomed,)
        ).fetchone()[0]
    )
    assert served["resourceType"] == "OperationOutcome"
    assert rejection.reason == row.reason == outcome_text(served)
    assert "Patient" in rejection.reason
    assert tablet.store.outbox_row(fine).state == "sent"
    assert all(len(v) == 0 for v in held_on_server(admin, reference.base_url, doomed).values())
    # Kept, not retried on its own, and not blocking anything.
    assert run_sync(tablet).rejected == 0
    assert tablet.store.outbox_row(doomed).state == "rejected"


def test_revoking_the_device_wipes_the_cache(
    tablet: Any, reference: ReferenceServer, profile_dir: Any
) -> None:
    run_sync(tablet)
    cache = tablet.profile.cache_path
    assert cache.exists()
    reference.revoke(TABLET_CLIENT[0])
    with pytest.raises(CacheWiped):
        run_sync(tablet)
    assert not cache.exists()
    assert Profile.load(profile_dir).wiped is not None


def test_an_expired_token_mid_sync_is_renewed(tablet: Any, reference: ReferenceServer) -> None:
    expired: list[int] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == "pull Patient" and done > 0 and not expired:
            expired.append(reference.expire_tokens())

    reference.clear_requests()
    report = run_sync(tablet, progress=progress)
    assert expired and expired[0] >= 1
    journal = reference.requests()
    assert sum(1 for r in journal if r["path"] == "/oauth/token") == 2
    assert any(r["status"] == 401 for r in journal)
    assert report.pulled_by_type["Patient"] == 40
    assert_cache_equals_server(tablet, reference)


def test_cancel_stops_after_a_whole_page_and_the_next_sync_completes(
    tablet: Any, reference: ReferenceServer
) -> None:
    cancel = threading.Event()

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == "pull Patient" and done >= 25:
            cancel.set()

    options = sync_options(tablet.profile, page_size=25)
    with pytest.raises(Cancelled):
        run_sync(tablet, progress=progress, cancel=cancel, options=options)
    counts = tablet.store.count_by_type()
    assert counts["Patient"] == 25  # exactly the one page applied before the cancel
    assert "CareTeam" not in counts
    cancel.clear()
    run_sync(tablet, options=options)
    assert_cache_equals_server(tablet, reference)


@pytest.mark.parametrize("history", [True, False], ids=["history", "no-history"])
def test_offset_paging_with_changes_between_pages_skips_nothing(
    tablet: Any, reference: ReferenceServer, history: bool
) -> None:
    """An offset-paged server re-runs the query per page: an update or deletion on an already
    read page shifts the rest back, and a naive client never sees the resource at the seam."""
    reference.configure(paging="offset", history=history)
    admin = reference.session(admin=True)
    order = ids_in_order(reference, admin, "Patient")
    served: list[str] = []
    done_once: list[bool] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == "pull Patient" and done == 10 and not done_once:
            done_once.append(True)
            change(reference, admin, "Patient", order[2])  # moves to the end
            delete(reference, admin, "Patient", order[4])

    options = sync_options(tablet.profile, page_size=10, types=("Patient",))
    report = run_sync(tablet, progress=progress, options=options)
    assert done_once
    # What a naive pager would have got: the pages as the server served them after the change.
    for offset in (0, 10, 20, 30):
        resp = admin.get(
            f"{reference.base_url}/Patient",
            timeout=30,
            params={"_sort": "_lastUpdated", "_count": "10", "_offset": str(offset)},
        )
        served += [e["resource"]["id"] for e in resp.json().get("entry", [])]
    seam = order[10]  # first resource of the second page before the change
    naive = set(order[:10]) | set(served[10:])
    assert seam not in naive  # the proof that paging by offset loses it
    assert report.rescans >= 1 or not history
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", seam) is not None
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", order[4]) is None
    assert cache_cohort(tablet.store, ("Patient",)) == server_cohort(reference, admin, ("Patient",))


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("invalid-json", {}, "not valid JSON"),
    ("wrong-type", {"resource_type": "Basic"}, "expected a Bundle, got Basic"),
    ("missing-ids", {}, "has no valid id"),
    ("huge", {"size_bytes": 17 * 1024 * 1024}, "larger than allowed"),
    ("truncate", {"fraction": 0.6}, "not valid JSON"),
    ("drop", {"after_bytes": 300}, "dropped"),
]


@pytest.mark.parametrize(("kind", "params", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_answer_ends_the_sync_and_leaves_the_cache_as_it_was(
    tablet: Any, reference: ReferenceServer, kind: str, params: dict[str, Any], message: str
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    organisations = ids_in_order(reference, admin, "Organization")
    change(reference, admin, "Organization", organisations[0])  # something to pull
    before = store_digest(tablet.store)
    reference.inject(kind, path="/fhir/Organization", method="GET", **params)
    with pytest.raises(SyncError, match=message) as caught:
        run_sync(tablet, retry=FAST_RETRY)
    assert ("search Organization" in str(caught.value)) == (kind not in ("drop", "huge"))
    assert store_digest(tablet.store) == before
    reference.clear_faults()
    run_sync(tablet, retry=FAST_RETRY)
    assert_cache_equals_server(tablet, reference)

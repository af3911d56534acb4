"""The first load through FHIR Bulk Data (`$export`) against the real reference server over
HTTP on 127.0.0.1, into real SQLCipher caches: equal to a paged load resource for resource,
gap-free with writes during the export, resumable downloads, the paged fallback, and clear
failures that leave the cache as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from app.errors import IndexIncomplete
from app.security import ServerSettings, store_client_secret
from app.services.search import PatientSearch
from app.services.session import enrol
from app.services.syncing import run_sync, sync_options
from app.store import HOME_SOURCE, row_of
from sync import SyncError
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF, TEST_LOCKOUT, TEST_PIN
from tests.support.people import patient
from tests.support.sync import (
    FAST_RETRY,
    assert_cache_equals_server,
    cache_cohort,
    change,
    index_contents,
    search_all,
    store_digest,
)


def second_tablet(tmp_path: Path, reference: ReferenceServer, name: str) -> Any:
    session = enrol(tmp_path / name, "pc102", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    session.profile.set_server(
        ServerSettings(base_url=reference.base_url, client_id=TABLET_CLIENT[0], token_url=None)
    )
    store_client_secret(session.profile.profile_id, TABLET_CLIENT[1])
    return session


def export_requests(reference: ReferenceServer) -> list[dict[str, Any]]:
    return [r for r in reference.requests() if "$export" in r["path"] or "_bulk" in r["path"]]


def names_found(session: Any, query: str) -> list[str]:
    return [h.id for h in PatientSearch(session.store).search(query, limit=50).hits]


@pytest.mark.parametrize("worker", ["process", "thread"])
def test_bulk_first_load_equals_a_paged_first_load(
    tablet: Any, reference: ReferenceServer, tmp_path: Path, worker: str
) -> None:
    reference.clear_requests()
    # Lines prepared in a worker process (what a large load does) or on the download thread.
    options = sync_options(
        tablet.profile, bulk_process=worker == "process", bulk_process_min=0, bulk_commit=100
    )
    report = run_sync(tablet, options=options)
    assert report.bulk_export
    assert any(
        r["path"].endswith("/$export") and r["status"] == 202 for r in export_requests(reference)
    )
    assert not any(
        r["path"] == "/fhir/Patient" and "_lastUpdated" not in r["query"]
        for r in reference.requests()
    )  # nothing was paged from the start
    paged = second_tablet(tmp_path, reference, "paged")
    try:
        quiet = run_sync(paged, options=sync_options(paged.profile, bulk=False))
        assert not quiet.bulk_export
        assert cache_cohort(tablet.store) == cache_cohort(paged.store)
        assert_cache_equals_server(tablet, reference)
        # The indexes built once at the end answer as the incrementally built ones do.
        assert not tablet.store.bulk_load_pending()
        some = tablet.store.conn.execute(
            "SELECT display_name FROM patient_index ORDER BY pid LIMIT 5"
        ).fetchall()
        for (name,) in some:
            assert sorted(names_found(tablet, name)) == sorted(names_found(paged, name))
            assert names_found(tablet, name)
        assert index_contents(tablet.store) == index_contents(paged.store)
    finally:
        paged.close()
    again = run_sync(tablet)
    assert again.pulled == 0 and not again.bulk_export


def test_a_write_during_the_export_is_picked_up_without_a_gap(
    tablet: Any, reference: ReferenceServer
) -> None:
    admin = reference.session(admin=True)
    patients = admin.get(f"{reference.base_url}/Patient", params={"_count": "2"}, timeout=30).json()
    target = patients["entry"][0]["resource"]["id"]
    changed: list[str] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase.startswith("bulk ") and not changed:
            change(reference, admin, "Patient", target)  # after the export's snapshot
            changed.append(target)

    report = run_sync(tablet, progress=progress)
    assert report.bulk_export and changed
    held = tablet.store.get_resource(HOME_SOURCE, "Patient", target)
    assert held is not None and held["meta"]["versionId"] == "2"
    assert_cache_equals_server(tablet, reference)
    change(reference, admin, "Patient", target)
    later = run_sync(tablet)
    assert later.pulled == 1 and not later.bulk_export
    assert_cache_equals_server(tablet, reference)


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "restart"])
def test_a_download_broken_part_way_resumes(
    tablet: Any, reference: ReferenceServer, ranges: bool
) -> None:
    reference.configure(export_ranges=ranges)
    reference.inject("drop", path="/fhir/_bulk/files/", query=None, after_bytes=3000, count=2)
    reference.clear_requests()
    report = run_sync(tablet, retry=FAST_RETRY)
    assert report.bulk_export
    files = [r for r in export_requests(reference) if "/_bulk/files/" in r["path"]]
    if ranges:
        assert any(r["status"] == 206 for r in files), files
    else:
        assert not any(r["status"] == 206 for r in files)
    assert report.retries >= 2
    assert_cache_equals_server(tablet, reference)
    assert report.pulled == sum(len(v) for v in cache_cohort(tablet.store).values())


def test_a_server_without_export_is_paged(tablet: Any, reference: ReferenceServer) -> None:
    reference.configure(bulk_export=False)
    report = run_sync(tablet)
    assert not report.bulk_export
    assert not export_requests(reference)
    assert_cache_equals_server(tablet, reference)


def test_a_paged_first_load_builds_the_indexes_once_and_a_broken_one_finishes_next_time(
    tablet: Any, reference: ReferenceServer
) -> None:
    """Without `$export`, the first load of a new cache pages through the same bulk-load path:
    no index work per page, every index built once at the end. Broken part-way (the network
    dies), search refuses rather than answer from half an index, the connection is back to
    its usual settings, and the next sync finishes the load and the build."""
    reference.configure(bulk_export=False)
    reference.inject("drop", path="/fhir/Flag", method="GET", after_bytes=200, count=100)
    pending_while_paging: list[bool] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == "pull Patient" and done:
            pending_while_paging.append(tablet.store.bulk_load_pending())

    with pytest.raises(SyncError):
        run_sync(tablet, retry=FAST_RETRY, progress=progress)
    assert pending_while_paging and all(pending_while_paging)
    assert tablet.store.bulk_load_pending()
    assert tablet.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    with pytest.raises(IndexIncomplete):
        PatientSearch(tablet.store).search("smith")
    reference.clear_faults()
    phases: list[str] = []
    report = run_sync(tablet, progress=lambda phase, done, total: phases.append(phase))
    assert not report.bulk_export and "index" in phases
    assert not tablet.store.bulk_load_pending()
    assert_cache_equals_server(tablet, reference)
    name = tablet.store.conn.execute("SELECT display_name FROM patient_index LIMIT 1").fetchone()
    assert names_found(tablet, name[0])


def test_a_group_cohort_is_exported_and_a_declined_kick_off_is_paged(
    tablet: Any, reference: ReferenceServer, tmp_path: Path
) -> None:
    admin = reference.session(admin=True)
    patients = admin.get(f"{reference.base_url}/Patient", params={"_count": "3"}, timeout=30).json()
    members = sorted(e["resource"]["id"] for e in patients["entry"])[:2]
    made = admin.post(
        f"{reference.base_url}/Group",
        timeout=30,
        headers={"Content-Type": "application/fhir+json"},
        json={
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members],
        },
    )
    assert made.status_code == 201
    # The cohort Group named in the site configuration (copied to the profile at enrolment).
    tablet.profile.update_settings(cohort_group=made.json()["id"])
    assert sync_options(tablet.profile).bulk_group == made.json()["id"]
    report = run_sync(tablet)
    assert report.bulk_export
    assert sorted(tablet.store.resource_ids(HOME_SOURCE, "Patient")) == members
    for condition in cache_cohort(tablet.store)["Condition"].values():
        assert orjson.loads(condition)["subject"]["reference"].split("/")[-1] in members
    # A Group the server does not know: the kick-off is turned down (404) and the first
    # load pages instead, with a warning.
    other = second_tablet(tmp_path, reference, "other")
    try:
        paged = run_sync(other, options=sync_options(other.profile, bulk_group="no-such-group"))
        assert not paged.bulk_export
        assert any("declined the bulk export (404)" in w for w in paged.warnings)
        assert_cache_equals_server(other, reference)
    finally:
        other.close()


@pytest.mark.parametrize("fault", ["fail", "error-file"])
def test_a_failed_export_is_reported_and_leaves_the_cache_as_it_was(
    tablet: Any, reference: ReferenceServer, fault: str
) -> None:
    before = store_digest(tablet.store)
    reference.configure(export_fault=fault)
    with pytest.raises(SyncError) as caught:
        run_sync(tablet, retry=FAST_RETRY)
    text = str(caught.value)
    if fault == "fail":
        assert "injected failure" in text  # the server's own reason
    else:
        assert "incomplete" in text and "injected error" in text
    assert "nothing was changed" in text or "status" in text
    assert store_digest(tablet.store) == before
    assert not tablet.store.bulk_load_pending()
    reference.configure(export_fault="none")
    assert run_sync(tablet).bulk_export
    assert_cache_equals_server(tablet, reference)


def test_search_refuses_while_a_bulk_load_is_unfinished(
    tablet: Any, reference: ReferenceServer
) -> None:
    """A first load killed before its index build leaves its mark: search refuses rather
    than answer from half an index, and the next sync finishes the load."""
    patients = search_all(reference.session(admin=True), f"{reference.base_url}/Patient")
    family = patients[0]["name"][0]["family"]
    store = tablet.store
    store.begin_bulk_load()  # into a new cache: the mark, no index work
    store.put_rows(HOME_SOURCE, [row_of(p) for p in patients[:5]], into_empty=True)
    store.abandon_bulk_load()  # as a load killed part-way leaves it
    search = PatientSearch(store)
    with pytest.raises(IndexIncomplete):
        search.search(family)
    run_sync(tablet)  # the next sync finishes the load
    assert not store.bulk_load_pending()
    assert search.search(family).hits
    assert_cache_equals_server(tablet, reference)


def test_a_load_beside_searchable_records_keeps_them_searchable(
    tablet: Any, reference: ReferenceServer
) -> None:
    """Hazard H13: a bulk load into a cache whose records are searchable (a neighbour Trust's
    first load, an import into a cache in use) leaves no mark and indexes each batch as it
    writes it: search answers throughout, and afterwards for the loaded people too."""
    run_sync(tablet)
    store = tablet.store
    search = PatientSearch(store)
    name = store.conn.execute("SELECT display_name FROM patient_index LIMIT 1").fetchone()[0]
    newcomer = patient("extra-1", "Zebedee-Ogunleye", nhs="9434765919")
    store.begin_bulk_load()
    assert not store.bulk_load_pending()
    assert search.search(name).hits
    store.put_rows(HOME_SOURCE, [row_of(newcomer)], into_empty=False)
    assert search.search(name).hits
    assert [h.id for h in search.search("Zebedee-Ogunleye").hits] == ["extra-1"]
    store.finish_bulk_load(None)
    assert search.search("Zebedee-Ogunleye").hits


def test_the_site_configuration_names_the_cohort_group(tmp_path: Path) -> None:
    from app.services.site import SiteConfigError, parse_site_config

    base = {"url": "https://fhir.example.nhs.uk/R4", "client_id": "kerbside-1"}
    site = parse_site_config(
        tmp_path / "site.toml", {"central_record": {**base, "cohort_group": "triage-1"}}
    )
    assert site.cohort_group == "triage-1"
    assert parse_site_config(tmp_path / "s.toml", {"central_record": base}).cohort_group is None
    with pytest.raises(SiteConfigError, match="cohort_group"):
        parse_site_config(tmp_path / "s.toml", {"central_record": {**base, "cohort_group": "a b"}})

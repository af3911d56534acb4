"""Two central records synced into one cache over real HTTP (issue 14, storage slice): each
source through its own `StoreSyncPort`, so sync itself knows nothing of sources. The first
load of each comes through FHIR Bulk Data into its own source, the ids the generator makes
collide stay two people, later syncs are incremental per source, and erasing one source
leaves exactly what the other brought."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.fhir import CACHED_TYPES
from app.security import ServerSettings, store_client_secret
from app.services.search import PatientSearch
from app.services.syncing import StoreSyncPort, run_sync, sync_options
from app.store import HOME_SOURCE
from app.synthetic import generate_trusts
from sync import ClientCredentials, FhirClient, SyncEngine, SyncReport, new_http_session
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, reference_config
from tests.support.sync import cache_cohort, change, cursor_queries, search_all, server_cohort

PEOPLE = 300
SEED = 21


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


@pytest.fixture
def servers(tmp_path: Path, region: Path) -> Iterator[tuple[ReferenceServer, ReferenceServer]]:
    started: list[ReferenceServer] = []
    try:
        for k in (1, 2):
            config = reference_config(tmp_path / f"central-{k}", region / f"trust-{k}")
            started.append(ReferenceServer(config).start())
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def _sync_read_only(session: Any, server: ReferenceServer, source: int) -> SyncReport:
    """One pull of a read-only source (the multi-source run of slice 3 will do this)."""
    client = FhirClient(
        server.base_url,
        new_http_session(),
        auth=ClientCredentials(server.token_url, TABLET_CLIENT[0], TABLET_CLIENT[1]),
    )
    options = sync_options(session.profile, push=False)
    return SyncEngine(client, StoreSyncPort(session.store, source=source), options).run()


def test_two_central_records_in_one_cache_stay_apart_and_erase_separately(
    session: Any, servers: tuple[ReferenceServer, ReferenceServer]
) -> None:
    home_server, west_server = servers
    session.profile.set_server(ServerSettings(home_server.base_url, TABLET_CLIENT[0], None, None))
    store_client_secret(session.profile.profile_id, TABLET_CLIENT[1])
    store = session.store
    assert run_sync(session).bulk_export
    west = store.ensure_source("trust-2", "read-only")
    assert _sync_read_only(session, west_server, west).bulk_export
    home_admin, west_admin = home_server.session(admin=True), west_server.session(admin=True)
    assert cache_cohort(store) == server_cohort(home_server, home_admin)
    assert cache_cohort(store, source=west) == server_cohort(west_server, west_admin)

    # The generator's collisions: one id, two people, each with their own records.
    home_ids = {p["id"] for p in search_all(home_admin, f"{home_server.base_url}/Patient")}
    west_patients = search_all(west_admin, f"{west_server.base_url}/Patient")
    collided = sorted(p["id"] for p in west_patients if p["id"] in home_ids)
    assert collided
    rid = collided[0]
    home_copy = store.get_resource(HOME_SOURCE, "Patient", rid)
    west_copy = store.get_resource(west, "Patient", rid)
    assert home_copy is not None and west_copy is not None
    assert home_copy["name"] != west_copy["name"]
    rows = [r for r in store.patient_index().patients(range(1, 2 * PEOPLE)).values() if r.id == rid]
    assert sorted(r.source for r in rows) == [HOME_SOURCE, west]

    # Later syncs are incremental, each from its own cursors: a change at the neighbour
    # reaches its copy only.
    change(west_server, west_admin, "Patient", rid)
    west_server.clear_requests()
    report = _sync_read_only(session, west_server, west)
    assert not report.bulk_export and report.pulled >= 1
    assert cursor_queries(west_server, "Patient")  # paged from the cursor, no $export
    assert store.get_resource(west, "Patient", rid)["meta"]["versionId"] == "2"
    assert store.get_resource(HOME_SOURCE, "Patient", rid) == home_copy
    home_server.clear_requests()
    assert not run_sync(session).bulk_export
    assert cursor_queries(home_server, "Patient")

    # Erasing the neighbour leaves the home source as its central record holds it.
    only_west = sorted(p["name"][0]["family"] for p in west_patients if p["id"] not in home_ids)
    store.erase_source(west)
    assert store.count_by_type(source=west) == {}
    assert store.people([f"src:{west}:{rid}"]) == {}  # its search index rows went with it
    assert cache_cohort(store) == server_cohort(home_server, home_admin)
    assert store.cursor(west, "Patient") is None
    assert {t: store.cursor(HOME_SOURCE, t) is not None for t in CACHED_TYPES} == dict.fromkeys(
        CACHED_TYPES, True
    )
    search = PatientSearch(store)
    for family in only_west[:5]:
        assert all(h.id in home_ids for h in search.search(family, limit=50).hits)
    # And it comes back whole with the next sync of that source (a fresh first load).
    assert _sync_read_only(session, west_server, west).bulk_export
    assert cache_cohort(store, source=west) == server_cohort(west_server, west_admin)

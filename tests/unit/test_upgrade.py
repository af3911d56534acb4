"""Upgrades: a profile and cache written by release 708b559 or 8e74f4c (tests/fixtures/README.md)
open with this code, migrate forward and keep their data, outbox and secrets; a profile or cache
written by a newer Kerbside is refused with a message that says to update the app."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from app.errors import ProfileError, SchemaTooNew
from app.security import HOME, Profile, SourceSettings, client_secret
from app.services.encounters import list_encounters
from app.services.records import ACCESS_REASONS, open_record
from app.services.search import PatientSearch
from app.services.session import derive_key, enrol, open_session, unlock
from app.store import HOME_SOURCE, SCHEMA_VERSION
from app.store._connection import connect
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN, MemoryKeyring
from tests.support.releases import (
    EXPECTED,
    EXPECTED_2,
    FIXTURE,
    FIXTURE_2,
    cache_contents,
    install_release,
    raw_cache_contents,
    record_view,
)


@pytest.fixture
def old_release(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> Path:
    return install_release(FIXTURE, tmp_path, memory_keyring, monkeypatch)


def test_the_fixture_is_what_the_old_release_wrote() -> None:
    saved = json.loads((FIXTURE / "profile" / "profile.json").read_text())
    assert saved["format"] == 1 and "mac" not in saved
    assert saved["keyring_backend"] == "keyring.backends.SecretService.Keyring"


def test_an_old_release_profile_and_cache_open_migrated_with_data_and_outbox(
    old_release: Path,
) -> None:
    with unlock(old_release, EXPECTED["user"], EXPECTED["pin"]) as session:
        assert session.store.schema_version == SCHEMA_VERSION
        assert [(s.sid, s.role) for s in session.store.sources()] == [(HOME_SOURCE, "home")]
        hits = PatientSearch(session.store).search(EXPECTED["family"], limit=20).hits
        assert EXPECTED["patient_id"] in [h.id for h in hits]
        waiting = [e for e in list_encounters(session) if e.state == "waiting"]
        assert [e.client_id for e in waiting] == [EXPECTED["outbox_client_id"]]
        assert waiting[0].patient_id == EXPECTED["patient_id"]
        assert session.store.outbox_counts()["pending"] == 1
    saved = json.loads((old_release / "profile.json").read_text())
    assert saved["format"] == 3 and saved["keyring_store"] == "secret-service"
    assert saved["sources"] == [] and "server" not in saved  # it had no central record
    assert "keyring_backend" not in saved and saved["mac"]
    # And again, now in the current format.
    with unlock(old_release, EXPECTED["user"], EXPECTED["pin"]) as session:
        assert session.store.outbox_counts()["pending"] == 1


def test_a_profile_from_a_newer_kerbside_says_to_update_the_app(old_release: Path) -> None:
    path = old_release / "profile.json"
    saved = json.loads(path.read_text())
    saved["format"] = 99
    path.write_text(json.dumps(saved))
    with pytest.raises(ProfileError, match=r"newer Kerbside .*update the app"):
        Profile.load(old_release)


def test_a_cache_from_a_newer_kerbside_says_to_update_the_app(old_release: Path) -> None:
    with unlock(old_release, EXPECTED["user"], EXPECTED["pin"]) as session:
        session.store.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match=r"newer Kerbside.*update Kerbside"):
        unlock(old_release, EXPECTED["user"], EXPECTED["pin"])


def test_the_second_fixture_is_a_synced_format_2_tablet_with_a_central_record() -> None:
    saved = json.loads((FIXTURE_2 / "profile" / "profile.json").read_text())
    assert saved["format"] == 2 and saved["mac"] and saved["keyring_store"] == "secret-service"
    assert saved["server"]["client_id"] == EXPECTED_2["client_id"]
    assert saved["settings"]["purge_after_hours"] > 0  # why the test's clock is set


def test_a_synced_release_8e74f4c_tablet_opens_with_cursors_outbox_and_secret(
    release_8e74f4c: Path,
) -> None:
    expected = EXPECTED_2
    with unlock(release_8e74f4c, expected["user"], expected["pin"]) as session:
        assert session.store.schema_version == SCHEMA_VERSION
        assert session.store.count_by_type()["Patient"] == expected["patients"]
        hits = PatientSearch(session.store).search(expected["family"], limit=20).hits
        assert expected["patient_id"] in [h.id for h in hits]
        assert (
            session.store.cursor(HOME_SOURCE, "Patient") is not None
        )  # the next sync is incremental
        waiting = [e for e in list_encounters(session) if e.state == "waiting"]
        assert [e.client_id for e in waiting] == [expected["outbox_client_id"]]
        profile = session.profile
        assert profile.server is not None and profile.server.client_id == expected["client_id"]
        assert client_secret(profile.profile_id) == expected["client_secret"]


def test_a_release_8e74f4c_central_record_becomes_the_home_source_and_its_secret_stays(
    release_8e74f4c: Path, memory_keyring: MemoryKeyring
) -> None:
    """Profile format 2 -> 3 (issue 14): `server` becomes `sources = [home]`; the client
    secret is found where the release put it and the keyring is not touched."""
    expected = EXPECTED_2
    before = json.loads((FIXTURE_2 / "profile" / "profile.json").read_text())["server"]
    secrets_before = {k: v for k, v in memory_keyring.secrets.items() if "client-secret" in k[1]}
    with unlock(release_8e74f4c, expected["user"], expected["pin"]) as session:
        profile = session.profile
        home = SourceSettings(
            "home", before["base_url"], expected["client_id"], role=HOME
        )  # no token URL: the release discovered it at each sync, and so will this one
        assert profile.sources == [home] and profile.source("home") == home
        assert profile.home_source == home and profile.server == home.server
        assert client_secret(profile.profile_id) == expected["client_secret"]
        assert session.store.outbox_counts()["pending"] == 1
    saved = json.loads((release_8e74f4c / "profile.json").read_text())
    assert saved["format"] == 3 and "server" not in saved and saved["mac"]
    assert saved["sources"] == [
        {**before, "name": "home", "display_name": None, "ods_code": None, "role": "home"}
    ]
    assert {
        k: v for k, v in memory_keyring.secrets.items() if "client-secret" in k[1]
    } == secrets_before
    # And again, now in format 3.
    assert Profile.load(release_8e74f4c).sources == [home]


# -- the cache keyed by source (schema 5, issue 14) ----------------------------------------------
def test_a_release_8e74f4c_cache_is_keyed_by_source_with_nothing_changed(
    release_8e74f4c: Path, tmp_path: Path
) -> None:
    """Schema 2 -> 5: every row becomes the home source's (sid 1) and reads exactly as
    before: resources, search index, cursors (now (1, type)), sync state, outbox; search and
    the record view answer as a cache written keyed by source from the start does."""
    before = raw_cache_contents(release_8e74f4c)
    assert before["cursors"] and before["state"] and before["outbox"]
    expected = EXPECTED_2
    with unlock(release_8e74f4c, expected["user"], expected["pin"]) as session:
        store = session.store
        assert store.schema_version == SCHEMA_VERSION
        assert cache_contents(store.conn, source_column=True) == before
        assert store.conn.execute("SELECT DISTINCT source FROM resource").fetchall() == [(1,)]
        assert [tuple(r) for r in store.conn.execute("SELECT source, type FROM sync_cursor")] == [
            (HOME_SOURCE, t) for t, _ in before["cursors"]
        ]
        assert store.audit_problems() == [] and session.audit_broken == []
        assert {r.patient_source for r in store.outbox_rows()} == {HOME_SOURCE}
        hits = PatientSearch(store).search(expected["family"], limit=20).hits
        assert expected["patient_id"] in [h.id for h in hits]
        migrated = record_view(open_record(session, expected["patient_id"], ACCESS_REASONS[0]))
        keys = {r.person_key for r in store.patient_index().patients(range(1, 50)).values()}
        assert keys and all(k.startswith(("nhs:", "src:1:")) for k in keys)
        resources = [orjson.loads(j) for j in before["resources"].values()]
    fresh = enrol(tmp_path / "fresh", "pc102", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    try:
        fresh.store.put_resources(HOME_SOURCE, resources)
        assert (
            record_view(open_record(fresh, expected["patient_id"], ACCESS_REASONS[0])) == migrated
        )
        assert {
            r.person_key for r in fresh.store.patient_index().patients(range(1, 50)).values()
        } == keys
    finally:
        fresh.close()


def test_after_the_migration_the_next_sync_is_incremental(
    release_8e74f4c: Path, tmp_path: Path
) -> None:
    """The cursors carried over: the next sync pages from them (no `$export`, no first load)
    and sends the encounter that was waiting."""
    from app.security import ServerSettings
    from app.services.syncing import run_sync
    from app.synthetic import generate_cohort
    from sync.reference import ReferenceConfig, ReferenceServer
    from tests.support.clock import ManualClock

    expected = EXPECTED_2
    cohort = tmp_path / "cohort"
    generate_cohort(6, 3, cohort)  # what the fixture's central record was seeded with
    opened = datetime.fromisoformat(expected["made_at"]) + timedelta(hours=1)
    clock = ManualClock(offset=opened - datetime.now(UTC))  # the server's time is the test's
    client = (expected["client_id"], expected["client_secret"])
    config = ReferenceConfig(
        data_dir=tmp_path / "central", seed_dir=cohort, clients=[client], clock=clock
    )
    with (
        ReferenceServer(config) as server,
        unlock(release_8e74f4c, expected["user"], expected["pin"]) as session,
    ):
        cursors = dict(session.store.conn.execute("SELECT type, value FROM sync_cursor"))
        session.profile.set_server(ServerSettings(server.base_url, client[0], None, None))
        server.clear_requests()
        report = run_sync(session)
        paths = [r["path"] for r in server.requests()]
        patient_queries = [
            r["query"] for r in server.requests() if r["path"].rstrip("/").endswith("/Patient")
        ]
        assert not report.bulk_export and not any("$export" in p for p in paths)
        assert patient_queries and all("_lastUpdated=" in q for q in patient_queries)
        assert cursors["Patient"].replace(":", "%3A") in patient_queries[0]
        assert report.pushed == 1 and session.store.outbox_counts() == {"sent": 1}
        assert session.store.count_by_type()["Patient"] == expected["patients"]


def test_the_migration_runs_with_the_key_derivation_off_the_window_thread(
    release_8e74f4c: Path,
) -> None:
    """The app derives the key on a worker and opens the cache on the GUI thread: the
    migration (12 s at 100,000 patients) runs in the first, so the second is quick."""
    profile, key = derive_key(release_8e74f4c, EXPECTED_2["user"], EXPECTED_2["pin"])
    conn = connect(profile.cache_path, key)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    with open_session(profile, EXPECTED_2["user"], key) as session:
        session.write_status()
    assert json.loads(profile.status_path.read_text())["schema_version"] == SCHEMA_VERSION

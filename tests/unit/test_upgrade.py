"""Upgrades: a profile and cache written by release 708b559 or 8e74f4c (tests/fixtures/README.md)
open with this code, migrate forward and keep their data, outbox and secrets; a profile or cache
written by a newer Kerbside is refused with a message that says to update the app."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import app.security._keyring as kr
from app import times
from app.errors import ProfileError, SchemaTooNew
from app.security import HOME, Profile, SourceSettings, client_secret
from app.services.encounters import list_encounters
from app.services.search import PatientSearch
from app.services.session import unlock
from app.store import HOME_SOURCE, SCHEMA_VERSION
from tests.conftest import MemoryKeyring

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = FIXTURES / "release-708b559"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
FIXTURE_2 = FIXTURES / "release-8e74f4c"  # profile format 2, cache schema 2, synced once
EXPECTED_2: dict[str, Any] = json.loads((FIXTURE_2 / "expected.json").read_text())


def _install(
    fixture: Path, tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A copy of the fixture profile, its keyring entries in the in-memory keyring, and that
    keyring taken for the Secret Service the release recorded (the real one:
    test_real_keychain.py)."""
    for service, account, value in json.loads((fixture / "keyring.json").read_text()):
        memory_keyring.secrets[(service, account)] = value
    name = kr.backend_name(memory_keyring)  # type: ignore[arg-type]
    monkeypatch.setattr(kr, "STORE_KINDS", {**kr.STORE_KINDS, name: "secret-service"})
    monkeypatch.setattr(kr, "TRUSTED_BACKENDS", frozenset(kr.STORE_KINDS))
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    profile = tmp_path / "profile"
    shutil.copytree(fixture / "profile", profile)
    return profile


@pytest.fixture
def old_release(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> Path:
    return _install(FIXTURE, tmp_path, memory_keyring, monkeypatch)


@pytest.fixture
def release_8e74f4c(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Release 8e74f4c's synced tablet, opened an hour after it was made: its centre's policy
    purges a cache not synced for a week, and this test must not start failing in a week."""
    opened = datetime.fromisoformat(EXPECTED_2["made_at"]) + timedelta(hours=1)
    monkeypatch.setattr(times, "now", lambda **_: opened)
    return _install(FIXTURE_2, tmp_path, memory_keyring, monkeypatch)


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
        assert session.store.cursor("Patient") is not None  # the next sync is incremental
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

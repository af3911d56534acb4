"""A profile's sources (issue 14, slice 1): the central records it syncs with, home first, each
with its client secret in its own keyring account. The OS keyring here is the in-memory
backend of tests/conftest.py; tests/integration/test_real_keychain.py does the same against a
real Secret Service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidInput, ProfileError, ProfileTampered
from app.security import (
    HOME,
    READ_ONLY,
    Profile,
    ServerSettings,
    SourceSettings,
    client_secret,
    store_client_secret,
)
from tests.conftest import MemoryKeyring

HOME_URL = "https://fhir.bolton.example.nhs.uk/R4"
NEIGHBOUR = SourceSettings(
    "trust-2",
    "https://fhir.salford.example.nhs.uk/R4",
    "kerbside-salford",
    "https://fhir.salford.example.nhs.uk/oauth/token",
    display_name="Salford Care Trust",
    ods_code="RXY",
    role=READ_ONLY,
)


def _client_accounts(keyring: MemoryKeyring) -> dict[str, str]:
    return {account: v for (_, account), v in keyring.secrets.items() if "client-secret" in account}


@pytest.fixture
def profile(session: Any) -> Profile:
    """The enrolled profile with a home central record and its secret (as enrol leaves it)."""
    prof: Profile = session.profile
    prof.set_server(ServerSettings(HOME_URL, "kerbside-bolton", None, None))
    store_client_secret(prof.profile_id, "home-secret")
    return prof


def test_the_central_record_is_the_home_source_named_home(profile: Profile) -> None:
    assert profile.sources == [SourceSettings("home", HOME_URL, "kerbside-bolton", role=HOME)]
    assert profile.server == ServerSettings(HOME_URL, "kerbside-bolton", None, None)
    assert profile.home_source is not None and profile.home_source.keyring_name is None


def test_a_read_only_source_is_added_after_home_with_its_own_secret(
    profile: Profile, memory_keyring: MemoryKeyring
) -> None:
    profile.add_source(NEIGHBOUR, "salford-secret")
    again = Profile.load(profile.directory)
    assert [s.name for s in again.sources] == ["home", "trust-2"]
    assert again.source("trust-2") == NEIGHBOUR
    assert again.server == ServerSettings(HOME_URL, "kerbside-bolton", None, None)
    pid = profile.profile_id
    assert client_secret(pid) == "home-secret"  # the home secret did not move
    assert client_secret(pid, "trust-2") == "salford-secret"
    assert _client_accounts(memory_keyring) == {
        f"client-secret/{pid}": "home-secret",
        f"client-secret/{pid}:source:trust-2": "salford-secret",
    }
    saved = (profile.directory / "profile.json").read_text()
    assert "salford-secret" not in saved and "home-secret" not in saved


def test_removing_a_source_forgets_its_settings_and_its_secret_only(
    profile: Profile, memory_keyring: MemoryKeyring
) -> None:
    profile.add_source(NEIGHBOUR, "salford-secret")
    assert profile.remove_source("trust-2") == NEIGHBOUR
    assert [s.name for s in Profile.load(profile.directory).sources] == ["home"]
    assert _client_accounts(memory_keyring) == {
        f"client-secret/{profile.profile_id}": "home-secret"
    }


def test_the_home_source_cannot_be_removed(profile: Profile) -> None:
    with pytest.raises(ProfileError, match="home source cannot be removed; re-enrol"):
        profile.remove_source("home")
    assert client_secret(profile.profile_id) == "home-secret"


def test_unknown_source_is_a_clear_error(profile: Profile) -> None:
    with pytest.raises(ProfileError, match="no source named trust-9 on this profile"):
        profile.source("trust-9")
    with pytest.raises(ProfileError, match="no source of that name"):
        profile.remove_source("\x1b[2Jx")  # not echoed to a terminal


@pytest.mark.parametrize(
    "source, message",
    [
        (NEIGHBOUR, "already has a source named trust-2"),
        (SourceSettings("trust-3", HOME_URL, "c", role=HOME), "already has a home source"),
        (SourceSettings("home", HOME_URL, "c", role=READ_ONLY), "kept for the home source"),
        (SourceSettings("Trust 3", HOME_URL, "c"), "a source name is 1-32 lower-case"),
        (SourceSettings("-x", HOME_URL, "c"), "a source name"),
        (SourceSettings("x" * 33, HOME_URL, "c"), "a source name"),
        (SourceSettings("trust-3", HOME_URL, "c", role="owner"), "role is home or read-only"),
    ],
)
def test_names_are_unique_and_safe_and_there_is_one_home(
    profile: Profile, memory_keyring: MemoryKeyring, source: SourceSettings, message: str
) -> None:
    profile.add_source(NEIGHBOUR, "salford-secret")
    before = _client_accounts(memory_keyring)
    with pytest.raises((InvalidInput, ProfileError), match=message):
        profile.add_source(source, "another-secret")
    assert _client_accounts(memory_keyring) == before  # a refused source leaves no secret
    assert len(Profile.load(profile.directory).sources) == 2


def test_a_home_source_can_be_added_to_a_profile_enrolled_without_one(session: Any) -> None:
    prof: Profile = session.profile
    prof.add_source(NEIGHBOUR, "salford-secret")
    home = SourceSettings("bolton", HOME_URL, "kerbside-bolton", role=HOME, ods_code="RMY")
    prof.add_source(home, "home-secret")
    assert [s.name for s in prof.sources] == ["bolton", "trust-2"]  # home first
    assert prof.server == home.server
    assert client_secret(prof.profile_id) == "home-secret"  # the home account, whatever its name


def test_set_server_keeps_the_home_sources_name_and_labels(session: Any) -> None:
    prof: Profile = session.profile
    prof.add_source(SourceSettings("bolton", HOME_URL, "a", role=HOME, ods_code="RMY"), "s")
    prof.add_source(NEIGHBOUR, "salford-secret")
    moved = ServerSettings("https://new.example.nhs.uk/R4", "b", "https://new.example/t", None)
    prof.set_server(moved)
    assert prof.sources[0] == SourceSettings(
        "bolton", moved.base_url, "b", moved.token_url, None, None, "RMY", HOME
    )
    assert prof.sources[1] == NEIGHBOUR
    prof.set_server(None)
    assert prof.sources == [NEIGHBOUR] and prof.server is None


def test_a_wipe_erases_every_sources_secret(
    profile: Profile, memory_keyring: MemoryKeyring
) -> None:
    profile.add_source(NEIGHBOUR, "salford-secret")
    profile.wipe("test")
    assert _client_accounts(memory_keyring) == {}


def test_an_edited_source_makes_the_profile_refuse_to_open(profile: Profile) -> None:
    """The MAC covers the sources like every other field (SECURITY.md 26)."""
    profile.add_source(NEIGHBOUR, "salford-secret")
    path = profile.directory / "profile.json"
    data = json.loads(path.read_text())
    data["sources"][1]["base_url"] = "https://attacker.example/fhir"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileTampered):
        Profile.load(profile.directory)


@pytest.mark.parametrize(
    "sources",
    [
        "not a list",
        [{"name": "home", "base_url": HOME_URL, "client_id": "c", "role": "owner"}],
        [{"name": "a", "base_url": 5, "client_id": "c", "role": "home"}],
        [
            {"name": "a", "base_url": HOME_URL, "client_id": "c", "role": "read-only"},
            {"name": "b", "base_url": HOME_URL, "client_id": "c", "role": "home"},
        ],
        [
            {"name": "a", "base_url": HOME_URL, "client_id": "c", "role": "read-only"},
            {"name": "a", "base_url": HOME_URL, "client_id": "c", "role": "read-only"},
        ],
        [{"name": "a", "base_url": HOME_URL, "client_id": "c", "role": "home", "x": 1}],
    ],
)
def test_a_damaged_sources_list_is_one_clear_error(
    profile_dir: Path, session: Any, sources: Any
) -> None:
    """A hand-made file (no MAC yet, as before MACs existed) with a bad list: ProfileError."""
    path = profile_dir / "profile.json"
    data = json.loads(path.read_text())
    data.pop("mac")
    data.pop("generation")
    data["sources"] = sources
    path.write_text(json.dumps(data))
    import app.security._keyring as kr

    kr.delete_profile_generation(data["profile_id"])
    with pytest.raises(ProfileError, match="damaged"):
        Profile.load(profile_dir)


def test_re_enrolling_after_a_wipe_keeps_the_home_source_only(
    profile: Profile, profile_dir: Path
) -> None:
    """As the server always was; a read-only source's secret went with the wipe."""
    from app.services.session import enrol
    from tests.conftest import TEST_KDF, TEST_PIN

    profile.add_source(NEIGHBOUR, "salford-secret")
    home = profile.home_source
    profile.wipe("test")
    with enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF) as again:
        assert again.profile.sources == [home]

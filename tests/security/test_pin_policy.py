"""PIN policy and the session lock without the GUI (issue 12 finding 8, SECURITY.md 30)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import InvalidInput, ProfileError
from app.security import Profile, check_pin
from app.services.session import Session, derive_key, enrol
from app.store import HOME_SOURCE
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN


@pytest.mark.parametrize(
    "pin",
    [
        "12345",  # too short
        "111111",  # one digit
        "123456",  # run
        "987654",  # run down
        "890123",  # run across 9 -> 0
        "135791",  # constant step 2
        "121212",  # repeated block
        "123123",  # repeated block
        "112233",  # doubled digits
        "24681a",  # not digits (the tablet pad has only digits)
        "２４６８１０",  # full-width digits are digits to str.isdigit, not to the pad
    ],
)
def test_guessable_or_untypeable_pins_are_refused(pin: str) -> None:
    with pytest.raises(InvalidInput):
        check_pin(pin)


@pytest.mark.parametrize("pin", [TEST_PIN, "975310", "135792", "40518273"])
def test_ordinary_pins_are_accepted(pin: str) -> None:
    check_pin(pin)


def test_the_centres_policy_raises_the_minimum_length(profile_dir: Path) -> None:
    with enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT) as s:
        s.profile.update_settings(min_pin_length=8)
    profile = Profile.load(profile_dir)
    with pytest.raises(InvalidInput, match="at least 8 digits"):
        profile.change_pin("pc101", TEST_PIN, "975310")
    with pytest.raises(InvalidInput, match="at least 8 digits"):
        profile.add_user("pc101", TEST_PIN, "pc202", "975310")
    profile.change_pin("pc101", TEST_PIN, "40518273")
    assert len(profile.unlock("pc101", "40518273")) == 32


def test_a_locked_session_has_no_open_cache_and_no_key(profile_dir: Path) -> None:
    session: Session = enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    try:
        session.store.put_resources(
            HOME_SOURCE, [{"resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"}}]
        )
        old = session.store
        session.lock()
        assert session.is_locked
        with pytest.raises(Exception, match="closed"):
            old.conn.execute("SELECT 1")
        with pytest.raises(ProfileError, match="locked"):
            session.open_store()
        _profile, key = derive_key(profile_dir, "pc101", TEST_PIN)
        session.resume(key)
        assert session.store.get_resource(HOME_SOURCE, "Patient", "p1") is not None
    finally:
        session.close()

"""Key slots, PINs, lockout, wipe and the keyring allow-list, on real profiles."""

from __future__ import annotations

import json
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest
from keyrings.alt.file import PlaintextKeyring

from app.errors import CacheWiped, InvalidInput, KeyringRefused, LockedOut, UnlockFailed
from app.security import KdfParams, LockoutPolicy, Profile, check_backend
from app.services.session import enrol, unlock
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN, MemoryKeyring

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "1"},
    "name": [{"family": "Quixotewell"}],
}


def _enrol(profile_dir: Path, lockout: LockoutPolicy = TEST_LOCKOUT) -> None:
    with enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF, lockout=lockout) as s:
        s.store.put_resources([PATIENT])


def test_right_pin_opens_the_cache(profile_dir: Path) -> None:
    _enrol(profile_dir)
    with unlock(profile_dir, "pc101", TEST_PIN) as s:
        assert s.store.get_resource("Patient", "p1") is not None


def test_wrong_pin_keeps_cache_locked(profile_dir: Path) -> None:
    _enrol(profile_dir)
    before = (profile_dir / "cache.db").read_bytes()
    with pytest.raises(UnlockFailed) as err:
        unlock(profile_dir, "pc101", "975310")
    assert err.value.attempts_left == 9
    assert "975310" not in str(err.value)
    assert (profile_dir / "cache.db").read_bytes() == before


def test_unknown_user_is_refused_like_a_wrong_pin(profile_dir: Path) -> None:
    _enrol(profile_dir)
    with pytest.raises(UnlockFailed, match="wrong user or PIN"):
        unlock(profile_dir, "nobody", TEST_PIN)


def test_failures_bring_growing_delays(profile_dir: Path) -> None:
    policy = LockoutPolicy(max_failures=10, free_attempts=2, base_delay_s=5, max_delay_s=300)
    _enrol(profile_dir, policy)
    profile = Profile.load(profile_dir)
    now = 1_000_000.0
    delays = []
    for _attempt in range(5):
        with pytest.raises(UnlockFailed) as err:
            profile.unlock("pc101", "975310", now=now)
        delays.append(err.value.retry_after_s)
        # While locked out even the right PIN is not tried.
        if err.value.retry_after_s:
            with pytest.raises(LockedOut):
                profile.unlock("pc101", TEST_PIN, now=now + 1)
        now += err.value.retry_after_s + 1
    assert delays == [0, 5, 10, 20, 40]
    # The right PIN after the delay works and resets the count.
    assert len(profile.unlock("pc101", TEST_PIN, now=now)) == 32
    assert Profile.load(profile_dir).failures == 0


def test_cache_is_wiped_after_the_configured_failures(
    profile_dir: Path, memory_keyring: MemoryKeyring
) -> None:
    _enrol(profile_dir, LockoutPolicy(max_failures=4, free_attempts=10, base_delay_s=0))
    for _ in range(3):
        with pytest.raises(UnlockFailed):
            unlock(profile_dir, "pc101", "975310")
    with pytest.raises(CacheWiped):
        unlock(profile_dir, "pc101", "975310")
    assert not (profile_dir / "cache.db").exists()
    assert not any("device-secret" in account for _, account in memory_keyring.secrets)
    with pytest.raises(CacheWiped):
        unlock(profile_dir, "pc101", TEST_PIN)
    # A wiped profile can be enrolled again (and then synced).
    enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF).close()


def test_a_second_users_pin_opens_the_same_cache(profile_dir: Path) -> None:
    _enrol(profile_dir)
    Profile.load(profile_dir).add_user("pc101", TEST_PIN, "rmn202", "864209")
    with unlock(profile_dir, "rmn202", "864209") as s:
        assert s.store.get_resource("Patient", "p1") is not None
    with pytest.raises(UnlockFailed):
        unlock(profile_dir, "rmn202", TEST_PIN)


def test_adding_a_user_needs_an_enrolled_users_pin(profile_dir: Path) -> None:
    _enrol(profile_dir)
    with pytest.raises(UnlockFailed):
        Profile.load(profile_dir).add_user("pc101", "975310", "rmn202", "864209")
    assert Profile.load(profile_dir).users == ["pc101"]


def test_pin_change_keeps_data_and_does_not_reencrypt(profile_dir: Path) -> None:
    _enrol(profile_dir)
    before = (profile_dir / "cache.db").read_bytes()
    Profile.load(profile_dir).change_pin("pc101", TEST_PIN, "135792")
    assert (profile_dir / "cache.db").read_bytes() == before
    with pytest.raises(UnlockFailed):
        unlock(profile_dir, "pc101", TEST_PIN)
    with unlock(profile_dir, "pc101", "135792") as s:
        assert s.store.get_resource("Patient", "p1") is not None


def test_removed_user_can_no_longer_unlock(profile_dir: Path) -> None:
    _enrol(profile_dir)
    profile = Profile.load(profile_dir)
    profile.add_user("pc101", TEST_PIN, "rmn202", "864209")
    profile.remove_user("pc101", TEST_PIN, "rmn202")
    with pytest.raises(UnlockFailed):
        unlock(profile_dir, "rmn202", "864209")


@pytest.mark.parametrize("pin", ["12345", "111111", "123456", "987654"])
def test_guessable_pins_are_refused(profile_dir: Path, pin: str) -> None:
    with pytest.raises(InvalidInput):
        enrol(profile_dir, "pc101", pin, kdf=TEST_KDF)


def test_profile_file_holds_no_key_material_in_clear(
    profile_dir: Path, memory_keyring: MemoryKeyring
) -> None:
    _enrol(profile_dir)
    text = (profile_dir / "profile.json").read_text()
    data = json.loads(text)
    assert TEST_PIN not in text
    secret = next(v for (_, a), v in memory_keyring.secrets.items() if "device-secret" in a)
    assert secret not in text
    assert set(data["users"]["pc101"]) >= {"salt", "nonce", "wrapped_key", "kdf"}
    assert (profile_dir / "profile.json").stat().st_mode & 0o077 == 0


def test_cache_cannot_be_opened_without_the_device_secret(
    profile_dir: Path, memory_keyring: MemoryKeyring
) -> None:
    _enrol(profile_dir)
    memory_keyring.secrets.clear()
    with pytest.raises(KeyringRefused):
        unlock(profile_dir, "pc101", TEST_PIN)


def test_changed_keyring_backend_is_refused(profile_dir: Path) -> None:
    _enrol(profile_dir)
    other = MemoryKeyring()

    class OtherKeyring(MemoryKeyring):
        pass

    keyring.set_keyring(OtherKeyring())
    with pytest.raises(KeyringRefused, match="changed"):
        unlock(profile_dir, "pc101", TEST_PIN)
    del other


@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring(), PlaintextKeyring()])
def test_insecure_keyring_is_refused_without_the_opt_in(
    profile_dir: Path, backend: keyring.backend.KeyringBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    keyring.set_keyring(backend)
    with pytest.raises(KeyringRefused, match="KERBSIDE_ALLOW_INSECURE_KEYRING"):
        check_backend()
    with pytest.raises(KeyringRefused):
        enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF)
    assert not (profile_dir / "cache.db").exists()


def test_insecure_keyring_with_the_opt_in_warns_loudly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.security._keyring as kr

    monkeypatch.setattr(kr, "_warned", False)
    check_backend()
    assert "KERBSIDE_ALLOW_INSECURE_KEYRING=1" in capsys.readouterr().err


def test_default_kdf_is_memory_hard() -> None:
    params = KdfParams()
    assert params.memory_kib >= 64 * 1024 and params.time_cost >= 2

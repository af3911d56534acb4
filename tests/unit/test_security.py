"""Key slots, PINs, lockout, wipe and the keyring allow-list, on real profiles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest
from keyrings.alt.file import PlaintextKeyring

from app.errors import (
    CacheWiped,
    InvalidInput,
    KeyringRefused,
    LockedOut,
    ProfileError,
    UnlockFailed,
)
from app.security import KdfParams, LockoutPolicy, MemoryKeyringBase, Profile, check_backend
from app.services.session import enrol, unlock
from app.store import HOME_SOURCE
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN, MemoryKeyring

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "1"},
    "name": [{"family": "Quixotewell"}],
}


def _enrol(profile_dir: Path, lockout: LockoutPolicy = TEST_LOCKOUT) -> None:
    with enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF, lockout=lockout) as s:
        s.store.put_resources(HOME_SOURCE, [PATIENT])


def test_right_pin_opens_the_cache(profile_dir: Path) -> None:
    _enrol(profile_dir)
    with unlock(profile_dir, "pc101", TEST_PIN) as s:
        assert s.store.get_resource(HOME_SOURCE, "Patient", "p1") is not None


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
        assert s.store.get_resource(HOME_SOURCE, "Patient", "p1") is not None
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
        assert s.store.get_resource(HOME_SOURCE, "Patient", "p1") is not None


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


def test_another_kind_of_keyring_store_is_refused(profile_dir: Path) -> None:
    _enrol(profile_dir)
    assert json.loads((profile_dir / "profile.json").read_text())["keyring_store"] == (
        "untrusted:app.security._keyring.MemoryKeyring"
    )

    class OtherKeyring(MemoryKeyringBase, keyring.backend.KeyringBackend):
        pass

    keyring.set_keyring(OtherKeyring())
    with pytest.raises(KeyringRefused, match=r"kept in the untrusted:.*MemoryKeyring store"):
        unlock(profile_dir, "pc101", TEST_PIN)


def test_profile_records_the_kind_of_store_not_the_class(
    profile_dir: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allow-listed class maps to its kind; another class of the same kind (a keyring
    upgrade moving Secret Service from one class to another) still opens the cache."""
    import app.security._keyring as kr

    name = kr.backend_name(memory_keyring)  # type: ignore[arg-type]
    monkeypatch.setattr(kr, "STORE_KINDS", {**kr.STORE_KINDS, name: "secret-service"})
    monkeypatch.setattr(kr, "TRUSTED_BACKENDS", frozenset(kr.STORE_KINDS))
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    _enrol(profile_dir)
    saved = json.loads((profile_dir / "profile.json").read_text())
    assert saved["keyring_store"] == "secret-service" and "keyring_backend" not in saved
    assert saved["format"] == 3

    class UpgradedSecretService(MemoryKeyringBase, keyring.backend.KeyringBackend):
        pass

    moved = UpgradedSecretService()
    moved.secrets.update(memory_keyring.secrets)
    monkeypatch.setattr(
        kr, "STORE_KINDS", {**kr.STORE_KINDS, kr.backend_name(moved): "secret-service"}
    )
    monkeypatch.setattr(kr, "TRUSTED_BACKENDS", frozenset(kr.STORE_KINDS))
    keyring.set_keyring(moved)
    unlock(profile_dir, "pc101", TEST_PIN).close()


def test_format_1_profile_migrates_its_keyring_class_to_a_kind(
    profile_dir: Path, memory_keyring: MemoryKeyring
) -> None:
    """Format 1 as release 708b559 wrote it: a class name, no MAC, no generation."""
    _enrol(profile_dir)
    path = profile_dir / "profile.json"
    data = json.loads(path.read_text())
    for field in ("mac", "generation"):
        data.pop(field, None)
    for key in [k for k in memory_keyring.secrets if k[1].startswith("profile-generation/")]:
        del memory_keyring.secrets[key]
    data["format"] = 1
    data["keyring_backend"] = "keyring.backends.SecretService.Keyring"
    del data["keyring_store"]
    path.write_text(json.dumps(data))
    assert Profile.load(profile_dir)._data["keyring_store"] == "secret-service"
    data["keyring_backend"] = "keyring.backends.chainer.ChainerBackend"
    path.write_text(json.dumps(data))
    assert Profile.load(profile_dir)._data["keyring_store"] is None  # learnt at next unlock
    unlock(profile_dir, "pc101", TEST_PIN).close()
    saved = json.loads(path.read_text())
    assert saved["format"] == 3
    assert saved["keyring_store"] == "untrusted:app.security._keyring.MemoryKeyring"


def test_a_newer_profile_format_says_to_update_the_app(profile_dir: Path) -> None:
    _enrol(profile_dir)
    path = profile_dir / "profile.json"
    data = json.loads(path.read_text())
    data["format"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"newer Kerbside.*update the app"):
        Profile.load(profile_dir)


def test_importing_the_app_registers_no_keyring_backend() -> None:
    """A backend class defined at import joins keyring's automatic choice (issue 9)."""
    code = (
        "import importlib, pkgutil, keyring.backend, app, sync, app.cli\n"
        "app.cli.build_parser()\n"
        "for pkg in (app, sync):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "mods = {c.__module__ for c in keyring.backend.KeyringBackend._classes}\n"
        "print(sorted(m for m in mods if not m.startswith('keyring.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", [keyring.backends.fail.Keyring(), PlaintextKeyring()])
def test_insecure_keyring_is_refused_without_the_opt_in(
    profile_dir: Path, backend: keyring.backend.KeyringBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    keyring.set_keyring(backend)
    with pytest.raises(KeyringRefused, match="cannot protect the device secret"):
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

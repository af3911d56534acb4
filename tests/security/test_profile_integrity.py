"""profile.json cannot be edited, rolled back or raced past (issue 12, findings 3 and 4).

Each attack is run on a real profile the way someone holding the tablet would: edit the JSON,
put back an older copy, kill the process mid-guess, guess from eight processes at once.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import app.security._profile as profile_module
from app.cli import main
from app.errors import ProfileTampered, UnlockFailed
from app.security import LockoutPolicy, Profile, ServerSettings
from app.services.session import enrol, unlock
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN

WRONG = "975310"


def _enrol(profile_dir: Path, lockout: LockoutPolicy = TEST_LOCKOUT) -> None:
    with enrol(profile_dir, "pc101", TEST_PIN, kdf=TEST_KDF, lockout=lockout) as s:
        s.profile.set_server(
            ServerSettings(
                base_url="https://central.example.nhs.uk/fhir",
                client_id="tablet-1",
                token_url="https://central.example.nhs.uk/token",
            )
        )
        s.profile.update_settings(cache_ttl_hours=72.0)


def _wrong_pins(profile_dir: Path, count: int) -> None:
    for _ in range(count):
        with pytest.raises(UnlockFailed):
            unlock(profile_dir, "pc101", WRONG)


def _edit(profile_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = profile_dir / "profile.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "failures reset": lambda d: d.update(failures=0, locked_until=0.0),
    "token_url moved": lambda d: d["sources"][0].update(token_url="https://attacker.example/token"),
    "server moved": lambda d: d["sources"][0].update(base_url="https://attacker.example/fhir"),
    "ca bundle swapped": lambda d: d["sources"][0].update(ca_bundle="/tmp/attacker-ca.pem"),
    "ttl raised": lambda d: d["settings"].update(cache_ttl_hours=1e9),
    "wipe threshold raised": lambda d: d["lockout"].update(max_failures=10_000),
    "mac removed": lambda d: d.pop("mac", None),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_an_edited_profile_refuses_to_open(profile_dir: Path, name: str) -> None:
    _enrol(profile_dir)
    _wrong_pins(profile_dir, 3)
    _edit(profile_dir, EDITS[name])
    with pytest.raises(ProfileTampered, match="integrity check"):
        unlock(profile_dir, "pc101", TEST_PIN)
    with pytest.raises(ProfileTampered):
        Profile.load(profile_dir)


def test_an_older_copy_of_the_profile_is_refused(profile_dir: Path) -> None:
    _enrol(profile_dir)
    old = (profile_dir / "profile.json").read_bytes()
    _wrong_pins(profile_dir, 4)
    (profile_dir / "profile.json").write_bytes(old)  # the counter would read 0 again
    with pytest.raises(ProfileTampered, match="older than"):
        unlock(profile_dir, "pc101", TEST_PIN)


def test_a_removed_users_old_slot_cannot_be_restored(profile_dir: Path) -> None:
    _enrol(profile_dir)
    Profile.load(profile_dir).add_user("pc101", TEST_PIN, "pc202", "135792")
    with_pc202 = (profile_dir / "profile.json").read_bytes()
    Profile.load(profile_dir).remove_user("pc101", TEST_PIN, "pc202")
    (profile_dir / "profile.json").write_bytes(with_pc202)
    with pytest.raises(ProfileTampered):
        unlock(profile_dir, "pc202", "135792")


def test_tampering_is_one_line_and_nonzero_from_the_cli(
    profile_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _enrol(profile_dir)
    _edit(profile_dir, EDITS["ttl raised"])
    monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
    code = main(["search", "--profile", str(profile_dir), "--user", "pc101", "--pin-stdin", "x"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "integrity check" in err
    assert "Traceback" not in err


def test_a_failure_is_on_disk_before_the_kdf_runs(
    profile_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killing the process while Argon2 runs must still cost the guesser one attempt."""
    _enrol(profile_dir)
    seen: list[int] = []
    real_kdf = profile_module.hash_secret_raw

    def spying_kdf(*args: Any, **kwargs: Any) -> bytes:
        seen.append(json.loads((profile_dir / "profile.json").read_text())["failures"])
        return real_kdf(*args, **kwargs)

    monkeypatch.setattr(profile_module, "hash_secret_raw", spying_kdf)
    _wrong_pins(profile_dir, 1)
    unlock(profile_dir, "pc101", TEST_PIN).close()
    assert seen == [1, 2]  # counted before each KDF; the right PIN then cleared it
    assert Profile.load(profile_dir).failures == 0


def test_a_guesser_killed_on_the_last_attempt_still_causes_the_wipe(profile_dir: Path) -> None:
    _enrol(profile_dir, LockoutPolicy(max_failures=3, free_attempts=10, base_delay_s=0))
    _wrong_pins(profile_dir, 2)
    profile = Profile.load(profile_dir)
    with profile._locked():  # what a kill during the third KDF leaves behind
        profile._data["failures"] = 3
        profile._save()
    from app.errors import CacheWiped

    with pytest.raises(CacheWiped):
        unlock(profile_dir, "pc101", TEST_PIN)
    assert not (profile_dir / "cache.db").exists()


_GUESS = """
import sys
from app.errors import UnlockFailed
from app.security import Profile
try:
    Profile.load(__import__('pathlib').Path(sys.argv[1])).unlock('pc101', sys.argv[2])
except UnlockFailed:
    print('counted')
"""

_ENROL = """
import sys
from pathlib import Path
from app.security import KdfParams, LockoutPolicy
from app.services.session import enrol
enrol(Path(sys.argv[1]), 'pc101', sys.argv[2], kdf=KdfParams(time_cost=1, memory_kib=8192,
      parallelism=1), lockout=LockoutPolicy(max_failures=20, base_delay_s=0.0,
      max_delay_s=0.0)).close()
"""


def test_eight_parallel_wrong_pins_are_all_counted(tmp_path: Path) -> None:
    """Separate processes sharing one keyring file, as eight shells on the tablet would."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(tmp_path / "xdg"),
            "KERBSIDE_ALLOW_INSECURE_KEYRING": "1",
        }
    )
    prof = tmp_path / "prof"
    subprocess.run([sys.executable, "-c", _ENROL, str(prof), TEST_PIN], env=env, check=True)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _GUESS, str(prof), WRONG],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == "counted"
    assert json.loads((prof / "profile.json").read_text())["failures"] == 8
    assert not [p for p in prof.iterdir() if p.name.endswith(".tmp")]
    shutil.rmtree(tmp_path / "xdg")

"""Enrol, unlock and manage sources against a real Secret Service, as on a Linux tablet:
gnome-keyring-daemon in its own D-Bus session, unlocked with a throwaway password, and
`kerbside` as separate processes with keyring's automatic backend choice (no
PYTHON_KEYRING_BACKEND, no insecure opt-in). Issue 9: the suite could not see that a real
keychain was refused, because every other test hands the product an in-memory keyring. On
release 708b559 the first step fails: `kerbside: the OS keyring backend
(keyring.backends.chainer.ChainerBackend) cannot protect the device secret...` (the demo's
keyring, defined at import, was chained with Secret Service).

Needs gnome-keyring, dbus-daemon and libsecret-tools (Debian);
packaging/linux/keychain-test-deps.sh installs them and `make test` runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_PIN

KERBSIDE = str(Path(sys.executable).with_name("kerbside"))


def kerbside(args: list[str], stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KERBSIDE, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120
    )


def secret_tool_lookup(account: str, env: dict[str, str]) -> str:
    """What the Secret Service itself holds for `account` ("" when nothing)."""
    found = subprocess.run(
        [str(shutil.which("secret-tool")), "lookup", "service", "kerbside", "username", account],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return found.stdout.strip()


def a_patient(cohort_dir: Path) -> dict[str, object]:
    with (cohort_dir / "Patient.ndjson").open(encoding="utf-8") as lines:
        return dict(json.loads(next(lines)))


def test_enrol_import_and_search_with_gnome_keyring(
    keychain: dict[str, str], tmp_path: Path, cohort_dir: Path
) -> None:
    profile = tmp_path / "profile"
    who = ["--profile", str(profile), "--user", "pc101", "--pin-stdin"]

    done = kerbside(["enrol", *who], f"{TEST_PIN}\n", keychain)
    assert done.returncode == 0, done.stderr
    saved = json.loads((profile / "profile.json").read_text(encoding="utf-8"))
    assert saved["keyring_store"] == "secret-service"

    # The device secret is in the Secret Service itself (not a file keyring beside it).
    assert len(secret_tool_lookup(f"device-secret/{saved['profile_id']}", keychain)) == 64

    # The doctor's keychain check writes, reads and deletes a probe in the real keychain.
    done = kerbside(["doctor", "--json", "--profile", str(profile)], "", keychain)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["Keychain"]["ok"], checks["Keychain"]
    assert checks["Keychain"]["detail"].startswith("secret-service")
    assert checks["Profile folder"]["ok"] and checks["SQLCipher"]["ok"]

    done = kerbside(["import", *who, str(cohort_dir)], f"{TEST_PIN}\n", keychain)
    assert done.returncode == 0, done.stderr
    patient = a_patient(cohort_dir)
    family = patient["name"][0]["family"]  # type: ignore[index]
    done = kerbside(["search", *who, "--json", "--limit", "50", family], f"{TEST_PIN}\n", keychain)
    assert done.returncode == 0, done.stderr
    assert patient["id"] in [hit["id"] for hit in json.loads(done.stdout)]

    done = kerbside(["search", *who, family], "135792\n", keychain)  # a wrong PIN
    assert done.returncode == 1 and "wrong user or PIN" in done.stderr


def test_without_a_keychain_enrol_is_refused_in_one_line(
    keychain: dict[str, str], tmp_path: Path
) -> None:
    """With no session bus the automatic choice has no keychain: refused, nothing created."""
    env = {k: v for k, v in keychain.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path / 'no-bus'}"
    profile = tmp_path / "profile"
    done = kerbside(
        ["enrol", "--profile", str(profile), "--user", "pc101", "--pin-stdin"],
        f"{TEST_PIN}\n",
        env,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cannot protect the device secret" in done.stderr
    assert "KERBSIDE_ALLOW_INSECURE_KEYRING" not in done.stderr
    assert not (profile / "cache.db").exists()


def test_a_source_is_added_and_removed_with_its_secret_in_gnome_keyring(
    keychain: dict[str, str], tmp_path: Path
) -> None:
    """Issue 14: a read-only source's client secret goes into the Secret Service under its own
    account beside the device secret, doctor sees it kept, and removing the source deletes it."""
    profile = tmp_path / "profile"
    who = ["--profile", str(profile), "--user", "pc101", "--pin-stdin"]
    done = kerbside(["enrol", *who], f"{TEST_PIN}\n", keychain)
    assert done.returncode == 0, done.stderr
    profile_id = json.loads((profile / "profile.json").read_text(encoding="utf-8"))["profile_id"]

    add = ["source", "add", *who, "--name", "trust-2", "--client-id", "kerbside-tab-7"]
    add += ["--server", "https://fhir.trust2.example.nhs.uk/R4"]
    add += ["--token-url", "https://fhir.trust2.example.nhs.uk/oauth/token"]
    done = kerbside(add, f"{TEST_PIN}\ntrust2-secret-0123456789\n", keychain)
    assert done.returncode == 0, done.stderr
    account = f"client-secret/{profile_id}:source:trust-2"
    assert secret_tool_lookup(account, keychain) == "trust2-secret-0123456789"

    done = kerbside(["source", "list", "--profile", str(profile), "--json"], "", keychain)
    assert [s["name"] for s in json.loads(done.stdout)] == ["trust-2"]
    done = kerbside(["doctor", "--json", "--profile", str(profile)], "", keychain)
    body = json.loads(done.stdout)
    assert [(s["name"], s["secret_stored"]) for s in body["sources"]] == [("trust-2", True)]
    assert "trust2-secret" not in done.stdout

    done = kerbside(["source", "remove", *who, "trust-2"], f"{TEST_PIN}\n", keychain)
    assert done.returncode == 0, done.stderr
    assert secret_tool_lookup(account, keychain) == ""
    assert len(secret_tool_lookup(f"device-secret/{profile_id}", keychain)) == 64  # untouched

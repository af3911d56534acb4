"""Running `kerbside` as an officer's machine does: a separate process per command, with a
keyring that outlives them (keyrings.alt's file backend under a temporary XDG_DATA_HOME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_PIN
from tests.support.sync import encounter_json, search_all

USER = "pc101"
CLI = "import sys; from app.cli import main; sys.exit(main())"  # the `kerbside` entry point


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(tmp_path / "xdg"),
            "KERBSIDE_ALLOW_INSECURE_KEYRING": "1",
        }
    )
    return env


def kerbside(
    args: list[str], stdin: str, env: dict[str, str], *, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def enrol_and_record(
    tmp_path: Path, reference: ReferenceServer, encounters: list[Any]
) -> tuple[Path, dict[str, str], list[str]]:
    """Enrol a profile against `reference` (token URL discovered), sync once so patients are
    cached, then record `encounters` (patient choices; ints index the server's Patients)."""
    env = cli_env(tmp_path)
    profile = tmp_path / "profile"
    common = ["--profile", str(profile), "--user", USER, "--pin-stdin"]
    kerbside(
        ["enrol", *common, "--server", reference.base_url, "--client-id", TABLET_CLIENT[0]],
        f"{TEST_PIN}\n{TABLET_CLIENT[1]}\n",
        env,
    )
    saved = json.loads((profile / "profile.json").read_text())
    assert TABLET_CLIENT[1] not in json.dumps(saved)  # the secret went to the keyring only
    kerbside(["sync", *common, "--quiet"], f"{TEST_PIN}\n", env)
    patients = [
        r["id"] for r in search_all(reference.session(admin=True), f"{reference.base_url}/Patient")
    ]
    body = [encounter_json({"id": patients[p]} if isinstance(p, int) else p) for p in encounters]
    (tmp_path / "encounters.json").write_text(json.dumps(body))
    done = kerbside(
        ["record", *common, "--from-json", str(tmp_path / "encounters.json")], f"{TEST_PIN}\n", env
    )
    return profile, env, json.loads(done.stdout.strip().splitlines()[-1])

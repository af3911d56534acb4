"""SIGKILL at random points while encounters are being saved (SECURITY.md 18).

Every record the writer acknowledged (printed after `record` returned, i.e. after COMMIT) must
be in the cache after the kill; nothing may be half applied; both integrity checks pass. The
set of stored records may be larger than the acknowledged one: a commit can reach the disk just
before its acknowledgement is printed.

The child processes share a keyring file (keyrings.alt's PlaintextKeyring under a temporary
XDG_DATA_HOME): the OS keyring is outside the product and this test only needs one that
outlives a process.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = r"""
import sys, json
from pathlib import Path
from app.security import KdfParams
from app.services import encounters
from app.services.session import enrol, unlock
from app.store import HOME_SOURCE

mode, profile = sys.argv[1], Path(sys.argv[2])
kdf = KdfParams(time_cost=1, memory_kib=8192, parallelism=1)
if mode == "setup":
    with enrol(profile, "pc101", "246810", kdf=kdf) as s:
        s.store.put_resources(HOME_SOURCE, [{"resourceType": "Patient", "id": "p1",
            "meta": {"versionId": "1", "lastUpdated": "2026-11-01T10:00:00Z"},
            "name": [{"use": "official", "family": "Crashworthy", "given": ["Ida"]}],
            "birthDate": "1980-01-01"}])
elif mode == "write":
    body = {"patient": {"id": "p1"}, "start": "2026-11-20T22:15:00Z",
            "end": "2026-11-20T23:05:00Z", "location": "Bus station",
            "police_incident_ref": "WMP-1", "presenting_situation": "Distressed",
            "section_136": False, "outcome": "referred-crisis-team", "narrative": "n" * 3000}
    with unlock(profile, "pc101", "246810") as s:
        print("ready", flush=True)
        while True:
            inp = encounters.parse_encounter_json(body, s)
            done = encounters.record(s, inp)
            print(done.client_id, flush=True)
elif mode == "verify":
    with unlock(profile, "pc101", "246810") as s:
        ok = s.store.check_integrity()
        rows = s.store.conn.execute("SELECT client_id, payload FROM outbox").fetchall()
        whole = all(json.loads(p)["resourceType"] == "Bundle" for _, p in rows)
        print(json.dumps({"ok": ok, "whole": whole, "ids": [r[0] for r in rows]}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(tmp_path / "xdg"),
            "KERBSIDE_ALLOW_INSECURE_KEYRING": "1",
        }
    )
    return env


def _run(mode: str, profile: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(profile)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    import json

    env = _env(tmp_path)
    profile = tmp_path / "profile"
    _run("setup", profile, env)
    rng = random.Random(1136)
    acknowledged: set[str] = set()
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, "write", str(profile)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < deadline:
            line = child.stdout.readline().strip()
            if line:
                acknowledged.add(line)
        child.send_signal(signal.SIGKILL)
        # Whatever was printed before the kill was acknowledged too.
        acknowledged.update(x.strip() for x in child.stdout.read().splitlines() if x.strip())
        child.wait()
        child.stdout.close()
        state = json.loads(_run("verify", profile, env))
        assert state["ok"] and state["whole"]
        assert acknowledged <= set(state["ids"])
    assert len(acknowledged) > 10

"""SIGKILL `kerbside sync` in the middle of pushing, start it again: every encounter is on the
server exactly once (SECURITY.md 18, 20). The push is slowed by server latency so the kill
lands between writes, including one the server may apply after the client is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sync.reference import ReferenceServer
from tests.conftest import TEST_PIN
from tests.support.cli import CLI, USER, enrol_and_record, kerbside
from tests.support.sync import UNIDENTIFIED, held_on_server


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_mid_push_then_restart_leaves_every_encounter_once(
    tmp_path: Path, reference: ReferenceServer
) -> None:
    profile, env, client_ids = enrol_and_record(
        tmp_path, reference, [0, 1, UNIDENTIFIED, 2, 3, UNIDENTIFIED, 4, 5]
    )
    reference.inject("latency", path="/fhir", method="POST", delay_s=0.4)
    reference.clear_requests()
    args = ["sync", "--profile", str(profile), "--user", USER, "--pin-stdin", "--quiet"]
    child = subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdin is not None
    child.stdin.write(f"{TEST_PIN}\n")
    child.stdin.close()
    deadline = time.monotonic() + 60
    written = 0
    while time.monotonic() < deadline and child.poll() is None:
        written = sum(
            1
            for r in reference.requests()
            if r["method"] == "POST" and r["path"] == "/fhir" and r["status"] == 200
        )
        if written >= 1:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the sync finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    for stream in (child.stdout, child.stderr):
        assert stream is not None
        stream.close()
    assert child.returncode == -signal.SIGKILL
    admin = reference.session(admin=True)
    landed = sum(1 for c in client_ids if held_on_server(admin, reference.base_url, c)["Encounter"])
    assert 1 <= landed < len(client_ids)  # killed mid-push: some sent, some not

    reference.clear_faults()
    done = kerbside(args, f"{TEST_PIN}\n", env)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["rejected"] == 0
    assert summary["pushed"] >= len(client_ids) - landed
    for client_id in client_ids:
        counts = {
            t: len(v) for t, v in held_on_server(admin, reference.base_url, client_id).items()
        }
        assert counts == {
            "Encounter": 1,
            "QuestionnaireResponse": 1,
            "Provenance": 1,
            "Observation": 1,
        }, counts
    again = json.loads(kerbside(args, f"{TEST_PIN}\n", env).stdout.strip().splitlines()[-1])
    assert again["pushed"] == 0

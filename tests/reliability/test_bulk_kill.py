"""SIGKILL `kerbside sync` during a bulk first load ($export) and during its index build, then
start it again: the cache ends equal to the central record and searches correctly, and in
between search refuses rather than answer from half an index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from app.services.search import PatientSearch
from app.services.session import unlock
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_PIN, reference_config
from tests.support.cli import CLI, USER, cli_env, kerbside
from tests.support.sync import cache_cohort, server_cohort

PATIENTS = 1500  # enough that the index build takes a moment to land a kill in


@pytest.fixture(scope="module")
def bulk_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from app.synthetic import generate_cohort

    out = tmp_path_factory.mktemp("big-cohort")
    generate_cohort(PATIENTS, 11, out)
    return out


@pytest.fixture
def bulk_reference(tmp_path: Path, bulk_cohort_dir: Path) -> Iterator[ReferenceServer]:
    server = ReferenceServer(reference_config(tmp_path / "central", bulk_cohort_dir)).start()
    try:
        yield server
    finally:
        server.stop()


def enrolled(tmp_path: Path, server: ReferenceServer) -> tuple[list[str], dict[str, str]]:
    env = cli_env(tmp_path)
    common = ["--profile", str(tmp_path / "profile"), "--user", USER, "--pin-stdin"]
    kerbside(
        ["enrol", *common, "--server", server.base_url, "--client-id", TABLET_CLIENT[0]],
        f"{TEST_PIN}\n{TABLET_CLIENT[1]}\n",
        env,
    )
    return common, env


def start_sync(common: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CLI, "sync", *common],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdin is not None
    child.stdin.write(f"{TEST_PIN}\n")
    child.stdin.close()
    return child


def kill(child: subprocess.Popen[str]) -> None:
    assert child.poll() is None, "the sync finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()
    assert child.returncode == -signal.SIGKILL


def open_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI's profile, opened here with the keyring the CLI used."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    keyring.set_keyring(PlaintextKeyring())
    return unlock(tmp_path / "profile", USER, TEST_PIN)


def search_refuses(common: list[str], env: dict[str, str]) -> str:
    done = kerbside(["search", *common, "smith"], f"{TEST_PIN}\n", env, check=False)
    assert done.returncode != 0
    return done.stderr


def check_recovered(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: ReferenceServer,
    common: list[str],
    env: dict[str, str],
) -> None:
    assert "until the cache finishes loading" in search_refuses(common, env)
    server.clear_faults()
    kerbside(["sync", *common, "--quiet"], f"{TEST_PIN}\n", env, timeout=300)
    session = open_cache(tmp_path, monkeypatch)
    try:
        assert not session.store.bulk_load_pending()
        assert cache_cohort(session.store) == server_cohort(server, server.session(admin=True))
        search = PatientSearch(session.store)
        rows = session.store.conn.execute(
            "SELECT id, display_name FROM patient_index ORDER BY pid LIMIT 20"
        ).fetchall()
        assert len(rows) == 20
        for rid, name in rows:
            assert rid in [h.id for h in search.search(name, limit=50).hits]
        count = session.store.conn.execute("SELECT count(*) FROM patient_index").fetchone()[0]
        assert count == PATIENTS
    finally:
        session.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_during_the_bulk_load_then_restart(
    tmp_path: Path, bulk_reference: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, env = enrolled(tmp_path, bulk_reference)
    # The third file hangs: the kill lands with the load begun and part of it written.
    bulk_reference.inject("latency", path="/fhir/_bulk/files/", skip=2, delay_s=60)
    bulk_reference.clear_requests()
    child = start_sync(common, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        served = [
            r
            for r in bulk_reference.requests()
            if r["path"].startswith("/fhir/_bulk/files/") and r["status"] == 200
        ]
        if len(served) >= 2:
            break
        time.sleep(0.02)
    kill(child)
    check_recovered(tmp_path, monkeypatch, bulk_reference, common, env)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_during_the_index_build_then_restart(
    tmp_path: Path, bulk_reference: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, env = enrolled(tmp_path, bulk_reference)
    child = start_sync(common, env)
    assert child.stderr is not None
    for line in child.stderr:  # progress lines; "index: 0" starts the build
        if line.startswith("index:"):
            break
    kill(child)
    check_recovered(tmp_path, monkeypatch, bulk_reference, common, env)

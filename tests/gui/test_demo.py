"""`kerbside demo`: the reference central record starts on 127.0.0.1, a fresh profile is
enrolled against it, the app syncs the cohort in after unlock, and closing the window stops
the server. Once in-process through the real window, once as the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.cli._gui import DEMO_CLIENT_ID, DemoEnvironment, open_demo_window
from app.security import Profile, client_secret
from tests.gui.conftest import type_search, unlock

PATIENTS = 40


def test_demo_enrols_syncs_after_unlock_and_stops_the_server_on_close(
    qtbot: QtBot, qapp, tmp_path: Path
) -> None:
    env = DemoEnvironment.create(tmp_path / "demo", PATIENTS)
    try:
        assert env.server.base_url.startswith("http://127.0.0.1:")
        assert env.answering()
        profile = Profile.load(env.profile_dir)
        assert profile.server is not None and profile.server.client_id == DEMO_CLIENT_ID
        assert profile.server.base_url == env.server.base_url
        assert client_secret(profile.profile_id)  # in the (demo, in-memory) keyring
        assert "client_secret" not in (env.profile_dir / "profile.json").read_text()

        window = open_demo_window(
            env, install_excepthook=False, sync_options={"use_os_network_info": False}
        )
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        shown = "\n".join(
            lab.text() for lab in window.unlock_view.findChildren(type(window.user_label))
        )
        assert f"Demo PIN: {env.pin}" in shown and "DEMO" in shown
        with qtbot.waitSignal(window.sync_finished, timeout=120_000) as synced:
            unlock(qtbot, window, env.pin)
        assert synced.args[0].pulled > 0
        assert window.session.store.count_by_type()["Patient"] == PATIENTS
        family = json.loads((env.cohort / "Patient.ndjson").read_text().splitlines()[0])["name"][0][
            "family"
        ]
        assert type_search(qtbot, window, family)
        window.close()
        assert not env.answering()
    finally:
        env.stop()


def test_the_demo_command_runs_headless_and_quits_after_sync(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("KERBSIDE_ALLOW_INSECURE_KEYRING", None)  # the demo opts in by itself
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("kerbside")),
            "demo",
            "--patients",
            str(PATIENTS),
            "--dir",
            str(tmp_path / "demo"),
            "--quit-after-sync",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    # Two Trusts by default (issue 14): home and a neighbour, each its own server, both synced
    # in the first run, and people both know are one person.
    region = tmp_path / "demo" / "regions" / f"{PATIENTS}-t2-o0.2-seed1"
    assert (region / ".complete").exists()  # generated once, reused by the next run
    home, west = (_count(region / f"trust-{k}" / "Patient.ndjson") for k in (1, 2))
    assert outcome["sources"] == {"home": "ok", "trust-2": "ok"}
    assert outcome["patients"] == home and outcome["patients_all_sources"] == home + west
    assert outcome["pulled"] > home + west
    assert outcome["merged_people"] > 0
    assert outcome["server_stopped"] is True
    assert "PIN" in done.stderr and "127.0.0.1" in done.stderr
    assert "neighbouring Trust (read-only source trust-2)" in done.stderr
    # (read as a file: its device secret left with the demo's in-memory keyring, and loading
    # verifies profile.json's MAC with it)
    saved = json.loads((tmp_path / "demo" / "profile" / "profile.json").read_text())
    assert list(saved["users"]) == ["demo"]
    neighbour = saved["sources"][1]
    assert (neighbour["name"], neighbour["role"]) == ("trust-2", "read-only")
    assert neighbour["display_name"].endswith("(demo)") and neighbour["ods_code"]


def test_the_demo_with_one_trust_serves_the_cohort_as_before(qtbot: QtBot, tmp_path: Path) -> None:
    env = DemoEnvironment.create(tmp_path / "demo", PATIENTS, trusts=1)
    try:
        assert env.neighbours == [] and env.folders == [env.cohort]
        assert (tmp_path / "demo" / "cohorts" / f"{PATIENTS}-seed1" / ".complete").exists()
        assert [s.name for s in Profile.load(env.profile_dir).sources] == ["home"]
    finally:
        env.stop()


def _count(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())

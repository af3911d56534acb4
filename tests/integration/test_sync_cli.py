"""`kerbside enrol --server` and `kerbside sync` as an officer's machine runs them: separate
processes, a keyring that outlives them (keyrings.alt's file backend under a temporary
XDG_DATA_HOME, the OS keyring being outside the product), the reference server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_PIN
from tests.support.cli import USER, enrol_and_record, kerbside
from tests.support.sync import (
    UNIDENTIFIED,
    held_on_server,
)


def test_enrol_discovers_the_token_url_and_sync_prints_progress_then_one_json_line(
    tmp_path: Path, reference: ReferenceServer
) -> None:
    profile, env, client_ids = enrol_and_record(tmp_path, reference, [0, UNIDENTIFIED])
    server = json.loads((profile / "profile.json").read_text())["sources"][0]
    assert server["token_url"] == reference.token_url
    reference.clear_requests()
    done = kerbside(
        ["sync", "--profile", str(profile), "--user", USER, "--pin-stdin"], f"{TEST_PIN}\n", env
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"pulled", "pushed", "rejected", "deleted", "seconds"} <= set(summary)
    assert (summary["pushed"], summary["rejected"], summary["deleted"]) == (2, 0, 0)
    # The server's copies came back in the push answers, so the pull finds nothing newer.
    assert summary["pulled"] == 0
    assert isinstance(summary["seconds"], float) and summary["seconds"] > 0
    progress = done.stderr.splitlines()
    assert any(line.startswith("push: ") for line in progress)
    assert any(line.startswith("pull Patient: ") for line in progress)
    admin = reference.session(admin=True)
    for client_id in client_ids:
        assert all(
            len(v) == 1 for v in held_on_server(admin, reference.base_url, client_id).values()
        )
    assert not any(TABLET_CLIENT[1] in r["query"] for r in reference.requests())


def test_sync_fails_with_one_line_and_exit_1_when_the_server_is_gone(
    tmp_path: Path, reference: ReferenceServer
) -> None:
    profile, env, _ = enrol_and_record(tmp_path, reference, [1])
    reference.stop()
    done = kerbside(
        ["sync", "--profile", str(profile), "--user", USER, "--pin-stdin", "--quiet"],
        f"{TEST_PIN}\n",
        env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("kerbside: ")
    assert "Traceback" not in done.stderr

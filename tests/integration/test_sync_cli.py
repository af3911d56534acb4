"""`kerbside enrol --server` and `kerbside sync` as an officer's machine runs them: separate
processes, a keyring that outlives them (keyrings.alt's file backend under a temporary
XDG_DATA_HOME, the OS keyring being outside the product), the reference server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from app.synthetic import generate_trusts
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_PIN
from tests.support.cli import USER, enrol_and_record, kerbside
from tests.support.sync import UNIDENTIFIED, held_on_server, trust_servers

# The last line's keys before several sources (issue 14): kept, as totals.
BEFORE_SOURCES = {
    "pulled", "pushed", "rejected", "deleted", "seconds", "audit_uploaded", "merged",
    "received", "pages", "rescans", "requests", "retries", "reconciled", "policy",
    "push_blocked", "rejections",
}  # fmt: skip


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


def test_sync_json_keeps_its_totals_and_says_per_source_which_one_failed(
    tmp_path: Path,
) -> None:
    """The CLI contract with a read-only source: every key of before, as totals, plus
    `sources`; a neighbour down is its entry's `ok: false` and a warning line, exit 0."""
    region = tmp_path / "region"
    generate_trusts(2, 0.3, 60, 5, region)
    with trust_servers(tmp_path / "servers", region, 2) as (home, west):
        profile, env, _ = enrol_and_record(tmp_path, home, [0])
        common = ["--profile", str(profile), "--user", USER, "--pin-stdin"]
        add = ["--name", "trust-2", "--server", west.base_url, "--client-id", TABLET_CLIENT[0]]
        kerbside(["source", "add", *common, *add], f"{TEST_PIN}\n{TABLET_CLIENT[1]}\n", env)
        done = kerbside(["sync", *common, "--quiet"], f"{TEST_PIN}\n", env)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert BEFORE_SOURCES <= set(summary)
        assert set(summary["sources"]) == {"home", "trust-2"}
        for part in summary["sources"].values():
            assert set(part) == {"pulled", "pushed", "rejected", "deleted", "ok", "error", "state"}
            assert part["ok"] is True and part["error"] is None
        assert summary["sources"]["home"]["pushed"] == summary["pushed"] == 1
        assert summary["sources"]["trust-2"]["pulled"] > 0
        assert summary["pulled"] == sum(p["pulled"] for p in summary["sources"].values())

        west.stop()
        done = kerbside(["sync", *common, "--quiet"], f"{TEST_PIN}\n", env)
        assert done.returncode == 0  # home synced: a neighbour's failure is reported, not fatal
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        neighbour = summary["sources"]["trust-2"]
        assert (neighbour["ok"], neighbour["state"]) == (False, "failed")
        assert neighbour["error"] and "\n" not in neighbour["error"]
        assert summary["sources"]["home"]["ok"] is True
        assert any(
            line.startswith("warning: source trust-2 not synced: ")
            for line in done.stderr.splitlines()
        )
        listed = kerbside(["source", "list", "--profile", str(profile), "--json"], "", env)
        rows = {row["name"]: row for row in json.loads(listed.stdout)}
        assert rows["trust-2"]["state"] == "failed" and rows["home"]["state"] == "ok"
        assert rows["trust-2"]["patients"] > 0  # what it brought last time is still there

        # Home down fails the command as it always has, but the last line still says how
        # every source went: the neighbour was asked and synced.
        west.restart()
        home.stop()
        done = kerbside(["sync", *common, "--quiet"], f"{TEST_PIN}\n", env, check=False)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1].startswith("kerbside: ")
        assert "Traceback" not in done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert BEFORE_SOURCES <= set(summary)
        assert (summary["sources"]["home"]["ok"], summary["sources"]["home"]["state"]) == (
            False,
            "failed",
        )
        assert summary["sources"]["home"]["error"]
        assert summary["sources"]["trust-2"]["ok"] is True

"""`kerbside source add|list|remove` through the real console entry, one process per command as
on a tablet (tests/support/cli.py), against the reference server on 127.0.0.1. The keyring that
outlives the processes is keyrings.alt's plaintext file under a temporary XDG_DATA_HOME (test
only; test_real_keychain.py does the same against GNOME Keyring)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from keyrings.alt.file import PlaintextKeyring

from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_PIN
from tests.support.cli import USER, cli_env, kerbside


def _file_keyring(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> PlaintextKeyring:
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    return PlaintextKeyring()


def test_source_add_list_remove_as_separate_processes(
    tmp_path: Path, reference: ReferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cli_env(tmp_path)
    profile = tmp_path / "profile"
    who = ["--profile", str(profile), "--user", USER, "--pin-stdin"]
    kerbside(
        ["enrol", *who, "--server", reference.base_url, "--client-id", TABLET_CLIENT[0]],
        f"{TEST_PIN}\n{TABLET_CLIENT[1]}\n",
        env,
    )
    done = kerbside(
        [
            "source",
            "add",
            *who,
            "--name",
            "trust-2",
            "--server",
            reference.base_url,
            "--client-id",
            "kerbside-neighbour",
            "--display-name",
            "Neighbouring Trust",
            "--ods-code",
            "RXY",
        ],
        f"{TEST_PIN}\nneighbour-secret-42\n",
        env,
    )
    assert done.stdout == f"added source trust-2 (read-only): {reference.base_url}\n"
    assert "neighbour-secret-42" not in (profile / "profile.json").read_text()

    listed = json.loads(
        kerbside(["source", "list", "--profile", str(profile), "--json"], "", env).stdout
    )
    assert [(s["name"], s["role"], s["token_url"]) for s in listed] == [
        ("home", "home", reference.token_url),
        ("trust-2", "read-only", reference.token_url),  # discovered, as enrol does
    ]
    assert listed[1]["display_name"] == "Neighbouring Trust" and listed[1]["ods_code"] == "RXY"
    profile_id = json.loads((profile / "profile.json").read_text())["profile_id"]
    keyring = _file_keyring(env, monkeypatch)
    assert keyring.get_password("kerbside", f"client-secret/{profile_id}:source:trust-2") == (
        "neighbour-secret-42"
    )

    refused = kerbside(["source", "remove", *who, "home"], f"{TEST_PIN}\n", env, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines()[-1] == (  # after the insecure-keyring warning
        "kerbside: the home source cannot be removed; re-enrol the tablet to change it"
    )

    done = kerbside(["source", "remove", *who, "trust-2"], f"{TEST_PIN}\n", env)
    assert "removed source trust-2" in done.stdout
    listed = json.loads(
        kerbside(["source", "list", "--profile", str(profile), "--json"], "", env).stdout
    )
    assert [s["name"] for s in listed] == ["home"]
    assert keyring.get_password("kerbside", f"client-secret/{profile_id}:source:trust-2") is None
    assert keyring.get_password("kerbside", f"client-secret/{profile_id}") == TABLET_CLIENT[1]

    trail = kerbside(["audit", *who, "--json"], f"{TEST_PIN}\n", env).stdout.splitlines()
    actions = [(row["action"], row["reason"]) for row in map(json.loads, trail[:-1])]
    assert actions == [("source-add", "trust-2 127.0.0.1"), ("source-remove", "trust-2 127.0.0.1")]

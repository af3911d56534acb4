"""The site configuration Trust IT provisions: strict loading, `kerbside provision`, and
`kerbside enrol` / `set-team` on a provisioned device, against the real reference server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import app.security._profile as profile_module
from app.cli import main
from app.services.site import (
    SITE_ENV,
    SiteConfigError,
    default_site_path,
    load_site_config,
)
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF, TEST_PIN, MemoryKeyring

SITE = """\
locked = ["central_record", "team", "wipe_after_failures"]

[central_record]
url = "{url}"
client_id = "{client}"

[team]
name = "Bolton Street Triage"
ods_code = "rxv"

[policies]
idle_lock_minutes = 3
pin_min_length = 8
cache_ttl_hours = 48
wipe_after_failures = 6
"""


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)
    monkeypatch.delenv(SITE_ENV, raising=False)


def write_site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(
    args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# -- loading -----------------------------------------------------------------------------------
def test_a_full_site_file_loads_into_typed_settings(tmp_path: Path) -> None:
    site = load_site_config(
        write_site(tmp_path, SITE.format(url="https://fhir.example.org/R4/", client="t1"))
    )
    assert site is not None
    assert site.url == "https://fhir.example.org/R4" and site.client_id == "t1"
    assert (site.team_name, site.team_code) == ("Bolton Street Triage", "RXV")
    assert site.policies.idle_lock_minutes == 3 and site.policies.pin_min_length == 8
    assert site.policies.cache_ttl_hours == 48 and site.policies.wipe_after_failures == 6
    assert site.is_locked("url") and site.is_locked("token_url") and site.is_locked("team")
    assert site.is_locked("wipe_after_failures") and not site.is_locked("idle_lock_minutes")


MINIMAL = '[central_record]\nurl = "https://fhir.example.org"\nclient_id = "t1"\n'


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (MINIMAL + "colour = 1\n", "central_record.colour", "expected a known key"),
        (MINIMAL.replace('"t1"', "7"), "central_record.client_id", "expected a non-empty text"),
        ('[central_record]\nclient_id = "t1"\n', "central_record.url", "expected a text value"),
        (MINIMAL.replace("https:", "http:"), "central_record.url", "https"),
        (
            MINIMAL + "[policies]\nidle_lock_minutes = 90\n",
            "policies.idle_lock_minutes",
            "0.5 to 30",
        ),
        (MINIMAL + "[policies]\npin_min_length = 4\n", "policies.pin_min_length", "6 to 12"),
        (
            MINIMAL + "[policies]\nwipe_after_failures = 2.5\n",
            "wipe_after_failures",
            "whole number",
        ),
        ('locked = ["colour"]\n' + MINIMAL, "locked", "expected names from"),
        (MINIMAL + "[team]\nods_code = 'RXV'\n", "team.name", "a team name"),
        (MINIMAL + "[team]\nname = 'T'\nods_code = 'R!'\n", "team.ods_code", "ODS code"),
        (MINIMAL + 'ca_bundle = "/no/such/ca.pem"\n', "central_record.ca_bundle", "CA certif"),
        ("[policies]\n", "central_record", "a table [central_record]"),
        ("url = \n", "", "not valid TOML"),
    ],
)
def test_bad_configuration_names_the_file_the_key_and_what_is_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write_site(tmp_path, text)
    with pytest.raises(SiteConfigError) as err:
        load_site_config(path)
    message = str(err.value)
    assert message.startswith(f"site configuration {path}: ")
    assert key in message and expected in message


def test_the_file_is_found_where_mdm_points_else_where_the_platform_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_site_path() == Path("/etc/kerbside/site.toml")  # Linux
    monkeypatch.setenv(SITE_ENV, str(tmp_path / "mdm.toml"))
    assert default_site_path() == tmp_path / "mdm.toml"
    with pytest.raises(SiteConfigError, match="no such file"):
        load_site_config()  # IT pointed at a file that is not there: not "unprovisioned"


# -- provision and enrol -----------------------------------------------------------------------
def test_provision_then_enrol_takes_everything_from_the_site_and_syncs(
    tmp_path: Path,
    reference: ReferenceServer,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = write_site(tmp_path, SITE.format(url=reference.base_url, client=TABLET_CLIENT[0]))
    code, out, err = run(
        ["provision", "--secret-stdin", "--site-config", str(site)],
        f"{TABLET_CLIENT[1]}\n",
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert TABLET_CLIENT[1] not in out + err
    assert ("kerbside", f"site-client-secret/{TABLET_CLIENT[0]}") in memory_keyring.secrets

    prof = tmp_path / "prof"
    who = ["--profile", str(prof), "--user", "pc101", "--pin-stdin", "--site-config", str(site)]
    code, _out, err = run(["enrol", *who], f"{TEST_PIN}\n", monkeypatch, capsys)
    assert "at least 8 digits" in err and code == 1  # the site's PIN minimum
    assert not prof.exists()
    code, out, err = run(["enrol", *who], "24681357\n", monkeypatch, capsys)
    assert code == 0, err
    saved = json.loads((prof / "profile.json").read_text())
    assert saved["sources"][0]["base_url"] == reference.base_url
    assert saved["sources"][0]["client_id"] == TABLET_CLIENT[0]
    assert saved["sources"][0]["token_url"]  # discovered from the server before enrolling
    assert saved["lockout"]["max_failures"] == 6
    settings = saved["settings"]
    assert settings["idle_lock_minutes"] == 3 and settings["cache_ttl_hours"] == 48
    assert settings["min_pin_length"] == 8
    assert settings["team"] == "Bolton Street Triage" and settings["team_code"] == "RXV"
    assert TABLET_CLIENT[1] not in json.dumps(saved)

    code, out, err = run(
        ["sync", "--profile", str(prof), "--user", "pc101", "--pin-stdin", "--quiet"],
        "24681357\n",
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["pulled"] > 0


def test_flags_that_contradict_locked_settings_are_refused_before_anything_is_made(
    tmp_path: Path,
    reference: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = write_site(tmp_path, SITE.format(url=reference.base_url, client=TABLET_CLIENT[0]))
    prof = tmp_path / "prof"
    who = ["--profile", str(prof), "--user", "pc101", "--pin-stdin", "--site-config", str(site)]
    for flags in (
        ["--server", "https://elsewhere.example.org"],
        ["--team", "Another Team"],
        ["--max-pin-failures", "12"],
    ):
        code, _out, err = run(["enrol", *who, *flags], "24681357\n", monkeypatch, capsys)
        assert code == 1
        assert f"kerbside: {flags[0]} is set by the site configuration ({site})" in err
        assert "locked" in err
        assert not prof.exists()
    # Not locked: the officer's choice wins. Not provisioned: IT must run provision first.
    code, _out, err = run(["enrol", *who, "--idle-minutes", "2"], "24681357\n", monkeypatch, capsys)
    assert code == 1 and "kerbside provision --secret-stdin" in err
    assert not (prof / "profile.json").exists()


def test_set_team_is_refused_when_the_site_locks_the_team(
    tmp_path: Path,
    reference: ReferenceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    site = write_site(tmp_path, SITE.format(url=reference.base_url, client=TABLET_CLIENT[0]))
    run(
        ["provision", "--secret-stdin", "--site-config", str(site)], "s3cret\n", monkeypatch, capsys
    )
    prof = tmp_path / "prof"
    who = ["--profile", str(prof), "--user", "pc101", "--pin-stdin", "--site-config", str(site)]
    code, _out, err = run(["enrol", *who, "--idle-minutes", "2"], "24681357\n", monkeypatch, capsys)
    assert code == 0, err
    assert json.loads((prof / "profile.json").read_text())["settings"]["idle_lock_minutes"] == 2
    code, _out, err = run(["set-team", *who, "Other"], "24681357\n", monkeypatch, capsys)
    assert code == 1 and "the team is set by the site configuration" in err


def test_provision_without_a_site_file_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.toml"
    code, _out, err = run(
        ["provision", "--secret-stdin", "--site-config", str(missing)], "x\n", monkeypatch, capsys
    )
    assert code == 1 and err.strip() == f"kerbside: site configuration {missing}: no such file"


def test_gui_with_a_bad_site_file_says_so_in_one_line_before_any_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_site(tmp_path, MINIMAL + "[policies]\nwipe_after_failures = 50\n")
    args = ["gui", "--profile", str(tmp_path / "p"), "--site-config", str(bad)]
    code, out, err = run(args, "", monkeypatch, capsys)
    assert code == 1 and out == ""
    assert err == (
        f"kerbside: site configuration {bad}: policies.wipe_after_failures: expected a whole "
        "number from 3 to 20 (got 50)\n"
    )

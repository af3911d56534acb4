"""The `kerbside` profile commands, driven as a shell user would (stdin PINs, exit codes)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import orjson
import pytest

import app.security._profile as profile_module
from app.cli import main
from app.store import SCHEMA_VERSION
from tests.conftest import TEST_KDF


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)


def run(
    args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def enrolled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """A profile with user pc101 (PIN 246810), enrolled through the CLI; returns its path."""
    prof = str(tmp_path / "prof")
    code, _out, _err = run(
        ["enrol", "--profile", prof, "--user", "pc101", "--pin-stdin"],
        "246810\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    return prof


def _write_ndjson(directory: Path) -> None:
    directory.mkdir()
    patients = [
        {
            "resourceType": "Patient",
            "id": f"p{i}",
            "meta": {"versionId": "1"},
            "name": [{"use": "official", "family": "Ashworth", "given": ["Mabel"]}],
        }
        for i in range(3)
    ]
    (directory / "Patient.ndjson").write_bytes(b"\n".join(orjson.dumps(p) for p in patients))
    flag = {
        "resourceType": "Flag",
        "id": "f1",
        "meta": {"versionId": "1"},
        "status": "active",
        "code": {"text": "MAPPA"},
        "subject": {"reference": "Patient/p1"},
    }
    (directory / "Flag.ndjson").write_bytes(orjson.dumps(flag) + b"\n")


def test_enrol_import_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = str(tmp_path / "prof")
    code, out, _ = run(
        ["enrol", "--profile", prof, "--user", "pc101", "--pin-stdin"],
        "246810\n",
        monkeypatch,
        capsys,
    )
    assert code == 0 and "enrolled pc101" in out
    gen = tmp_path / "gen"
    _write_ndjson(gen)
    code, out, _ = run(
        ["import", "--profile", prof, "--user", "pc101", "--pin-stdin", str(gen)],
        "246810\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1]) == {"Flag": 1, "Patient": 3}
    code, out, _ = run(["status", "--profile", prof, "--json"], "", monkeypatch, capsys)
    status = json.loads(out)
    assert status["patients"] == 3 and status["schema_version"] == SCHEMA_VERSION
    assert status["outbox"] == {"pending": 0, "rejected": 0, "sent": 0}
    assert "Ashworth" not in out


def test_wrong_pin_is_one_line_and_nonzero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = enrolled(tmp_path, monkeypatch, capsys)
    code, _out, err = run(
        ["import", "--profile", prof, "--user", "pc101", "--pin-stdin", str(tmp_path)],
        "975310\n",
        monkeypatch,
        capsys,
    )
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("kerbside: wrong user or PIN")
    assert "Traceback" not in err


def test_bad_import_file_is_refused_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = enrolled(tmp_path, monkeypatch, capsys)
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "a"}\n{"trunc')
    code, _, err = run(
        ["import", "--profile", prof, "--user", "pc101", "--pin-stdin", str(gen)],
        "246810\n",
        monkeypatch,
        capsys,
    )
    assert code == 1 and "Patient.ndjson line 2" in err and "Traceback" not in err


def test_add_user_and_change_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = enrolled(tmp_path, monkeypatch, capsys)
    code, _, _ = run(
        ["add-user", "--profile", prof, "--user", "pc101", "--new-user", "rmn202", "--pin-stdin"],
        "246810\n864209\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    code, _, _ = run(
        ["change-pin", "--profile", prof, "--user", "rmn202", "--pin-stdin"],
        "864209\n135792\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    code, out, _ = run(["status", "--profile", prof], "", monkeypatch, capsys)
    assert "pc101, rmn202" in out


def test_status_of_a_missing_profile_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["status", "--profile", str(tmp_path / "none")], "", monkeypatch, capsys)
    assert code == 1 and "enrol first" in err


def test_enrol_sets_the_wipe_threshold_and_idle_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.security import Profile

    profile = tmp_path / "p"
    args = [
        "enrol",
        "--profile",
        str(profile),
        "--user",
        "pc1",
        "--pin-stdin",
        "--max-pin-failures",
        "5",
        "--idle-minutes",
        "2",
    ]
    code, _out, _err = run(args, "246810\n", monkeypatch, capsys)
    assert code == 0
    loaded = Profile.load(profile)
    assert loaded.lockout.max_failures == 5
    assert loaded.settings["idle_lock_minutes"] == 2.0


def test_enrol_refuses_a_wipe_threshold_out_of_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "enrol",
        "--profile",
        str(tmp_path / "p"),
        "--user",
        "pc1",
        "--pin-stdin",
        "--max-pin-failures",
        "1",
    ]
    code, _out, err = run(args, "246810\n", monkeypatch, capsys)
    assert code == 1 and "--max-pin-failures" in err
    assert not (tmp_path / "p" / "profile.json").exists()


def test_enrol_sets_the_team_and_set_team_changes_it_with_a_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.security import Profile

    profile = tmp_path / "p"
    base = ["--profile", str(profile), "--user", "pc1", "--pin-stdin"]
    args = ["enrol", *base, "--team", " Bolton Street Triage ", "--team-code", "rxv"]
    code, _out, err = run(args, "246810\n", monkeypatch, capsys)
    assert code == 0, err
    settings = Profile.load(profile).settings
    assert (settings["team"], settings["team_code"]) == ("Bolton Street Triage", "RXV")

    # A wrong PIN changes nothing (and counts as a failure).
    salford = ["set-team", *base, "Salford Street Triage"]
    code, _out, err = run(salford, "975310\n", monkeypatch, capsys)
    assert code == 1 and "wrong user or PIN" in err
    assert Profile.load(profile).settings["team"] == "Bolton Street Triage"
    assert Profile.load(profile).failures == 1

    # A new name without a code drops the old team's code: it would name the wrong organisation.
    code, out, _err = run(salford, "246810\n", monkeypatch, capsys)
    assert code == 0 and "Salford Street Triage" in out
    settings = Profile.load(profile).settings
    assert (settings["team"], settings["team_code"]) == ("Salford Street Triage", None)

    code, _out, _err = run(["set-team", *base, "--clear"], "246810\n", monkeypatch, capsys)
    assert code == 0 and Profile.load(profile).settings["team"] is None


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--team-code", "RXV"], "--team-code needs --team"),
        (["--team", "  "], "must not be empty"),
        (["--team", "x" * 201], "longer than 200"),
        (["--team", "Bolton", "--team-code", "RX-V!"], "ODS code"),
    ],
)
def test_enrol_refuses_a_bad_team_before_creating_anything(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    fragment: str,
) -> None:
    args = ["enrol", "--profile", str(tmp_path / "p"), "--user", "pc1", "--pin-stdin", *extra]
    code, _out, err = run(args, "246810\n", monkeypatch, capsys)
    assert code == 1 and fragment in err and "Traceback" not in err
    assert not (tmp_path / "p" / "profile.json").exists()


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"kerbside {version('kerbside')}"

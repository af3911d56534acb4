"""Users and the team: only an admin changes them, and each change is in the audit trail
(issue 12 finding 2: "any enrolled user can add a user under any name")."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import app.security._profile as profile_module
from app.cli import main
from app.services.session import unlock
from tests.conftest import TEST_KDF, TEST_PIN

OTHER_PIN = "975310"
THIRD_PIN = "135792"


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)


def _run(args: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    return code, capsys.readouterr().err


def test_only_admins_manage_users_and_the_team_and_each_change_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = str(tmp_path / "prof")
    as_user = lambda u: ["--profile", prof, "--user", u, "--pin-stdin"]  # noqa: E731
    assert _run(["enrol", *as_user("pc101")], f"{TEST_PIN}\n", monkeypatch, capsys)[0] == 0
    # pc101 (first enrolled: admin) adds pc202, an ordinary user.
    code, _ = _run(
        ["add-user", *as_user("pc101"), "--new-user", "pc202"],
        f"{TEST_PIN}\n{OTHER_PIN}\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    # pc202 may not add, remove or change the team.
    code, err = _run(
        ["add-user", *as_user("pc202"), "--new-user", "mallory"],
        f"{OTHER_PIN}\n{THIRD_PIN}\n",
        monkeypatch,
        capsys,
    )
    assert code == 1 and "only an admin" in err
    code, err = _run(
        ["remove-user", *as_user("pc202"), "--remove", "pc101"],
        f"{OTHER_PIN}\n",
        monkeypatch,
        capsys,
    )
    assert code == 1 and "only an admin" in err
    code, err = _run(
        ["set-team", *as_user("pc202"), "Night Team"], f"{OTHER_PIN}\n", monkeypatch, capsys
    )
    assert code == 1 and "only an admin" in err
    # The admin names pc303 an admin; pc303 can then remove pc202.
    code, _ = _run(
        ["add-user", *as_user("pc101"), "--new-user", "pc303", "--admin"],
        f"{TEST_PIN}\n{THIRD_PIN}\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    assert (
        _run(["set-team", *as_user("pc101"), "Night Team"], f"{TEST_PIN}\n", monkeypatch, capsys)[0]
        == 0
    )
    code, _ = _run(
        ["remove-user", *as_user("pc303"), "--remove", "pc202"],
        f"{THIRD_PIN}\n",
        monkeypatch,
        capsys,
    )
    assert code == 0
    with unlock(Path(prof), "pc101", TEST_PIN) as s:
        trail = [(e.user_id, e.action, e.reason) for e in s.store.audit_entries()]
        assert s.audit_problems() == []
    assert trail == [
        ("pc101", "add-user", "pc202"),
        ("pc101", "add-user", "pc303 (admin)"),
        ("pc101", "change-team", "Night Team "),
        ("pc303", "remove-user", "pc202"),
    ]

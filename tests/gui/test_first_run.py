"""First run on a provisioned tablet: `kerbside gui` with a site configuration and no profile
shows the enrolment screen; an officer enrols (user name, PIN twice) against the real
reference server and lands on Find, unlocked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

import app.security._profile as profile_module
from app.services.site import load_site_config, provision
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, TEST_KDF
from tests.gui.conftest import WindowFactory, make_profile

PIN = "24681357"


@pytest.fixture
def site(tmp_path: Path, reference: ReferenceServer, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)
    path = tmp_path / "site.toml"
    path.write_text(
        f'locked = ["central_record"]\n[central_record]\nurl = "{reference.base_url}"\n'
        f'client_id = "{TABLET_CLIENT[0]}"\n[team]\nname = "Bolton Street Triage"\n'
        "[policies]\npin_min_length = 8\nidle_lock_minutes = 4\n",
        encoding="utf-8",
    )
    loaded = load_site_config(path)
    assert loaded is not None
    provision(loaded, TABLET_CLIENT[1])
    return loaded


def _type(qtbot: QtBot, box: object, text: str) -> None:
    box.clear()  # type: ignore[attr-defined]
    qtbot.keyClicks(box, text)


def test_an_officer_enrols_on_first_run_and_lands_on_find(
    qtbot: QtBot, tmp_path: Path, site: object, make_window: WindowFactory
) -> None:
    profile = tmp_path / "profile"
    window = make_window(profile, site=site)
    view = window.first_run_view
    assert view is not None and view.isVisible()
    names = {w.accessibleName() for w in (view.user_box, view.pin_box, view.pin_again_box)}
    assert names == {"Your user name", "Choose a PIN", "Type the PIN again"}
    assert view.enrol_button.accessibleName() == "Enrol on this tablet"
    assert "Bolton Street Triage" in view.intro.text() and "8 digits" in view.intro.text()
    qtbot.mouseClick(view.help_button, Qt.MouseButton.LeftButton)  # Help, then back here
    qtbot.waitUntil(window.help_view.isVisible, timeout=2_000)
    qtbot.mouseClick(window.help_view.back_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(view.isVisible, timeout=2_000)

    _type(qtbot, view.user_box, "pc101")
    _type(qtbot, view.pin_box, PIN)
    _type(qtbot, view.pin_again_box, "24681358")
    qtbot.mouseClick(view.enrol_button, Qt.MouseButton.LeftButton)
    assert "different" in view.status.text()
    assert not (profile / "profile.json").exists()

    _type(qtbot, view.pin_box, "246813")  # shorter than the site's minimum of 8
    _type(qtbot, view.pin_again_box, "246813")
    qtbot.mouseClick(view.enrol_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "at least 8 digits" in view.status.text(), timeout=10_000)
    assert not (profile / "profile.json").exists()

    _type(qtbot, view.pin_box, PIN)
    _type(qtbot, view.pin_again_box, PIN)
    qtbot.mouseClick(view.enrol_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.session is not None, timeout=20_000)
    assert window.current_page() == "find" and not window.is_locked
    assert window.session.user_id == "pc101"
    saved = json.loads((profile / "profile.json").read_text())
    assert saved["sources"][0]["base_url"] == site.url  # type: ignore[attr-defined]
    assert saved["settings"]["idle_lock_minutes"] == 4
    assert saved["settings"]["team"] == "Bolton Street Triage"
    assert view.pin_box.text() == "" and view.pin_again_box.text() == ""


def test_an_existing_profile_is_unlocked_not_enrolled_again(
    qtbot: QtBot, tmp_path: Path, site: object, cohort_dir: Path, make_window: WindowFactory
) -> None:
    """Adding a second officer needs an enrolled user's PIN (add-user), not this screen."""
    profile = make_profile(tmp_path / "profile", cohort_dir)
    window = make_window(profile, site=site)
    assert window.first_run_view is None
    assert window.unlock_view.isVisible()

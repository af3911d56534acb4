"""Help → About shows the one version (package metadata), from the unlock screen too."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.version import version
from tests.conftest import TEST_PIN
from tests.gui.conftest import WindowFactory, unlock


def test_help_shows_the_package_version_before_and_after_unlock(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2_000)
    # F1 while locked: the keychain may be what is wrong.
    qtbot.keyClick(window.focusWidget() or window, Qt.Key.Key_F1)
    qtbot.waitUntil(window.help_view.isVisible, timeout=2_000)
    assert window.help_view.version_text.text() == f"Kerbside {version()}"
    assert window.help_view.version_text.accessibleName() == "Kerbside version"
    qtbot.mouseClick(window.help_view.back_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.unlock_view.isVisible, timeout=2_000)

    unlock(qtbot, window)
    assert window.help_button.accessibleName() == "Help and About"
    qtbot.mouseClick(window.help_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.help_view.isVisible, timeout=2_000)
    qtbot.mouseClick(window.help_view.back_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.search_view.isVisible, timeout=2_000)


def test_version_comes_from_package_metadata() -> None:
    from importlib.metadata import version as dist_version

    assert version() == dist_version("kerbside")


def test_check_this_tablet_shows_one_line_per_doctor_check(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    from app.services.doctor import run_checks

    window = make_window(gui_profile)
    window.show_help()
    view = window.help_view
    assert view.check_button.accessibleName() == "Check this tablet"
    with qtbot.waitSignal(view.checked, timeout=20_000) as done:
        qtbot.mouseClick(view.check_button, Qt.MouseButton.LeftButton)
    assert done.args == [False]  # the test keyring is no OS keychain; no central record
    expected = [r.name for r in run_checks(gui_profile)]
    names = [row.accessibleName() for row in view.check_rows]
    assert [n.split(":")[0] for n in names] == expected
    assert "Keychain: failed" in names and "SQLCipher: passed" in names
    keychain = view.check_rows[expected.index("Keychain")].text()
    assert "✗ Fail" in keychain and "What to do:" in keychain
    assert "failed: Keychain" in view.check_summary.text()


def test_the_unlock_screen_has_a_help_button_and_a_keychain_failure_offers_the_check(
    qtbot: QtBot,
    gui_profile: Path,
    make_window: WindowFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tablet has no F1: Help is a button on the unlock screen, and the "keychain not
    available" page offers "Check this tablet"."""
    import keyring
    import keyring.backends.fail

    window = make_window(gui_profile)
    unlock_view = window.unlock_view
    assert unlock_view.help_button.accessibleName() == "Help and About"
    qtbot.mouseClick(unlock_view.help_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.help_view.isVisible, timeout=2_000)
    qtbot.mouseClick(window.help_view.back_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(unlock_view.isVisible, timeout=2_000)

    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    keyring.set_keyring(keyring.backends.fail.Keyring())
    unlock_view.enter_pin(TEST_PIN)
    qtbot.waitUntil(lambda: unlock_view.showing_message() is not None, timeout=10_000)
    assert unlock_view.showing_message() == "The device keychain is not available"
    assert unlock_view.msg_check_button.isVisible()
    qtbot.mouseClick(unlock_view.msg_check_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.help_view.isVisible, timeout=2_000)

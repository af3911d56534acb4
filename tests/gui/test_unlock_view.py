"""Unlock, wrong PINs, the wipe screen, and the idle/hidden lock through the real window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.security import LockoutPolicy, Profile
from tests.conftest import TEST_PIN
from tests.gui.conftest import (
    USER,
    WindowFactory,
    enrol_against,
    enter_pin,
    make_profile,
    open_first_with_reason,
    type_search,
    unlock,
)
from tests.support.gui import on_screen, shown_text


def _platform_reports(state: Qt.ApplicationState) -> None:
    """The application's state changes as the platform would report it (every listener hears
    it, as on a tablet)."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    app.applicationStateChanged.emit(state)


def test_correct_pin_unlocks_to_search_with_focus(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    assert window.is_locked
    assert window.unlock_view.selected_user() == USER
    unlock(qtbot, window)
    assert window.session is not None and window.session.user_id == USER
    assert window.current_page() == "find"
    qtbot.waitUntil(window.search_view.box.hasFocus, timeout=2_000)


def test_keyboard_types_the_pin(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    window.unlock_view.setFocus()
    qtbot.keyClicks(window.unlock_view, TEST_PIN)
    assert on_screen(window.unlock_view, "PIN, 6 digits entered")
    assert TEST_PIN not in shown_text(qtbot, window.unlock_view, "PIN, 6 digits entered")  # masked
    qtbot.keyClick(window.unlock_view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.is_locked, timeout=10_000)


def test_wrong_pin_shows_attempts_left_and_stays_locked(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    enter_pin(qtbot, window, "135790")
    qtbot.waitUntil(lambda: "Wrong PIN" in window.unlock_view.status_text(), timeout=10_000)
    assert "9 attempts left" in window.unlock_view.status_text()
    assert window.is_locked and window.session is None
    assert window.unlock_view.pad_enabled()


def test_wrong_pin_delay_counts_down_with_the_pad_disabled(
    qtbot: QtBot, tmp_path: Path, make_window: WindowFactory
) -> None:
    policy = LockoutPolicy(max_failures=10, free_attempts=1, base_delay_s=2.0, max_delay_s=2.0)
    profile = make_profile(tmp_path / "p", None, lockout=policy)
    window = make_window(profile)
    enter_pin(qtbot, window, "135790")
    qtbot.waitUntil(lambda: "Try again in" in window.unlock_view.status_text(), timeout=10_000)
    assert "9 attempts left" in window.unlock_view.status_text()
    assert not window.unlock_view.pad_enabled()
    assert 0 < window.unlock_view.wait_remaining_s() <= 2.0
    # Taps during the wait do nothing.
    enter_pin(qtbot, window, TEST_PIN)
    assert window.is_locked
    qtbot.waitUntil(window.unlock_view.pad_enabled, timeout=5_000)
    assert "try again now" in window.unlock_view.status_text()
    unlock(qtbot, window)


def test_too_many_wrong_pins_show_the_wiped_screen(
    qtbot: QtBot, tmp_path: Path, make_window: WindowFactory
) -> None:
    policy = LockoutPolicy(max_failures=2, free_attempts=5, base_delay_s=0, max_delay_s=0)
    profile = make_profile(tmp_path / "p", None, lockout=policy)
    window = make_window(profile)
    enter_pin(qtbot, window, "135790")
    qtbot.waitUntil(lambda: "1 attempt left" in window.unlock_view.status_text(), timeout=10_000)
    enter_pin(qtbot, window, "135790")
    qtbot.waitUntil(lambda: window.unlock_view.showing_message() is not None, timeout=10_000)
    assert window.unlock_view.showing_message() == "This cache has been wiped"
    assert Profile.load(profile).wiped
    assert not (profile / "cache.db").exists()
    # A restart shows the same screen, not a PIN pad.
    again = make_window(profile)
    assert again.unlock_view.showing_message() == "This cache has been wiped"


def test_idle_lock_hides_patient_data_and_unlock_returns_to_the_same_place(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    hits = type_search(qtbot, window, alerted_person.family)
    assert any(h.id == alerted_person.id for h in hits)
    open_first_with_reason(qtbot, window, alerted_person.id)
    scroll = window.record_view.scroll_area.verticalScrollBar()
    scroll.setValue(scroll.maximum() // 2)
    position = scroll.value()

    window.idle.set_minutes(0.002)  # ~120 ms
    window.idle.arm()
    qtbot.waitUntil(lambda: window.is_locked, timeout=5_000)
    assert window.centralWidget().currentWidget() is window.unlock_view
    assert window.search_view.box.text() == ""
    assert window.search_view.hits() == []
    assert alerted_person.family not in window.windowTitle()

    window.idle.set_minutes(5)
    unlock(qtbot, window)
    assert window.record_view.patient_id == alerted_person.id
    assert window.current_page() == "find"
    assert window.record_view.scroll_area.verticalScrollBar().value() == position


def test_hidden_app_locks_at_once(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    type_search(qtbot, window, "a")
    # What the platform reports when the task switcher opens or the screen turns off.
    _platform_reports(Qt.ApplicationState.ApplicationHidden)
    assert window.is_locked
    assert window.search_view.hits() == []


def test_losing_the_focus_to_another_window_locks(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, monkeypatch
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    # The offscreen platform has no other application to take the foreground, so this stands
    # in for its answer when the grace period asks "is something else in front?".
    monkeypatch.setattr(window.idle, "_still_away", lambda: True)
    _platform_reports(Qt.ApplicationState.ApplicationActive)
    _platform_reports(Qt.ApplicationState.ApplicationInactive)
    qtbot.waitUntil(lambda: window.is_locked, timeout=3_000)


def test_a_focus_flicker_does_not_lock(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    _platform_reports(Qt.ApplicationState.ApplicationActive)
    _platform_reports(Qt.ApplicationState.ApplicationInactive)
    _platform_reports(Qt.ApplicationState.ApplicationActive)
    # Back at once: the grace period is called off, and only the idle timer (minutes) runs.
    assert not window.idle.leaving
    assert window.idle.remaining_ms() > 60_000
    assert not window.is_locked


def test_input_resets_the_idle_timer(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    idle = window.idle
    idle.set_minutes(10)
    idle.arm()
    qtbot.waitUntil(lambda: idle.remaining_ms() < idle.interval_ms - 1_000, timeout=5_000)
    before = idle.remaining_ms()
    qtbot.keyClick(window.search_view.box, Qt.Key.Key_A)
    assert idle.remaining_ms() > before  # the key press started the wait again
    assert not window.is_locked
    idle.set_minutes(0.001)  # 60 ms without input
    qtbot.waitUntil(lambda: window.is_locked, timeout=5_000)


def test_idle_minutes_come_from_the_profile(
    qtbot: QtBot, tmp_path: Path, cohort_dir: Path, make_window: WindowFactory
) -> None:
    profile = make_profile(tmp_path / "p", None, idle_lock_minutes=2)
    window = make_window(profile)
    unlock(qtbot, window)
    assert window.idle.interval_ms == 120_000
    assert window.idle.armed


def test_lock_keeps_the_draft_and_stops_sync_until_the_same_user_returns(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    first = window.sync_controller
    assert first is not None and window.sync_panel is not None
    window.start_unknown_person()
    form = window.encounter_form
    qtbot.keyClicks(form.description, "Tall, grey hoodie")
    qtbot.keyClicks(form.location, "Canal towpath")
    window.lock()
    assert window.sync_controller is None and window.sync_panel is None
    assert window.centralWidget().currentWidget() is window.unlock_view
    # The draft reached the encrypted cache when the form was hidden (crash-safe while locked).
    qtbot.waitUntil(lambda: form.draft_id() is not None, timeout=5_000)
    window.test_runner.wait_until_idle(5_000)
    from app.services.encounters import load_drafts

    assert window.session is not None and window.session.is_locked  # cache closed while locked
    unlock(qtbot, window)
    assert [d.draft_id for d in load_drafts(window.session)] == [form.draft_id()]
    assert window.encounter_form is form and window.current_page() == "encounter"
    assert form.description.toPlainText() == "Tall, grey hoodie"
    assert window.sync_controller is not None and window.sync_controller is not first
    assert window.sync_panel is not None


def test_a_revoked_device_is_wiped_during_sync_and_shows_why(
    qtbot: QtBot, tmp_path: Path, reference, make_window: WindowFactory
) -> None:
    profile = enrol_against(tmp_path / "p", reference)
    window = make_window(profile)
    unlock(qtbot, window)
    with qtbot.waitSignal(window.sync_finished, timeout=60_000) as finished:
        window.start_sync()
    assert finished.args[0].pulled > 0
    assert window.sync_summary_text().startswith("● Synced")
    reference.revoke(reference.client_id)
    with qtbot.waitSignal(window.locked, timeout=30_000):
        window.start_sync()
    assert window.is_locked and window.session is None and window.sync_controller is None
    assert window.unlock_view.showing_message() == "This cache has been wiped"
    assert "revoked" in window.unlock_view.status_text()
    assert Profile.load(profile).wiped
    assert not (profile / "cache.db").exists()

"""Every control has an accessible name (screen readers, voice control, UI automation), and
the laptop keyboard reaches the main actions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAccessible, QColor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from tests.gui.conftest import WindowFactory, open_first_with_reason, type_search, unlock

INTERACTIVE = (QAbstractButton, QLineEdit, QPlainTextEdit, QTextEdit, QComboBox, QAbstractItemView)


def _unnamed(window: QWidget) -> list[str]:
    """Visible interactive widgets with no accessible name (class and object name)."""
    out = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, INTERACTIVE) or not widget.isVisibleTo(window):
            continue
        if widget.parent() is not None and type(widget).__name__ == "QScrollBar":
            continue
        if not widget.accessibleName().strip():
            text = widget.text() if isinstance(widget, QAbstractButton | QLineEdit) else ""
            out.append(f"{type(widget).__name__}({widget.objectName() or text})")
    return out


# A name that reads as code, not as a label: snake_case or a dotted path ("police_incident_ref",
# "patient.nhs_number"), camelCase ("syncPanel"), or one all-lowercase word ("location"), where
# every label the officer reads starts with a capital ("Location", "NHS number", "Digit 1").
_CODE_LIKE = re.compile(r"_|^[a-z]+[A-Z]\w*$|^[a-z]+(?:[.\-][a-z]+)*$")


def _code_like_names(window: QWidget) -> list[str]:
    """Accessible names anywhere in the window, shown or not, that look like identifiers:
    the explicit name of every widget, and what assistive technology reads for each
    control (a button's text when it has no explicit name)."""
    out = []
    for widget in window.findChildren(QWidget):
        names = {widget.accessibleName().strip()}
        if isinstance(widget, INTERACTIVE):
            iface = QAccessible.queryAccessibleInterface(widget)
            if iface is not None:
                names.add(iface.text(QAccessible.Text.Name).strip())
        out += [f"{type(widget).__name__}: {n!r}" for n in names if n and _CODE_LIKE.search(n)]
    return out


def test_the_identifier_rule_flags_code_and_passes_labels() -> None:
    flagged = ["police_incident_ref", "patient.nhs_number", "location", "syncPanel", "face-to-face"]
    passed = ["Police incident reference", "NHS number", "Location", "Digit 1",
              "Call 0808 157 0997", "Age filter: 18–35", "User pc101", "Save · 4 to fix",
              "Start −15 min"]  # fmt: skip
    assert [n for n in flagged if not _CODE_LIKE.search(n)] == []
    assert [n for n in passed if _CODE_LIKE.search(n)] == []


def _small_targets(window: QWidget) -> list[str]:
    return [
        f"{type(w).__name__}:{w.accessibleName()}:{w.height()}"
        for w in window.findChildren(QAbstractButton)
        if w.isVisibleTo(window) and w.height() < 48
    ]


def test_no_interactive_widget_lacks_an_accessible_name_on_any_screen(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Any
) -> None:
    window = make_window(gui_profile)
    assert _unnamed(window) == []  # unlock screen
    assert _code_like_names(window) == []
    unlock(qtbot, window)
    type_search(qtbot, window, alerted_person.family)
    window.open_patient(alerted_person.id)  # the reason sheet
    assert _code_like_names(window) == []
    open_first_with_reason(qtbot, window, alerted_person.id)
    assert _unnamed(window) == []
    assert _code_like_names(window) == []
    assert _small_targets(window) == []
    window.start_encounter(alerted_person.id)
    qtbot.waitUntil(lambda: window.encounter_form.isVisible(), timeout=5_000)
    assert _unnamed(window) == []
    assert _code_like_names(window) == []  # every field, shown or not (unknown person, s136)
    window.show_page("sync")
    qtbot.waitUntil(lambda: window.sync_panel.isVisible(), timeout=5_000)
    window.runner.wait_until_idle(10_000)
    assert _unnamed(window) == []
    assert _code_like_names(window) == []
    window.lock()
    assert _unnamed(window) == []
    assert _code_like_names(window) == []


def test_keyboard_shortcuts_reach_the_main_actions(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Any
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    window.activateWindow()
    type_search(qtbot, window, alerted_person.family)
    open_first_with_reason(qtbot, window, alerted_person.id)
    keys = Qt.KeyboardModifier.ControlModifier
    # Ctrl+N: an encounter about the open record's person.
    qtbot.keyClick(window, Qt.Key.Key_N, keys)
    assert window.current_page() == "encounter"
    assert window.encounter_form.data()["patient"] == {"id": alerted_person.id}
    # Esc: back to Find (the form stays, with its work).
    form = window.encounter_form
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.current_page() == "find" and window.encounter_form is form
    # Ctrl+3 / Ctrl+2: the Sync and Encounter pages.
    qtbot.keyClick(window, Qt.Key.Key_3, keys)
    assert window.current_page() == "sync"
    qtbot.keyClick(window, Qt.Key.Key_2, keys)
    assert window.current_page() == "encounter"
    # Ctrl+F: the search box, focused, from anywhere.
    qtbot.keyClick(window, Qt.Key.Key_F, keys)
    assert window.current_page() == "find"
    qtbot.waitUntil(window.search_view.box.hasFocus, timeout=2_000)
    # Ctrl+L: lock at once; shortcuts do nothing while locked.
    qtbot.keyClick(window, Qt.Key.Key_L, keys)
    assert window.is_locked
    qtbot.keyClick(window, Qt.Key.Key_N, keys)
    assert window.is_locked and QApplication.focusWidget() is not window.search_view.box


def test_f5_syncs_now(qtbot: QtBot, gui_profile: Path, make_window: WindowFactory) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    # This profile has no central record, so the sync fails, and the header says so.
    with qtbot.waitSignal(window.sync_controller.sync_failed, timeout=10_000):
        qtbot.keyClick(window, Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: "failed" in window.sync_summary_text(), timeout=5_000)


class _WindowSpy(QObject):
    """Notes every window other than `main` that is shown: a widget shown before it has a
    parent flashes up as a window of its own and takes the activation from the main one."""

    def __init__(self, main: QWidget) -> None:
        super().__init__()
        self._main = main
        self.shown: list[str] = []

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.Show
            and isinstance(watched, QWidget)
            and watched.isWindow()
            and watched is not self._main
        ):
            self.shown.append(f"{type(watched).__name__}({watched.accessibleName()})")
        return False


def _press(window: QWidget, key: Qt.Key, mods: Any = Qt.KeyboardModifier.NoModifier) -> None:
    """A key as the platform delivers it: to the window, then to its focus widget, with
    shortcuts matched on the way (the way a window that lost activation loses them)."""
    QTest.keyClick(window.windowHandle(), key, mods)
    QApplication.processEvents()


def _focus() -> str:
    widget = QApplication.focusWidget()
    return f"{type(widget).__name__}({widget.accessibleName()})" if widget else "nowhere"


def test_shortcuts_and_focus_survive_a_failed_sync_the_form_and_an_idle_lock(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    ctrl = Qt.KeyboardModifier.ControlModifier
    window = make_window(gui_profile)
    spy = _WindowSpy(window)
    QApplication.instance().installEventFilter(spy)
    try:
        unlock(qtbot, window)
        box = window.search_view.box
        assert box.hasFocus(), _focus()
        # Ctrl+N: a blank form, the focus on its first field (the NHS number).
        _press(window, Qt.Key.Key_N, ctrl)
        form = window.encounter_form
        assert window.current_page() == "encounter" and form is not None
        assert QApplication.activeWindow() is window, spy.shown
        assert form.nhs_number.hasFocus(), _focus()
        # F5 on the Sync page: this profile has no central record, so the run fails. The
        # focus goes from "Sync now" to "Cancel sync" and back, never down the chain.
        _press(window, Qt.Key.Key_3, ctrl)
        panel = window.sync_panel
        assert window.current_page() == "sync" and panel.sync_button.hasFocus(), _focus()
        with qtbot.waitSignal(window.sync_controller.sync_failed, timeout=10_000):
            _press(window, Qt.Key.Key_F5)
        qtbot.waitUntil(lambda: panel.sync_button.isEnabled(), timeout=5_000)
        assert panel.sync_button.hasFocus(), _focus()
        _press(window, Qt.Key.Key_F, ctrl)
        assert window.current_page() == "find" and box.hasFocus(), _focus()
        _press(window, Qt.Key.Key_2, ctrl)
        assert window.current_page() == "encounter" and form.nhs_number.hasFocus(), _focus()
        # The tablet idles and locks on the form; unlocking returns to the same field.
        window.idle.set_minutes(0.002)
        window.idle.arm()
        qtbot.waitUntil(lambda: window.is_locked, timeout=5_000)
        window.idle.set_minutes(5)
        unlock(qtbot, window)
        assert window.current_page() == "encounter" and window.encounter_form is form
        assert QApplication.activeWindow() is window
        assert form.nhs_number.hasFocus(), _focus()
        # Every shortcut still answers: Ctrl+F, F5, Ctrl+L.
        _press(window, Qt.Key.Key_F, ctrl)
        assert window.current_page() == "find" and box.hasFocus(), _focus()
        with qtbot.waitSignal(window.sync_controller.sync_failed, timeout=10_000):
            _press(window, Qt.Key.Key_F5)
        assert box.hasFocus(), _focus()
        _press(window, Qt.Key.Key_L, ctrl)
        assert window.is_locked
        unlock(qtbot, window)
        assert window.current_page() == "find" and box.hasFocus(), _focus()
        _press(window, Qt.Key.Key_3, ctrl)
        assert window.current_page() == "sync"
        assert spy.shown == []
    finally:
        QApplication.instance().removeEventFilter(spy)


def _shows_focus_ring(button: QWidget) -> bool:
    """The left border, half-way down, is drawn in the theme's focus colour."""
    from app.ui import theme

    image = button.grab().toImage()
    want = QColor(theme.current().focus)
    y = image.height() // 2
    return any(
        max(
            abs(got.red() - want.red()),
            abs(got.green() - want.green()),
            abs(got.blue() - want.blue()),
        )
        < 24
        for got in (QColor(image.pixel(x, y)) for x in range(3))
    )


def test_the_focus_ring_shows_on_primary_and_chosen_buttons_day_and_night(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    try:
        for night in (False, True):
            window.set_night_mode(night)
            window.go_to_page("sync")
            sync_now = window.sync_panel.sync_button
            assert sync_now.hasFocus() and _shows_focus_ring(sync_now), _focus()
            window.start_unknown_person()
            chosen = window.encounter_form.person_mode.button("unknown")
            chosen.setFocus()
            assert chosen.isChecked() and _shows_focus_ring(chosen)
            window.encounter_form.person_mode.button("nhs").setFocus()
            assert not _shows_focus_ring(chosen)  # the ring follows the focus, nothing else
    finally:
        window.set_night_mode(False)  # the theme is the application's: leave it as found

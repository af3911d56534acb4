"""Every control has an accessible name (screen readers, voice control, UI automation), and
the laptop keyboard reaches the main actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
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
    unlock(qtbot, window)
    type_search(qtbot, window, alerted_person.family)
    open_first_with_reason(qtbot, window, alerted_person.id)
    assert _unnamed(window) == []
    assert _small_targets(window) == []
    window.start_encounter(alerted_person.id)
    qtbot.waitUntil(lambda: window.encounter_form.isVisible(), timeout=5_000)
    assert _unnamed(window) == []
    window.show_page("sync")
    qtbot.waitUntil(lambda: window.sync_panel.isVisible(), timeout=5_000)
    window.runner.wait_until_idle(10_000)
    assert _unnamed(window) == []
    window.lock()
    assert _unnamed(window) == []


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

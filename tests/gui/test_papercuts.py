"""Papercuts an officer trips over (issue 11 item 10), each pinned by a test."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.ui import theme
from tests.gui.conftest import Person, WindowFactory, enter_pin, type_search, unlock


def _sheet(qtbot: QtBot, window: object, person: Person) -> None:
    type_search(qtbot, window, person.family)
    window.open_patient(person.id)  # type: ignore[attr-defined]
    qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)  # type: ignore[attr-defined]


def test_enter_confirms_the_preselected_reason(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, alerted_person: Person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    _sheet(qtbot, window, alerted_person)
    first = window.record_view.reason_sheet.buttons()[0]
    qtbot.waitUntil(first.hasFocus, timeout=3_000)
    qtbot.keyClick(first, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.record_view.shown_record_id() == alerted_person.id, timeout=3_000
    )


def test_portrait_reason_buttons_sit_in_thumb_reach_and_primary_is_not_smaller(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, alerted_person: Person
) -> None:
    window = make_window(gui_profile, size=(800, 1280))
    unlock(qtbot, window)
    _sheet(qtbot, window, alerted_person)
    buttons = window.record_view.reason_sheet.buttons()
    for button in buttons:
        y = button.mapTo(window, button.rect().topLeft()).y()
        assert y > window.height() / 2, f"{button.text()!r} at {y} of {window.height()}"
    primary, *others = buttons
    assert primary.property("role") == "primary"
    assert all(primary.height() >= other.height() for other in others)
    assert primary.font().pointSizeF() >= max(o.font().pointSizeF() for o in others)


def test_the_encounter_pages_primary_button_is_not_smaller(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    window.show_page("encounter")
    qtbot.waitUntil(window.new_form_button.isVisible, timeout=3_000)
    assert window.new_form_button.height() >= window.unknown_button.height()


def test_night_mode_is_dim() -> None:
    """No large light areas and no full-white text: dark-adapted eyes on a night shift."""
    night = theme.NIGHT_PALETTE
    for name in ("bg", "surface", "surface_alt", "selection", "primary"):
        assert theme.luminance(getattr(night, name)) < 0.1, name
    for name in ("text", "on_primary", "link"):
        assert theme.luminance(getattr(night, name)) < 0.9, f"{name} is (near) full white"
    for kind, colours in night.alerts.items():
        assert theme.luminance(colours.bg) < 0.35, kind


def test_keys_typed_straight_after_unlock_reach_the_search_box(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path
) -> None:
    window = make_window(gui_profile)
    enter_pin(qtbot, window)
    qtbot.keyClicks(window.unlock_view, "smi")  # while the PIN is being checked
    qtbot.waitUntil(lambda: not window.is_locked, timeout=10_000)
    assert window.search_view.box.text() == "smi"
    assert window.search_view.box.hasFocus()

"""Never clipped (issue 11 item 6): on every screen, at 1280x800 and 800x1280, no visible
label or button shows less than its text. Seen before: the s136 place-of-safety buttons read
"alth-based place of saf", "ergency departm" and "ice stat" in portrait.

A one-line label or a button is clipped when its text (with the style's padding, which the
size hint includes) is wider than the box it got; a wrapped label when its text needs more
height at its width than it has.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QLineEdit, QWidget
from pytestqt.qtbot import QtBot

from app.ui.widgets import PatientText
from tests.gui.conftest import Person, WindowFactory, open_first_with_reason, type_search, unlock
from tests.support.gui import clipped

SIZES = ((1280, 800), (800, 1280))


def _screens(qtbot: QtBot, window: Any, person: Person) -> list[tuple[str, Any]]:
    """Drive the window through each screen; yield (name, callable that shows it)."""

    def find() -> None:
        window.show_page("find")
        type_search(qtbot, window, person.family)

    def sheet() -> None:
        find()
        window.open_patient(person.id)
        qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)

    def record() -> None:
        find()
        open_first_with_reason(qtbot, window, person.id)

    def form() -> None:
        window.start_encounter(person.id)
        f = window.encounter_form
        # The header's facts are read on a worker: measure the form once they are in and
        # laid out (a label that stays clipped still fails, when the wait runs out).
        qtbot.waitUntil(lambda: "Born" in f.identity.facts.text(), timeout=5_000)
        qtbot.waitUntil(lambda: not clipped(f.identity), timeout=5_000)
        f.section_136.button("yes").click()
        f.health_professional_consulted.button("yes").click()

    def sync() -> None:
        window.show_page("sync")

    return [("search", find), ("reason sheet", sheet), ("record", record),
            ("encounter form with s136", form), ("sync", sync)]  # fmt: skip


@pytest.mark.parametrize("text", ["normal", "larger"])
@pytest.mark.parametrize("size", SIZES, ids=["landscape", "portrait"])
def test_no_text_is_clipped_on_any_screen(
    qtbot: QtBot,
    make_window: WindowFactory,
    gui_profile: Path,
    alerted_person: Person,
    size: tuple[int, int],
    text: str,
) -> None:
    window = make_window(gui_profile, size=size)
    unlock(qtbot, window)
    window.set_larger_text(text == "larger")
    try:
        problems = []
        for name, show in _screens(qtbot, window, alerted_person):
            show()
            QApplication.processEvents()
            problems += [f"{name}: {p}" for p in clipped(window)]
            if os.environ.get("KERBSIDE_CLIP_SHOTS"):  # to look at, e.g. with larger text
                shot = f"{name.split()[0]}-{text}-{size[0]}x{size[1]}.png"
                window.grab().save(str(Path(os.environ["KERBSIDE_CLIP_SHOTS"]) / shot))
        assert not problems, "\n".join(problems)
    finally:
        window.set_larger_text(False)


@pytest.mark.parametrize("size", SIZES, ids=["landscape", "portrait"])
def test_the_top_bar_fits_its_fullest_state(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, size: tuple[int, int]
) -> None:
    """Records waiting and refused at once, with two-digit counts, in night mode: the state
    an officer most needs to read. In portrait it clipped to "1 waiting to sen" and
    "1 refuse" once a fifth button joined the bar."""
    window = make_window(gui_profile, size=size)
    unlock(qtbot, window)
    window.set_night_mode(True)
    try:
        window.sync_summary.setText("◌ 12 waiting to send")
        window.refused_badge.setText("⚠ 12 refused")
        window.refused_badge.show()
        QApplication.processEvents()
        problems = [p for p in clipped(window) if "waiting" in p or "refused" in p or "Day" in p]
        assert not problems, "\n".join(problems)
    finally:
        window.set_night_mode(False)


def test_larger_text_scales_the_body_text_and_survives_a_restart(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path
) -> None:
    """The setting (issue 11 item 10) is kept in the profile like night mode: it is on again
    after a restart, before the PIN is entered."""
    from app.ui import theme

    window = make_window(gui_profile, size=SIZES[0])
    unlock(qtbot, window)
    sample = PatientText("What helps")
    window.record_view.layout().addWidget(sample)  # a parent before show: never a window
    sample.show()
    normal = sample.fontInfo().pointSize()
    try:
        window.larger_text_button.click()
        QApplication.processEvents()
        assert window.larger_text() and window.larger_text_button.isChecked()
        larger = sample.fontInfo().pointSize()
        assert larger == round(normal * theme.LARGER_TEXT), (normal, larger)
        assert QApplication.font().pointSize() == round(theme.BODY_PT * theme.LARGER_TEXT)
        window.close()
        theme.apply(QApplication.instance(), theme.DAY, text_scale=1.0)  # as a fresh process
        again = make_window(gui_profile, size=SIZES[0])
        assert again.larger_text_button.isChecked(), "larger text lost on restart"
        assert QApplication.font().pointSize() == round(theme.BODY_PT * theme.LARGER_TEXT)
        again.set_larger_text(False)
        assert QApplication.font().pointSize() == theme.BODY_PT
        assert not again.larger_text()
    finally:
        theme.apply(QApplication.instance(), theme.DAY, text_scale=1.0)


JARGON = re.compile(
    r"\b(token|endpoint|cache|cached|centre|fhir|bundle|resource|payload|json|http)\b"
    r"|\b[A-Z][a-z]+/[\w-]+\b"  # FHIR references such as Patient/abc
    r"|\b[A-Z][a-zA-Z]+\.[a-z]\w*(\.[a-z]\w*)*\b"  # FHIR paths such as Encounter.subject
    r"|(?<![\w-])\d{4}-\d{2}-\d{2}(?![\w-])",  # ISO dates (not inside a reference)
    re.IGNORECASE,
)


ISO_DATE = re.compile(r"(?<![\w-])\d{4}-\d{2}-\d{2}(?![\w-])")


def jargon(root: QWidget) -> list[str]:
    """Visible user-facing text with technical words, FHIR paths or ISO dates in it."""
    found = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible():
            continue
        texts = [widget.accessibleName()]
        if isinstance(widget, QLabel | QAbstractButton):
            texts.append(widget.text())
        if isinstance(widget, QLineEdit):
            texts.append(widget.placeholderText())
        # Patient text is the record's own words ("Larch Medical Centre"): dates only.
        pattern = ISO_DATE if isinstance(widget, PatientText) else JARGON
        for text in texts:
            match = pattern.search(text or "")
            if match:
                found.append(f"{type(widget).__name__} {text[:60]!r}: {match.group(0)!r}")
    return found


@pytest.mark.parametrize("size", SIZES[:1], ids=["landscape"])
def test_plain_english_and_uk_dates_on_every_screen(
    qtbot: QtBot,
    make_window: WindowFactory,
    gui_profile: Path,
    alerted_person: Person,
    size: tuple[int, int],
) -> None:
    window = make_window(gui_profile, size=size)
    problems = [f"unlock: {p}" for p in jargon(window)]
    unlock(qtbot, window)
    for name, show in _screens(qtbot, window, alerted_person):
        show()
        QApplication.processEvents()
        problems += [f"{name}: {p}" for p in jargon(window)]
    assert not problems, "\n".join(sorted(set(problems)))

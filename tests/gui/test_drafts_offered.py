"""A draft is offered right after unlock and names whom it is about (issue 11 item 7)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.exceptions import TimeoutError as NotInTime
from pytestqt.qtbot import QtBot

from app.services.encounters import save_draft
from app.services.session import unlock as open_session
from tests.conftest import TEST_PIN
from tests.gui.conftest import USER, Person, WindowFactory, unlock


def test_a_draft_is_offered_at_unlock_with_its_person(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, alerted_person: Person
) -> None:
    with open_session(gui_profile, USER, TEST_PIN) as session:
        save_draft(session, "draft-1", {"patient": {"id": alerted_person.id}, "location": "Park"})
    window = make_window(gui_profile)
    unlock(qtbot, window)
    try:  # looked for on a worker, right after unlock
        qtbot.waitUntil(window.draft_bar.isVisible, timeout=5_000)
    except NotInTime:
        raise AssertionError("the draft waits until someone taps New encounter") from None
    y, m, d = alerted_person.birth_date.split("-")
    text = window.draft_bar_text.text()
    assert alerted_person.family in text and f"born {d}/{m}/{y}" in text, text
    qtbot.mouseClick(window.draft_resume_button, Qt.MouseButton.LeftButton)
    form = window.encounter_form
    assert form is not None
    qtbot.waitUntil(lambda: form.data().get("patient") == {"id": alerted_person.id}, timeout=5_000)
    assert form.identity.isVisible() and form.identity.patient_id == alerted_person.id
    # The name and facts come from the cache, read on a worker.
    qtbot.waitUntil(lambda: alerted_person.family in form.identity.name.text(), timeout=5_000)
    assert "Person picked before" not in form.patient_name.text()
    assert not window.draft_bar.isVisible()

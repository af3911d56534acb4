"""Confidence on scene (issue 11 items 4 and 8): weak matches look weak and are never opened by
Enter; every result shows sex; a child's record says so and the police station is ruled out
before Save, not after it. Real window, real SQLCipher cohort."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.services.search import WEAK_SCORE
from tests.gui.conftest import Person, WindowFactory, open_first_with_reason, type_search, unlock

LEFT = Qt.MouseButton.LeftButton


def _child(cohort_dir: Path) -> dict[str, Any]:
    today = date.today()
    for line in (cohort_dir / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        born = patient.get("birthDate", "")
        if len(born) == 10 and (today.year - int(born[:4])) in range(12, 17):
            return patient
    raise AssertionError("the cohort has no child aged 12-16")


def test_weak_matches_are_labelled_and_never_preselected(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, alerted_person: Person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    view = window.search_view
    hits = type_search(qtbot, window, "mary smith")  # Smiths, but no Mary: nothing close
    assert hits and hits[0].score < WEAK_SCORE
    assert view.notice.isVisible() and "No close match" in view.notice.text()
    assert view.highlighted_id() is None, "a weak match was preselected"
    spoken = view.model.index(0).data(Qt.ItemDataRole.AccessibleTextRole)
    assert spoken.startswith("Weak match: ")
    view.box.setFocus()
    qtbot.keyClick(view.box, Qt.Key.Key_Return)
    assert not window.record_view.showing_reason_sheet(), "Enter opened a weak match"
    assert window.record_view.shown_id() is None

    hits = type_search(qtbot, window, f"{alerted_person.given} {alerted_person.family}")
    assert hits[0].id == alerted_person.id and hits[0].score >= WEAK_SCORE
    assert view.highlighted_id() == alerted_person.id
    assert "No close match" not in view.notice.text() or not view.notice.isVisible()
    for row in range(len(hits)):
        spoken = view.model.index(row).data(Qt.ItemDataRole.AccessibleTextRole)
        assert any(s in spoken for s in ("Female", "Male", "Other", "Sex not recorded")), spoken


def test_a_child_has_a_badge_and_no_police_station_option(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, cohort_dir: Path
) -> None:
    child = _child(cohort_dir)
    window = make_window(gui_profile)
    unlock(qtbot, window)
    type_search(qtbot, window, child["birthDate"])
    open_first_with_reason(qtbot, window, child["id"])
    assert window.record_view.identity.is_child()
    assert window.record_view.identity.child_badge.isVisible()

    qtbot.mouseClick(window.record_view.encounter_button, LEFT)
    form = window.encounter_form
    assert form is not None and form.identity.patient_id == child["id"]
    qtbot.waitUntil(form.identity.is_child, timeout=5_000)  # the birth date, read on a worker
    form.section_136.button("yes").click()
    police = form.place_of_safety.button("police-station")
    assert not police.isEnabled(), "a police station offered for a child"
    assert form.child_note.isVisible() and "under 18" in form.child_note.text()
    assert form.place_of_safety.button("hbpos").isEnabled()


def test_an_unknown_person_who_looks_under_18_rules_out_the_police_station(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    window.start_unknown_person()
    form = window.encounter_form
    assert form is not None
    form.section_136.button("yes").click()
    form.apparent_age.set_value(30)
    form.place_of_safety.button("police-station").click()
    assert form.place_of_safety.value() == "police-station"
    form.apparent_age.set_value(16)  # a change as any other: the rules run again
    assert not form.place_of_safety.button("police-station").isEnabled()
    assert form.place_of_safety.value() is None, "the child's police station stayed chosen"


def _nhs_number(patient: dict[str, Any]) -> str | None:
    for ident in patient.get("identifier", []):
        if ident.get("system") == "https://fhir.nhs.uk/Id/nhs-number":
            return str(ident["value"])
    return None


def test_a_typed_nhs_number_of_a_cached_child_rules_out_the_police_station(
    qtbot: QtBot, make_window: WindowFactory, gui_profile: Path, cohort_dir: Path
) -> None:
    """The form asks the cache (on a worker) whom a complete NHS number names; the rule
    follows the answer, and a number changed afterwards is asked about again."""
    child = _child(cohort_dir)
    number = _nhs_number(child)
    assert number is not None, "the cohort's child has no NHS number"
    window = make_window(gui_profile)
    unlock(qtbot, window)
    window.start_unknown_person()
    form = window.encounter_form
    assert form is not None
    form.section_136.button("yes").click()
    form.person_mode.button("nhs").click()
    police = form.place_of_safety.button("police-station")
    form.nhs_number.setText(number[:9])
    assert police.isEnabled()
    form.nhs_number.setText(number)
    qtbot.waitUntil(lambda: not police.isEnabled(), timeout=5_000)
    assert form.child_note.isVisible()
    form.nhs_number.setText(number[:9])  # no longer a whole number: nobody named
    assert police.isEnabled() and not form.child_note.isVisible()

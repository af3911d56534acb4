"""A refused or waiting record is never hidden behind "Synced" (hazard H8).

The real window against the real central record on loopback: after a clean sync the header
says "Synced"; a record saved and not yet sent makes it say how many wait; a record the
central record refuses (its person removed centrally) puts a red count in the header, and the
header never says "Synced" while it stands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.gui.conftest import WindowFactory, enrol_against, unlock
from tests.support.gui import fill_encounter, save_encounter


def _sync(qtbot: QtBot, window: Any) -> Any:
    with qtbot.waitSignal(window.sync_finished, timeout=60_000) as finished:
        window.start_sync()
    return finished.args[0]


def test_the_header_never_says_synced_beside_a_waiting_or_refused_record(
    qtbot: QtBot, tmp_path: Path, reference: Any, make_window: WindowFactory, cohort_dir: Path
) -> None:
    profile = enrol_against(tmp_path / "p", reference)
    window = make_window(profile)
    unlock(qtbot, window)
    assert _sync(qtbot, window).pulled > 0
    assert window.sync_summary_text().startswith("● Synced")

    shown: list[str] = []  # every text the header shows from here on
    window.sync_summary_changed.connect(shown.append)
    patient = json.loads((cohort_dir / "Patient.ndjson").read_text().splitlines()[3])
    window.start_encounter(patient["id"])
    fill_encounter(qtbot, window.encounter_form, incident="WMP-1", narrative="Synthetic.")
    save_encounter(qtbot, window)
    # The counts are read on a worker after the save: until then the header claims nothing.
    qtbot.waitUntil(lambda: "1 waiting" in window.sync_summary_text(), timeout=10_000)
    assert shown and not [text for text in shown if "Synced" in text], shown

    with reference.session(admin=True) as http:
        http.delete(f"{reference.base_url}/Patient/{patient['id']}", timeout=30).raise_for_status()
    report = _sync(qtbot, window)
    assert report.rejected == 1
    text = window.sync_summary_text()
    assert "Synced" not in text and "complete" not in text.lower(), text
    assert not [text for text in shown if "Synced" in text], shown
    assert window.refused_badge.isVisible()
    assert window.refused_badge.text() == "⚠ 1 refused"
    qtbot.mouseClick(window.refused_badge, Qt.MouseButton.LeftButton)
    assert window.current_page() == "sync"


def test_correcting_a_record_whose_person_is_gone_goes_straight_to_picking_them_again(
    qtbot: QtBot, tmp_path: Path, reference: Any, make_window: WindowFactory, cohort_dir: Path
) -> None:
    """Issue 11 item 5: "Review and correct" on a record refused because its person was
    removed centrally opens the form and takes the officer to search for the person; the
    next result tapped becomes the record's person (the form's own person picker)."""
    profile = enrol_against(tmp_path / "p", reference)
    window = make_window(profile)
    unlock(qtbot, window)
    _sync(qtbot, window)
    people = [json.loads(line) for line in (cohort_dir / "Patient.ndjson").read_text().splitlines()]
    gone, other = people[3], people[5]
    window.start_encounter(gone["id"])
    fill_encounter(qtbot, window.encounter_form, incident="WMP-2", narrative="Synthetic.")
    save_encounter(qtbot, window)
    with reference.session(admin=True) as http:
        http.delete(f"{reference.base_url}/Patient/{gone['id']}", timeout=30).raise_for_status()
    assert _sync(qtbot, window).rejected == 1
    window.show_page("sync")
    panel = window.sync_panel
    assert panel is not None
    qtbot.waitUntil(lambda: len(panel.rejected_rows) == 1, timeout=10_000)
    (row,) = panel.rejected_rows
    qtbot.mouseClick(row.correct_button, Qt.MouseButton.LeftButton)
    form = window.encounter_form
    qtbot.waitUntil(lambda: window.current_page() == "find", timeout=10_000)
    assert form.title.text() == "Correct a refused record"
    assert "pick the person again" in form.draft_status.text().lower()
    window.open_patient(other["id"])  # as a tap on the result
    assert window.current_page() == "encounter"
    assert window.encounter_form is form
    assert form.data()["patient"] == {"id": other["id"]}
    assert form.identity.patient_id == other["id"]

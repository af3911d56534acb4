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

    patient = json.loads((cohort_dir / "Patient.ndjson").read_text().splitlines()[3])
    window.start_encounter(patient["id"])
    fill_encounter(qtbot, window.encounter_form, incident="WMP-1", narrative="Synthetic.")
    save_encounter(qtbot, window)
    text = window.sync_summary_text()
    assert "Synced" not in text and "1 waiting" in text, text

    with reference.session(admin=True) as http:
        http.delete(f"{reference.base_url}/Patient/{patient['id']}", timeout=30).raise_for_status()
    report = _sync(qtbot, window)
    assert report.rejected == 1
    text = window.sync_summary_text()
    assert "Synced" not in text and "complete" not in text.lower(), text
    assert window.refused_badge.isVisible()
    assert window.refused_badge.text() == "⚠ 1 refused"
    qtbot.mouseClick(window.refused_badge, Qt.MouseButton.LeftButton)
    assert window.current_page() == "sync"

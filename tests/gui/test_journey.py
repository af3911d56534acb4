"""The officer's whole shift through the real window, against a real central record on
loopback: unlock (after a wrong PIN), sync the cohort, find a person despite a typo, open
their record (audited), record an encounter, lose the signal and record another (with an idle
lock in the middle of the form), get the signal back, sync, and see both accepted by the
centre; then a record the centre refuses, shown with its reason.

Everything is driven as an officer would: taps on the buttons found by their accessible
names, typing into the fields; state is read back from what the window shows, from the cache
through its own connection, and from the server over FHIR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QApplication,
    QLineEdit,
)
from pytestqt.qtbot import QtBot

from app.security import LockoutPolicy
from app.services.records import OPEN_RECORD_ACTION
from tests.gui.conftest import Person, WindowFactory, enrol_against
from tests.support.gui import (
    LEFT,
    fill_encounter,
    named,
    other_patient,
    pin,
    save_encounter,
    search,
    server_encounters,
    sync_now,
    tap,
    tap_result,
    today_states,
    type_into,
    unlock,
)

# One free wrong PIN would hide the delay: the first wrong PIN here costs one second.
LOCKOUT = LockoutPolicy(max_failures=10, free_attempts=1, base_delay_s=1.0, max_delay_s=1.0)


def _typo(word: str) -> str:
    """Swap two letters in the middle, as a hurried thumb does."""
    i = len(word) // 2
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


# -- the journey --------------------------------------------------------------------------------


def test_a_shift_from_unlock_to_sync_through_the_window(
    qtbot: QtBot,
    tmp_path: Path,
    reference: Any,
    cohort_dir: Path,
    alerted_person: Person,
    make_window: WindowFactory,
) -> None:
    profile = enrol_against(tmp_path / "profile", reference, lockout=LOCKOUT)
    window = make_window(profile)

    # A wrong PIN: a clear message, the attempts left, a delay with the pad disabled.
    pin(qtbot, window, "135790")
    qtbot.waitUntil(lambda: "Wrong PIN" in window.unlock_view.status_text(), timeout=10_000)
    status = window.unlock_view.status_text()
    assert "9 attempts left" in status and "Try again in 1 s" in status, status
    assert not window.unlock_view.pad_enabled() and window.is_locked
    qtbot.waitUntil(window.unlock_view.pad_enabled, timeout=5_000)
    unlock(qtbot, window)
    assert window.current_page() == "find"

    # Start of shift: pull the team's cohort.
    report = sync_now(qtbot, window)
    assert not isinstance(report, str), f"first sync failed: {report}"
    assert report.pulled > 0

    # On scene: a typo still finds the person; opening the record asks why and is audited.
    tap(qtbot, window, "Find page")
    typed = f"{alerted_person.given} {_typo(alerted_person.family)}"
    assert _typo(alerted_person.family) != alerted_person.family
    hits = search(qtbot, window, typed)
    assert alerted_person.id in [h.id for h in hits[:3]]
    tap_result(qtbot, window, alerted_person.id)
    qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)
    tap(qtbot, window.record_view, "Reason: Street triage: person in crisis")
    qtbot.waitUntil(lambda: window.record_view.patient_id == alerted_person.id, timeout=5_000)
    assert window.record_view.alert_bands(), "the alerts are not shown first"
    store = window.session.open_store()
    try:
        audited = [
            e
            for e in store.audit_entries()
            if e.patient_id == alerted_person.id and e.action == OPEN_RECORD_ACTION
        ]
    finally:
        store.close()
    assert audited and audited[0].reason == "Street triage: person in crisis"
    assert alerted_person.family not in window.windowTitle()

    # Record an encounter about this person.
    tap(qtbot, window.record_view, "Record encounter")
    assert window.current_page() == "encounter"
    fill_encounter(
        qtbot,
        window.encounter_form,
        incident="WMP-1001",
        narrative="Calmer after talking; crisis team to call back.",
    )
    first = save_encounter(qtbot, window)

    # The signal goes: the centre is unreachable, and sync says so without losing anything.
    reference.stop()
    failed = sync_now(qtbot, window, timeout=60_000)
    assert isinstance(failed, str) and "central record" in failed, failed
    assert window.sync_controller.connectivity == "offline"
    assert today_states(qtbot, window, lambda s: s == ["waiting"]) == ["waiting"]

    # A second encounter, offline; the tablet idles and locks half-way, the draft is kept.
    tap(qtbot, window, "Find page")
    tap(qtbot, window.record_view, "Record encounter")
    form = window.encounter_form
    type_into(qtbot, form, "Location", "Canal towpath")
    window.idle.set_minutes(0.002)  # ~120 ms of no input
    window.idle.arm()
    qtbot.waitUntil(lambda: window.is_locked, timeout=5_000)
    assert window.centralWidget().currentWidget() is window.unlock_view
    assert window.search_view.hits() == []
    window.idle.set_minutes(5)
    unlock(qtbot, window)
    assert window.current_page() == "encounter" and window.encounter_form is form
    assert QApplication.activeWindow() is window  # still the active window: shortcuts work
    assert named(qtbot, form, (QLineEdit,), "Location").text() == "Canal towpath"
    type_into(qtbot, form, "Police incident reference", "WMP-1002")
    type_into(qtbot, form, "Presenting situation", "Found again, cold and wet")
    tap(qtbot, form, "Outcome: Referred to crisis team")
    type_into(qtbot, form, "Narrative", "Taken home by a friend.")
    second = save_encounter(qtbot, window)
    assert today_states(qtbot, window, lambda s: s == ["waiting", "waiting"])

    # Back at base: the centre answers again; one sync sends both, exactly once.
    reference.start()
    report = sync_now(qtbot, window)
    assert not isinstance(report, str), f"sync after reconnecting failed: {report}"
    assert report.pushed == 2 and report.rejected == 0
    assert today_states(qtbot, window, lambda s: s == ["sent", "sent"]) == ["sent", "sent"]
    for client_id in (first, second):
        held = server_encounters(reference, client_id)
        assert len(held) == 1, f"{len(held)} copies of {client_id} on the server"
        assert held[0]["subject"]["reference"] == f"Patient/{alerted_person.id}"

    # A record the centre refuses: its person was removed centrally before it was sent.
    gone_id, gone_nhs = other_patient(cohort_dir, alerted_person.id)
    tap(qtbot, window, "Encounter page")
    tap(qtbot, window.encounter_form, "Start another encounter")
    form = window.encounter_form
    tap(qtbot, form, "Who is this record about: NHS number")
    type_into(qtbot, form, "NHS number", gone_nhs)
    fill_encounter(qtbot, form, incident="WMP-1003", narrative="Walked away before help came.")
    refused = save_encounter(qtbot, window)
    with reference.session(admin=True) as http:
        http.delete(f"{reference.base_url}/Patient/{gone_id}", timeout=30).raise_for_status()
    report = sync_now(qtbot, window)
    assert not isinstance(report, str), f"sync failed instead of refusing one record: {report}"
    assert report.rejected == 1
    panel = window.sync_panel
    qtbot.waitUntil(lambda: [r.client_id for r in panel.rejected_rows] == [refused], timeout=10_000)
    row = panel.rejected_rows[0]
    assert row.advice.text() == "This person was merged or removed on the central record."
    qtbot.mouseClick(row.details_button, LEFT)  # the server's words, behind "Details"
    reason_shown = row.reason.text()
    assert "Patient that does not exist" in reason_shown, reason_shown
    assert row.reason.isVisible()
    assert sorted(today_states(qtbot, window, lambda s: "rejected" in s)) == [
        "rejected",
        "sent",
        "sent",
    ]
    assert server_encounters(reference, refused) == []
    assert window.windowTitle() == "Kerbside"
    # Four syncs later, the audit log still holds the one opening the officer made.
    store = window.session.open_store()
    try:
        openings = [e.reason for e in store.audit_entries() if e.action == OPEN_RECORD_ACTION]
    finally:
        store.close()
    assert openings == ["Street triage: person in crisis"]

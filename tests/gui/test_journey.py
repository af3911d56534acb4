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

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.fhir import FIELD_RECORD_ID_SYSTEM, NHS_NUMBER_SYSTEM
from app.security import LockoutPolicy
from app.services.records import OPEN_RECORD_ACTION
from tests.conftest import TEST_PIN
from tests.gui.conftest import Person, WindowFactory, enrol_against

LEFT = Qt.MouseButton.LeftButton
# One free wrong PIN would hide the delay: the first wrong PIN here costs one second.
LOCKOUT = LockoutPolicy(max_failures=10, free_attempts=1, base_delay_s=1.0, max_delay_s=1.0)


# -- finding and using controls as a user does --------------------------------------------------


def _visible(root: QWidget, kinds: tuple[type[QWidget], ...], name: str) -> list[Any]:
    return [
        w
        for kind in kinds
        for w in root.findChildren(kind)
        if w.accessibleName() == name and w.isVisible()
    ]


def _named(qtbot: QtBot, root: QWidget, kinds: tuple[type[QWidget], ...], name: str) -> Any:
    """The one visible widget of these kinds with this accessible name (a widget just added
    to a shown layout becomes visible on the next turn of the event loop, so wait a little)."""
    try:
        qtbot.waitUntil(lambda: len(_visible(root, kinds, name)) == 1, timeout=3_000)
    except Exception:
        found = len(_visible(root, kinds, name))
        raise AssertionError(f"{found} visible widgets named {name!r}") from None
    return _visible(root, kinds, name)[0]


def tap(qtbot: QtBot, root: QWidget, name: str) -> None:
    button = _named(qtbot, root, (QAbstractButton,), name)
    assert button.isEnabled(), f"{name!r} is disabled"
    qtbot.mouseClick(button, LEFT)


def type_into(qtbot: QtBot, root: QWidget, name: str, text: str) -> None:
    edit = _named(qtbot, root, (QLineEdit, QPlainTextEdit), name)
    edit.setFocus()
    qtbot.keyClicks(edit, text)


def pin(qtbot: QtBot, window: Any, digits: str) -> None:
    for digit in digits:
        tap(qtbot, window.unlock_view, f"Digit {digit}")
    tap(qtbot, window.unlock_view, "Unlock")


def unlock(qtbot: QtBot, window: Any) -> None:
    pin(qtbot, window, TEST_PIN)
    qtbot.waitUntil(lambda: not window.is_locked, timeout=10_000)


def search(qtbot: QtBot, window: Any, text: str) -> list[Any]:
    box = _named(qtbot, window, (QLineEdit,), "Search for a person")
    box.setFocus()
    box.selectAll()
    qtbot.keyClick(box, Qt.Key.Key_Delete)
    qtbot.keyClicks(box, text)
    view = window.search_view
    qtbot.waitUntil(lambda: bool(view.hits()), timeout=5_000)
    return view.hits()


def tap_result(qtbot: QtBot, window: Any, patient_id: str) -> None:
    view = window.search_view
    row = next(i for i, h in enumerate(view.hits()) if h.id == patient_id)
    rect = view.results.visualRect(view.model.index(row))
    qtbot.mouseClick(view.results.viewport(), LEFT, pos=rect.center())


def sync_now(qtbot: QtBot, window: Any, *, timeout: int = 30_000) -> Any:
    """Tap "Sync now" on the Sync page; the report, or None if the run failed."""
    tap(qtbot, window, "Sync page")
    controller = window.sync_controller
    outcome: list[Any] = []
    controller.sync_finished.connect(outcome.append)
    controller.sync_failed.connect(lambda message: outcome.append(message))
    tap(qtbot, window, "Sync now")
    qtbot.waitUntil(lambda: bool(outcome) and not controller.is_running, timeout=timeout)
    return outcome[0]


def fill_encounter(qtbot: QtBot, form: QWidget, *, incident: str, narrative: str) -> None:
    type_into(qtbot, form, "Location", "Bus station, Moor Street")
    type_into(qtbot, form, "Police incident reference", incident)
    type_into(qtbot, form, "Presenting situation", "Distressed, talking of jumping")
    tap(qtbot, form, "Outcome: Referred to crisis team")
    type_into(qtbot, form, "Narrative", narrative)


def save_encounter(qtbot: QtBot, window: Any) -> str:
    form = window.encounter_form
    with qtbot.waitSignal(form.saved, timeout=10_000) as saved:
        tap(qtbot, form, "Save encounter")
    return str(saved.args[0])


def today_states(qtbot: QtBot, window: Any, wanted: Callable[[list[str]], bool]) -> list[str]:
    panel = window.sync_panel
    panel.refresh()
    qtbot.waitUntil(lambda: wanted(panel.today.states()), timeout=10_000)
    return list(panel.today.states())


# -- the server's side --------------------------------------------------------------------------


def server_encounters(central: Any, client_id: str) -> list[dict[str, Any]]:
    """Encounters the centre holds under this field record's identifier (FHIR search)."""
    with central.session(admin=True) as http:
        resp = http.get(
            f"{central.base_url}/Encounter",
            params={"identifier": f"{FIELD_RECORD_ID_SYSTEM}|{client_id}"},
            timeout=30,
        )
    resp.raise_for_status()
    return [
        e["resource"]
        for e in resp.json().get("entry", ())
        if e.get("search", {}).get("mode", "match") == "match"
    ]


def other_patient(cohort_dir: Path, not_id: str) -> tuple[str, str]:
    """Another cohort person with an NHS number: (id, NHS number)."""
    for line in (cohort_dir / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        nhs = next(
            (
                i["value"]
                for i in patient.get("identifier", ())
                if i.get("system") == NHS_NUMBER_SYSTEM
            ),
            None,
        )
        if patient["id"] != not_id and nhs:
            return patient["id"], nhs
    raise AssertionError("no second patient with an NHS number")


def _typo(word: str) -> str:
    """Swap two letters in the middle, as a hurried thumb does."""
    i = len(word) // 2
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


# -- the journey --------------------------------------------------------------------------------


def test_a_shift_from_unlock_to_sync_through_the_window(
    qtbot: QtBot,
    tmp_path: Path,
    central: Any,
    cohort_dir: Path,
    alerted_person: Person,
    make_window: WindowFactory,
) -> None:
    profile = enrol_against(tmp_path / "profile", central, lockout=LOCKOUT)
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
    central.stop()
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
    assert _named(qtbot, form, (QLineEdit,), "Location").text() == "Canal towpath"
    type_into(qtbot, form, "Police incident reference", "WMP-1002")
    type_into(qtbot, form, "Presenting situation", "Found again, cold and wet")
    tap(qtbot, form, "Outcome: Referred to crisis team")
    type_into(qtbot, form, "Narrative", "Taken home by a friend.")
    second = save_encounter(qtbot, window)
    assert today_states(qtbot, window, lambda s: s == ["waiting", "waiting"])

    # Back at base: the centre answers again; one sync sends both, exactly once.
    central.start()
    report = sync_now(qtbot, window)
    assert not isinstance(report, str), f"sync after reconnecting failed: {report}"
    assert report.pushed == 2 and report.rejected == 0
    assert today_states(qtbot, window, lambda s: s == ["sent", "sent"]) == ["sent", "sent"]
    for client_id in (first, second):
        held = server_encounters(central, client_id)
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
    with central.session(admin=True) as http:
        http.delete(f"{central.base_url}/Patient/{gone_id}", timeout=30).raise_for_status()
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
    assert server_encounters(central, refused) == []
    assert window.windowTitle() == "Kerbside"
    # Four syncs later, the audit log still holds the one opening the officer made.
    store = window.session.open_store()
    try:
        openings = [e.reason for e in store.audit_entries() if e.action == OPEN_RECORD_ACTION]
    finally:
        store.close()
    assert openings == ["Street triage: person in crisis"]

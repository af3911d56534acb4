"""Look up online ("break the glass", issue 14 slice 7) in the real window, driven by
accessible names against the reference central record over real HTTP: the action appears
when search finds nobody, is disabled with the reason while offline, the reason is mandatory,
and the person picked is the person whose record is shown and who an encounter would be about
(hazard H1, H18)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QAbstractButton, QLineEdit
from pytestqt.qtbot import QtBot

from app.times import uk_date
from tests.gui.conftest import WindowFactory, enrol_against
from tests.support.gui import named, on_screen, shown_text, tap, type_into, unlock
from tests.support.sync import search_all

ACTION = "Look up online at the central record"


def _person(reference: Any, index: int) -> dict[str, Any]:
    return search_all(reference.session(admin=True), f"{reference.base_url}/Patient")[index]


def _search_nobody(qtbot: QtBot, window: Any, text: str) -> None:
    box = named(qtbot, window, (QLineEdit,), "Search for a person")
    box.setFocus()
    qtbot.keyClicks(box, text)
    view = window.search_view
    qtbot.waitUntil(lambda: view.box.text() == text and not view.is_searching(), timeout=5_000)
    assert view.hits() == []


def test_a_look_up_opens_the_picked_person_labelled_and_audited_at_both_ends(
    qtbot: QtBot, tmp_path: Path, reference: Any, make_window: WindowFactory
) -> None:
    person = _person(reference, 2)
    family = person["name"][0]["family"]
    born = uk_date(person["birthDate"])
    window = make_window(enrol_against(tmp_path / "profile", reference))
    unlock(qtbot, window)
    qtbot.waitUntil(lambda: window.sync_controller.connectivity == "online", timeout=10_000)
    _search_nobody(qtbot, window, f"{family} {born}")

    tap(qtbot, window, ACTION)
    # The reason is mandatory: a purpose alone does not go on.
    tap(qtbot, window, "Reason: Emergency treatment")
    assert "own words" in shown_text(qtbot, window, "Reason problem")
    assert not on_screen(window, "Search online")
    type_into(qtbot, window, "Reason in your own words", "Collapsed at the bus station")
    tap(qtbot, window, "Reason: Emergency treatment")

    type_into(qtbot, window, "Family name", family)
    type_into(qtbot, window, "Date of birth", born)
    tap(qtbot, window, "Search online")
    qtbot.waitUntil(lambda: window.lookup_view.hits() != [], timeout=15_000)
    assert "found at the central record" in shown_text(qtbot, window, "Look-up results")
    hits = window.lookup_view.hits()
    picked = next(h for h in hits if h.patient_id == person["id"])
    tap(qtbot, window, f"Open {picked.name}, born {born}")

    qtbot.waitUntil(lambda: window.record_view.shown_record_id() == person["id"], timeout=15_000)
    banner = shown_text(qtbot, window, "Looked up online")
    assert banner.startswith("Looked up online — kept until ")
    # One person on screen (H1): the record, and whom Ctrl+N would record about.
    assert window.encounter_subject() == person["id"]
    assert window.search_view.highlighted_id() in (None, person["id"])
    assert not on_screen(window, "Look-up results")  # the hits went with the opening

    entries = window.session.store.audit_entries()
    actions = [(e.action, e.patient_id) for e in entries if e.action.startswith("lookup-")]
    assert actions == [("lookup-search", None), ("lookup-open", person["id"])]
    report = reference.access_report()
    assert report["reads"]["unaudited"] == 0 and report["reads"]["audited"] >= 2


def test_offline_the_look_up_is_shown_disabled_with_the_reason(
    qtbot: QtBot, tmp_path: Path, reference: Any, make_window: WindowFactory
) -> None:
    profile = enrol_against(tmp_path / "profile", reference)
    reference.stop()
    window = make_window(profile)
    unlock(qtbot, window)
    qtbot.waitUntil(lambda: window.sync_controller.connectivity == "offline", timeout=10_000)
    _search_nobody(qtbot, window, "Nobody Here")
    button = named(qtbot, window, (QAbstractButton,), ACTION)
    assert not button.isEnabled()
    assert on_screen(window, "Look-up unavailable: No connection to the central record")


def test_a_look_up_that_cannot_reach_the_source_keeps_what_was_typed(
    qtbot: QtBot, tmp_path: Path, reference: Any, make_window: WindowFactory
) -> None:
    window = make_window(enrol_against(tmp_path / "profile", reference))
    unlock(qtbot, window)
    qtbot.waitUntil(lambda: window.sync_controller.connectivity == "online", timeout=10_000)
    _search_nobody(qtbot, window, "Nobody Here")
    tap(qtbot, window, ACTION)
    type_into(qtbot, window, "Reason in your own words", "Found unresponsive")
    tap(qtbot, window, "Reason: Break the glass")
    type_into(qtbot, window, "NHS number", "9434765919")
    reference.stop()
    tap(qtbot, window, "Search online")
    problem = "Look-up problem"
    qtbot.waitUntil(lambda: on_screen(window, problem), timeout=30_000)
    assert shown_text(qtbot, window, problem).startswith("No connection to the central record")
    assert named(qtbot, window, (QLineEdit,), "NHS number").text() == ("9434765919")
    tap(qtbot, window, "Cancel the look-up")
    button = named(qtbot, window, (QAbstractButton,), ACTION)
    assert not button.isEnabled()  # the last attempt failed: shown unreachable


def test_locking_forgets_the_look_up_and_what_it_found(
    qtbot: QtBot, tmp_path: Path, reference: Any, make_window: WindowFactory
) -> None:
    person = _person(reference, 4)
    window = make_window(enrol_against(tmp_path / "profile", reference))
    unlock(qtbot, window)
    qtbot.waitUntil(lambda: window.sync_controller.connectivity == "online", timeout=10_000)
    _search_nobody(qtbot, window, "Nobody Here")
    tap(qtbot, window, ACTION)
    type_into(qtbot, window, "Reason in your own words", "Found unresponsive")
    tap(qtbot, window, "Reason: Break the glass")
    type_into(
        qtbot,
        window,
        "NHS number",
        next(i["value"] for i in person["identifier"] if i["system"].endswith("nhs-number")),
    )
    tap(qtbot, window, "Search online")
    qtbot.waitUntil(lambda: window.lookup_view.hits() != [], timeout=15_000)
    tap(qtbot, window, "Lock now")
    assert window.is_locked
    assert window.lookup_view.hits() == [] and window.current_page() == "find"
    unlock(qtbot, window)
    assert not on_screen(window, "Look-up results") and not on_screen(window, "Reason given")

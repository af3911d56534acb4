"""A person's record through the real window: alerts first, the crisis plan under DOMAIN.md's
headings, who to call, medication and allergies, legal status, last contacts; the access
reason and its audit entry; stale data; and the ways into the encounter form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot

from app.services.records import ACCESS_REASONS, OPEN_RECORD_ACTION
from app.services.session import LAST_REFRESH
from app.ui.widgets import SectionCard
from tests.gui.conftest import (
    Person,
    WindowFactory,
    enrol_against,
    open_first_with_reason,
    type_search,
    unlock,
)

# DOMAIN.md "Crisis plans", in the order someone on scene needs them.
DOMAIN_HEADINGS = [
    "Early warning signs", "Triggers", "What helps", "What does not help", "Who to contact",
    "Preferred place", "Places to avoid", "Practical needs", "Advance statement",
    "Advance decision to refuse treatment", "Family and carer involvement",
    "Protective factors",
]  # fmt: skip


def _ndjson(cohort: Path, rtype: str, patient_id: str) -> list[dict[str, Any]]:
    """The cohort's resources of one type about one patient (what the centre sent)."""
    out = []
    for line in (cohort / f"{rtype}.ndjson").read_text().splitlines():
        res = json.loads(line)
        ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
        if ref == f"Patient/{patient_id}":
            out.append(res)
    return out


def _card(window: Any, name: str) -> SectionCard:
    page = window.record_view.scroll_area.widget()
    cards = [c for c in page.findChildren(SectionCard) if c.accessibleName() == name]
    assert len(cards) == 1, f"no single {name!r} card"
    return cards[0]


def _texts(widget: QWidget) -> list[str]:
    return [lab.text() for lab in widget.findChildren(QLabel)]


def _open(qtbot: QtBot, window: Any, person: Person) -> None:
    type_search(qtbot, window, f"{person.given} {person.family}")
    open_first_with_reason(qtbot, window, person.id)


def _y(widget: QWidget) -> int:
    return widget.mapTo(widget.window(), widget.rect().topLeft()).y()


def test_alerts_come_first_then_the_crisis_plan_under_domain_headings(
    qtbot: QtBot,
    gui_profile: Path,
    make_window: WindowFactory,
    alerted_person: Person,
    cohort_dir: Path,
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    _open(qtbot, window, alerted_person)
    bands = window.record_view.alert_bands()
    active = [
        f for f in _ndjson(cohort_dir, "Flag", alerted_person.id) if f.get("status") == "active"
    ]
    assert len(bands) == len(active) > 0
    glance = _card(window, "Crisis plan at a glance")
    rest = _card(window, "Crisis plan")
    assert _y(glance) < _y(rest)  # what helps, who to contact, preferred place come first
    for card_name in (
        "Crisis plan at a glance",
        "Crisis plan",
        "Care team and contacts",
        "Medication and allergies",
        "Legal status",
        "Last contacts",
    ):
        assert all(_y(band) < _y(_card(window, card_name)) for band in bands)
    # The sections present appear in DOMAIN.md's order, under its headings.
    headings = [t for t in _texts(rest) if any(t.startswith(h) for h in DOMAIN_HEADINGS)]
    assert len(headings) >= 1
    order = [next(i for i, h in enumerate(DOMAIN_HEADINGS) if t.startswith(h)) for t in headings]
    assert order == sorted(order)
    # What the central record's CarePlan says is what the card shows.
    plans = [
        p for p in _ndjson(cohort_dir, "CarePlan", alerted_person.id) if p.get("status") == "active"
    ]
    careplan = max(plans, key=lambda p: p.get("created", ""))  # the current plan
    shown = "\n".join(_texts(glance) + _texts(rest))
    sections = [a["detail"]["description"] for a in careplan["activity"]]
    missing = [text for text in sections if text not in shown]
    assert len(sections) >= 3 and not missing, (missing, shown)


def test_who_to_call_medication_legal_status_and_last_contacts_are_shown(
    qtbot: QtBot,
    gui_profile: Path,
    make_window: WindowFactory,
    alerted_person: Person,
    cohort_dir: Path,
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    _open(qtbot, window, alerted_person)
    record = window.record_view.record
    contacts = "\n".join(_texts(_card(window, "Care team and contacts")))
    for contact in record.contacts:
        assert contact.name in contacts
    related = _ndjson(cohort_dir, "RelatedPerson", alerted_person.id)
    for person in related:
        family = person["name"][0].get("family")
        if family:
            assert family in contacts
    calls = [
        b
        for b in _card(window, "Care team and contacts").findChildren(QWidget)
        if b.accessibleName().startswith("Call ")
    ]
    assert all(b.height() >= 48 for b in calls)

    medical = "\n".join(_texts(_card(window, "Medication and allergies")))
    assert "Allergies" in medical and "Medication" in medical
    for med in _ndjson(cohort_dir, "MedicationStatement", alerted_person.id):
        if med.get("status") == "active":
            concept = med.get("medicationCodeableConcept", {})
            name = concept.get("text") or concept.get("coding", [{}])[0].get("display", "")
            assert name in medical
    legal = "\n".join(_texts(_card(window, "Legal status")))
    assert record.legal_status is None or record.legal_status.display in legal
    history = "\n".join(_texts(_card(window, "Last contacts")))
    if _ndjson(cohort_dir, "Encounter", alerted_person.id):
        assert record.last_contacts and record.last_contacts[0].description in history
    else:
        assert "No recent contacts" in history


def test_opening_asks_why_remembers_the_reason_and_audits_each_opening(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    store = window.session.store

    def openings() -> list[Any]:  # the search that showed the person is audited on its own
        return [e for e in store.audit_entries() if e.action == "open-record"]

    before = len(openings())
    type_search(qtbot, window, f"{alerted_person.given} {alerted_person.family}")
    view = window.search_view
    row = next(i for i, h in enumerate(view.hits()) if h.id == alerted_person.id)
    qtbot.mouseClick(
        view.results.viewport(),
        Qt.MouseButton.LeftButton,
        pos=view.results.visualRect(view.model.index(row)).center(),
    )
    assert window.record_view.showing_reason_sheet()
    assert window.record_view.patient_id is None  # nothing shown before a reason
    assert len(openings()) == before  # nor audited
    searches = [e.reason for e in store.audit_entries() if e.action == "search"]
    assert searches[-1] == f"{alerted_person.given} {alerted_person.family}"  # shown: audited
    chosen = ACCESS_REASONS[1]
    button = next(
        b for b in window.record_view.reason_sheet.buttons() if b.property("reason") == chosen
    )
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.record_view.patient_id == alerted_person.id, timeout=5_000)
    entries = openings()
    assert len(entries) == before + 1
    last = entries[-1]
    assert (last.action, last.patient_id, last.reason, last.user_id) == (
        "open-record",
        alerted_person.id,
        chosen,
        window.session.user_id,
    )
    assert store.verify_audit_chain() is None
    # The next opening offers the same reason first, highlighted: one tap.
    window.open_patient(alerted_person.id)
    first = window.record_view.reason_sheet.buttons()[0]
    assert first.property("reason") == chosen and first.property("role") == "primary"
    assert first.height() >= 48


def test_stale_data_is_labelled(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    _open(qtbot, window, alerted_person)
    page_text = "\n".join(_texts(window.record_view.scroll_area.widget()))
    assert "Not synced for" not in page_text
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat().replace("+00:00", "Z")
    window.session.store.set_meta(LAST_REFRESH, old)
    with qtbot.waitSignal(window.record_view.record_shown, timeout=5_000):
        window.record_view.reload()  # read on a worker
    page = window.record_view.scroll_area.widget()
    stale = [
        lab for lab in page.findChildren(QLabel) if lab.accessibleName() == "Stale data warning"
    ]
    assert stale and "Not synced for 30 hours" in stale[0].text()
    assert "Tablet last updated from the central record" in "\n".join(_texts(page))


def test_record_encounter_opens_the_form_about_this_person(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    _open(qtbot, window, alerted_person)
    with qtbot.waitSignal(window.form_opened, timeout=5_000):
        qtbot.mouseClick(window.record_view.encounter_button, Qt.MouseButton.LeftButton)
    form = window.encounter_form
    assert window.current_page() == "encounter"
    assert form.person_mode.value() == "known"
    assert form.data()["patient"] == {"id": alerted_person.id}
    assert alerted_person.family in form.patient_name.text()
    assert alerted_person.family not in window.windowTitle()


def test_unknown_person_starts_a_provisional_record(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    with qtbot.waitSignal(window.form_opened, timeout=5_000):
        qtbot.mouseClick(window.search_view.unknown, Qt.MouseButton.LeftButton)
    form = window.encounter_form
    assert window.current_page() == "encounter"
    assert form.person_mode.value() == "unknown"
    assert form.description.isVisible()
    assert "unidentified" in form.data()["patient"]


def test_the_form_can_pick_its_person_from_search_without_opening_the_record(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    qtbot.mouseClick(window.nav_buttons["encounter"], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(window.new_form_button, Qt.MouseButton.LeftButton)
    form = window.encounter_form

    def openings() -> int:  # the search itself is audited; opening the record is not done
        return sum(e.action == "open-record" for e in window.session.store.audit_entries())

    audited = openings()
    qtbot.mouseClick(form.search_button, Qt.MouseButton.LeftButton)
    assert window.current_page() == "find"
    type_search(qtbot, window, f"{alerted_person.given} {alerted_person.family}")
    hit = window.search_view.hit_by_id(alerted_person.id)
    window.search_view.patient_chosen.emit(hit.id, hit.sid)  # as a tap on their row
    assert window.current_page() == "encounter"
    assert window.encounter_form is form
    assert form.data()["patient"] == {"id": alerted_person.id}
    assert openings() == audited


def test_portrait_shows_one_pane_at_a_time_and_back_returns_to_search(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person: Person
) -> None:
    window = make_window(gui_profile, size=(800, 1280))
    unlock(qtbot, window)
    assert not window.is_landscape()
    assert window.search_view.isVisible() and not window.record_view.isVisible()
    _open(qtbot, window, alerted_person)
    assert window.record_view.isVisible() and not window.search_view.isVisible()
    assert window.record_view.back_button.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.search_view.isVisible() and not window.record_view.isVisible()


def _openings(store: Any) -> list[tuple[str, str | None, str | None]]:
    """The audited record openings: (event id, patient, reason)."""
    return [
        (e.event_id, e.patient_id, e.reason)
        for e in store.audit_entries()
        if e.action == OPEN_RECORD_ACTION
    ]


def test_a_sync_refreshes_the_open_record_without_a_false_audit_entry(
    qtbot: QtBot,
    tmp_path: Path,
    reference: Any,
    alerted_person: Person,
    make_window: WindowFactory,
) -> None:
    """A sync that pulls a change shows it in the open record, but the audit log holds only
    the opening the officer made (with their reason), not one per sync."""
    window = make_window(enrol_against(tmp_path / "profile", reference))
    unlock(qtbot, window)
    with qtbot.waitSignal(window.sync_finished, timeout=60_000) as first:
        window.start_sync()
    assert first.args[0].pulled > 0
    _open(qtbot, window, alerted_person)
    store = window.session.store
    opened = _openings(store)
    assert [(pid, reason) for _, pid, reason in opened] == [(alerted_person.id, ACCESS_REASONS[0])]
    assert "Sparrow" not in "\n".join(_texts(window.record_view.scroll_area.widget()))

    # The centre adds the street name the team now knows the person by.
    url = f"{reference.base_url}/Patient/{alerted_person.id}"
    with reference.session(admin=True) as http:
        patient = http.get(url, timeout=30).json()
        patient["name"].append({"use": "nickname", "given": ["Sparrow"]})
        resp = http.put(
            url, json=patient, headers={"Content-Type": "application/fhir+json"}, timeout=30
        )
    assert resp.status_code == 200, resp.status_code
    with qtbot.waitSignal(window.sync_finished, timeout=60_000) as second:
        window.start_sync()
    assert second.args[0].pulled > 0

    assert window.record_view.patient_id == alerted_person.id
    qtbot.waitUntil(  # the reload the sync started reads on a worker
        lambda: "“Sparrow”" in "\n".join(_texts(window.record_view.scroll_area.widget())),
        timeout=5_000,
    )
    assert _openings(store) == opened
    assert store.verify_audit_chain() is None

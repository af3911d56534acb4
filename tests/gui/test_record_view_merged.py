"""The record view of a person two Trusts know (issue 14 slice 5), driven through the real
window by accessible names: the Trusts listed in the fixed identity header, every alert, plan
and contact labelled with its Trust, a red "Sources disagree" notice in the header when the
Trusts record another name or birth date, nothing clipped at either size with larger text;
a one-source person looks as before; a sync that changes who is joined never switches the
person on screen (hazard H1, H23)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.fhir import NHS_VERIFICATION_EXT
from app.synthetic import generate_trusts
from sync import SyncReport
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN
from tests.gui.conftest import USER, WindowFactory, open_first_with_reason, type_search, unlock
from tests.support.gui import clipped, named, on_screen, shown_text
from tests.support.trusts import (
    HOME_TRUST,
    WEST,
    WEST_TRUST,
    Shared,
    import_two_trusts,
    ndjson,
    shared_people,
)

SIZES = ((1280, 800), (800, 1280))


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, 120, 21, out)
    return out


def _person(region: Path) -> tuple[Shared, str]:
    """A person both Trusts know with alerts, plans and a care team at both; their surname."""
    person = shared_people(region, with_types=("Flag", "CarePlan", "CareTeam"))[0]
    patient = next(p for p in ndjson(region / "trust-1", "Patient") if p["id"] == person.home_id)
    family = next(n for n in patient["name"] if n.get("use", "official") == "official")["family"]
    return person, str(family)


def _profile(directory: Path, region: Path, *, disagree: bool = False) -> Path:
    from app.services.session import enrol

    session = enrol(directory, USER, TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    try:
        west = import_two_trusts(session, region)
        if disagree:
            person, _ = _person(region)
            _change(session.store, west, person.west_id, _wrong_identity)
    finally:
        session.close()
    return directory


def _change(store: Any, source: int, rid: str, change: Any) -> None:
    patient = copy.deepcopy(store.get_resource(source, "Patient", rid))
    change(patient)
    patient["meta"]["versionId"] = str(int(patient["meta"].get("versionId", "1")) + 1)
    store.put_resources(source, [patient])


def _wrong_identity(patient: dict[str, Any]) -> None:
    patient["birthDate"] = "1901-01-01"
    for name in patient["name"]:
        if name.get("use", "official") == "official":
            name["family"] = "Quennellwyvern"


def _verification(code: str) -> Any:
    def change(patient: dict[str, Any]) -> None:
        for ident in patient["identifier"]:
            for ext in ident.get("extension", ()):
                if ext["url"] == NHS_VERIFICATION_EXT:
                    ext["valueCodeableConcept"]["coding"][0]["code"] = code

    return change


def _open(qtbot: QtBot, window: Any, family: str, patient_id: str) -> None:
    type_search(qtbot, window, family)
    open_first_with_reason(qtbot, window, patient_id)
    window.test_runner.wait_until_idle(10_000)


def _names(window: Any, prefix: str) -> list[str]:
    return [
        w.accessibleName()
        for w in window.record_view.findChildren(QWidget)
        if w.isVisible() and w.accessibleName().startswith(prefix)
    ]


def test_a_merged_person_lists_the_trusts_and_labels_what_each_holds(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path, region: Path
) -> None:
    person, family = _person(region)
    window = make_window(_profile(tmp_path / "profile", region))
    unlock(qtbot, window)
    _open(qtbot, window, family, person.home_id)
    trusts = shown_text(qtbot, window, "Trusts that know this person")
    assert trusts == f"Known to: {HOME_TRUST}, {WEST_TRUST}"
    alerts = _names(window, "Alert, ")
    assert any(a.endswith(f"From {HOME_TRUST}") for a in alerts)
    assert any(a.endswith(f"From {WEST_TRUST}") for a in alerts)
    assert all(a.endswith((f"From {HOME_TRUST}", f"From {WEST_TRUST}")) for a in alerts)
    assert _names(window, "Crisis plan at a glance, from ")
    assert _names(window, "Crisis plan from ")
    contacts = shown_text(qtbot, window, "Care team and contacts")
    assert HOME_TRUST in contacts and WEST_TRUST in contacts
    assert not on_screen(window, "Sources disagree")  # the generator keeps identity the same
    assert window.record_view.identity.members == window.record_view.record.members
    assert len(window.record_view.identity.members) == 2


@pytest.mark.parametrize("larger", [False, True], ids=["normal", "larger"])
def test_sources_that_disagree_say_so_in_the_header_at_both_sizes(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path, region: Path, larger: bool
) -> None:
    person, family = _person(region)
    window = make_window(_profile(tmp_path / "profile", region, disagree=True))
    unlock(qtbot, window)
    window.set_larger_text(larger)
    try:
        _open(qtbot, window, family, person.home_id)
        for size in SIZES:
            window.resize(*size)
            QApplication.processEvents()
            notice = named(qtbot, window, (QWidget,), "Sources disagree on")
            assert "name, date of birth" in notice.text()
            # In the fixed header, above the scrolling record: never scrolled away.
            assert window.record_view.identity.isAncestorOf(notice)
            assert not clipped(window), clipped(window)
            # The fixed header leaves the record (alerts, then the plan) most of the pane,
            # even for two Trusts that disagree with larger text on (hazard H5): 61% of it at
            # 1280x800 with the Trusts and the notice beside "Change person", 50% under it.
            header = window.record_view.identity.height()
            record = window.record_view.scroll_area.height()
            assert header / (header + record) <= 0.55, (size, header, record)
            if os.environ.get("KERBSIDE_CLIP_SHOTS"):  # to look at (larger text especially)
                shot = f"merged-{'larger' if larger else 'normal'}-{size[0]}x{size[1]}.png"
                window.grab().save(str(Path(os.environ["KERBSIDE_CLIP_SHOTS"]) / shot))
            compare = named(qtbot, window, (QWidget,), "Compare what each Trust records")
            qtbot.mouseClick(compare, _left())
            card = named(qtbot, window, (QWidget,), "Identity details")
            bar = window.record_view.scroll_area.verticalScrollBar()
            assert bar.value() == min(card.y(), bar.maximum())
            text = shown_text(qtbot, window, "Identity details")
            assert HOME_TRUST in text and WEST_TRUST in text and "Born 01/01/1901" in text
            bar.setValue(0)
    finally:
        window.set_larger_text(False)


def test_a_one_source_person_looks_as_before(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path, region: Path
) -> None:
    home_only = {
        p["id"]: p
        for p in ndjson(region / "trust-1", "Patient")
        if p["id"] not in {s.home_id for s in shared_people(region)}
    }
    flagged = {f["subject"]["reference"].split("/")[-1] for f in ndjson(region / "trust-1", "Flag")}
    rid = next(r for r in sorted(home_only) if r in flagged)
    family = next(n for n in home_only[rid]["name"] if n.get("use", "official") == "official")[
        "family"
    ]
    window = make_window(_profile(tmp_path / "profile", region))
    unlock(qtbot, window)
    _open(qtbot, window, str(family), rid)
    assert not on_screen(window, "Trusts that know this person")
    assert not on_screen(window, "Sources disagree")
    alerts = _names(window, "Alert, ")
    assert alerts and not any("From " in a for a in alerts)
    assert not _names(window, "Crisis plan from ")


def test_a_sync_that_changes_who_is_joined_never_switches_the_person(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path, region: Path
) -> None:
    person, family = _person(region)
    window = make_window(_profile(tmp_path / "profile", region))
    unlock(qtbot, window)
    _open(qtbot, window, family, person.home_id)
    view = window.record_view
    west = window.session.store.source_id(WEST)

    def synced() -> None:
        window.sync_controller.sync_finished.emit(SyncReport(pulled=1))
        window.test_runner.wait_until_idle(10_000)
        QApplication.processEvents()

    # The number stops being verified at the west Trust: the merge breaks. The person on
    # screen, the highlighted row and the subject of a new encounter stay the one opened.
    _change(window.session.store, west, person.west_id, _verification("02"))
    synced()
    assert view.shown_record_id() == person.home_id and view.identity.patient_id == person.home_id
    assert window.encounter_subject() == person.home_id
    assert view.record.members == ((1, person.home_id),)
    changed = shown_text(qtbot, window, "What changed in the Trusts' records")
    assert f"The record from {WEST_TRUST} is no longer joined" in changed
    assert not on_screen(window, "Open the record again")
    assert not any("From " in a for a in _names(window, "Alert, "))

    # Verified again: the west Trust knows the person again; it is named, not read, until the
    # officer opens the record again (the reason sheet, an audited opening of both).
    _change(window.session.store, west, person.west_id, _verification("01"))
    synced()
    assert view.record.members == ((1, person.home_id),)
    assert f"{WEST_TRUST} now also holds a record" in shown_text(
        qtbot, window, "What changed in the Trusts' records"
    )
    qtbot.mouseClick(named(qtbot, window, (QWidget,), "Open the record again"), _left())
    qtbot.waitUntil(view.showing_reason_sheet, timeout=5_000)
    assert view.shown_id() == person.home_id
    qtbot.mouseClick(view.reason_sheet.buttons()[0], _left())
    qtbot.waitUntil(lambda: view.record is not None and view.record.merged, timeout=5_000)
    assert view.shown_record_id() == person.home_id
    assert not on_screen(window, "Trusts' records changed")


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_an_encounter_about_a_person_only_the_neighbour_knows_names_them_and_goes_by_number(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path, region: Path
) -> None:
    """ "Record encounter" on a person only the west Trust knows: the form names the west
    Patient (its header says which Trust knows them), and the saved record is queued about
    that Patient, to go home by its verified NHS number (never a home Patient id)."""
    from app.fhir import NHS_NUMBER_SYSTEM, verified_nhs_number
    from tests.support.gui import fill_encounter, save_encounter, tap
    from tests.support.trusts import west_only

    rid = west_only(region)[0]
    patient = next(p for p in ndjson(region / "trust-2", "Patient") if p["id"] == rid)
    number = verified_nhs_number(patient)
    assert number is not None
    window = make_window(_profile(tmp_path / "profile", region))
    unlock(qtbot, window)
    west = window.session.store.source_id(WEST)
    hits = type_search(qtbot, window, number)
    [hit] = [h for h in hits if h.nhs_number == number]
    assert hit.ref == (west, rid)
    open_first_with_reason(qtbot, window, rid)
    assert shown_text(qtbot, window, "Trusts that know this person") == f"Known to: {WEST_TRUST}"
    tap(qtbot, window, "Record encounter")
    form = window.encounter_form
    assert form is not None and form.patient_ref() == (west, rid)
    assert form.data()["patient"] == {"id": rid, "source": WEST}
    header = form.identity
    assert header.patient_id == rid
    # The header's facts and Trust are read on a worker (until then it names the pick).
    qtbot.waitUntil(lambda: header.members == ((west, rid),), timeout=5_000)
    assert header.trusts.text() == f"Known to: {WEST_TRUST}"
    fill_encounter(qtbot, form, incident="WMP-2026-12-03-0001", narrative="Synthetic narrative")
    client_id = save_encounter(qtbot, window)
    row = window.session.store.outbox_row(client_id)
    assert (row.patient_id, row.patient_source) == (rid, west)
    payload = row.payload.decode()
    assert f"Patient/{rid}" not in payload
    assert f"identifier={NHS_NUMBER_SYSTEM}|{number}" in payload


def test_a_draft_about_a_source_the_tablet_no_longer_has_names_nobody(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path, region: Path
) -> None:
    """A draft kept about another Trust's Patient whose source has since been removed: the
    form names nobody ("no longer on this tablet"), never the home Patient with that id."""
    from app.services.encounters import new_draft_id, save_draft

    person, _ = _person(region)
    window = make_window(_profile(tmp_path / "profile", region))
    unlock(qtbot, window)
    draft_id = new_draft_id()
    # Home's id, under a source the tablet does not have: a namesake exists at home.
    save_draft(window.session, draft_id, {"patient": {"id": person.home_id, "source": "gone"}})
    window.open_draft(draft_id)
    form = window.encounter_form
    assert form is not None
    qtbot.waitUntil(form.identity.isVisible, timeout=3_000)
    assert form.patient_ref() == (0, person.home_id)
    qtbot.waitUntil(  # read on a worker: until then the header names only the pick
        lambda: form.identity.name.text() == "Person no longer on this tablet", timeout=5_000
    )
    assert "Born" not in form.identity.facts.text()
    assert form.data()["patient"] == {"id": person.home_id, "source": "gone"}

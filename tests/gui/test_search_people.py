"""One person per NHS number on the Find page (issue 14 slice 4), through the real window on a
cache holding two Trusts' records (`generate_trusts`, tests/support/trusts.py): a person both
Trusts know is one row naming both Trusts; tapping a row opens that person (their Patient at
the source the row names, never the home Patient that happens to carry the same id), and the
highlighted row, the record and the subject of a new encounter stay that person when a sync
merges their result with another Trust's (hazard H1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.fhir import verified_nhs_number
from app.services.session import enrol
from app.synthetic import generate_trusts
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN
from tests.gui.conftest import USER, WindowFactory, type_search, unlock
from tests.support.gui import named, tap
from tests.support.trusts import (
    HOME_SOURCE,
    HOME_TRUST,
    WEST_TRUST,
    import_two_trusts,
    ndjson,
    shared_people,
    west_only,
)

PEOPLE = 400  # at seed 21 a few of trust-2's own people carry ids trust-1 gave to others
SEED = 21


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


@pytest.fixture
def two_trusts(tmp_path: Path, region: Path) -> Iterator[Path]:
    directory = tmp_path / "profile"
    session = enrol(directory, USER, TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    try:
        import_two_trusts(session, region)
    finally:
        session.close()
    yield directory


def _rows(window: Any) -> list[str]:
    """What the results list says of each row (its accessible text)."""
    results = named(window.qtbot, window, (type(window.search_view.results),), "Search results")
    model = results.model()
    return [
        str(model.index(i).data(Qt.ItemDataRole.AccessibleTextRole))
        for i in range(model.rowCount())
    ]


def _tap_row(qtbot: QtBot, window: Any, row: int) -> None:
    view = window.search_view
    rect = view.results.visualRect(view.model.index(row))
    qtbot.mouseClick(view.results.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)
    qtbot.mouseClick(window.record_view.reason_sheet.buttons()[0], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.record_view.record is not None, timeout=5_000)


def _window(qtbot: QtBot, make_window: WindowFactory, profile: Path) -> Any:
    window = make_window(profile)
    window.qtbot = qtbot
    unlock(qtbot, window)
    return window


def _same_person_everywhere(window: Any, source: int, patient_id: str) -> None:
    """H1: the record pane, the highlighted row and Ctrl+N's subject are this person."""
    record = window.record_view.record
    assert (record.source, record.person.patient_id) == (source, patient_id)
    hit = window.search_view.hit_by_id(patient_id, source)
    assert hit is not None and window.search_view.highlighted_ref() == hit.ref
    assert window.encounter_subject() == patient_id


def test_a_person_both_trusts_know_is_one_row_naming_both_and_opens_as_that_person(
    qtbot: QtBot, make_window: WindowFactory, two_trusts: Path, region: Path
) -> None:
    person = shared_people(region)[0]
    window = _window(qtbot, make_window, two_trusts)
    hits = type_search(qtbot, window, person.nhs_number)
    rows = [r for r in _rows(window) if "NHS number" in r]
    theirs = [h for h in hits if h.nhs_number == person.nhs_number]
    assert len(theirs) == 1, "one row for one person"
    [hit] = theirs
    assert hit.members[0] == (HOME_SOURCE, person.home_id) and len(hit.members) == 2
    spoken = rows[hits.index(hit)]
    assert f"known to {HOME_TRUST} and {WEST_TRUST}" in spoken
    _tap_row(qtbot, window, hits.index(hit))
    _same_person_everywhere(window, HOME_SOURCE, person.home_id)
    assert window.record_view.record.merged  # the record view reads both Trusts (h14-view)


def test_a_row_a_neighbour_alone_knows_opens_the_neighbours_patient_not_homes_namesake_id(
    qtbot: QtBot, make_window: WindowFactory, two_trusts: Path, region: Path
) -> None:
    home_ids = {p["id"] for p in ndjson(region / "trust-1", "Patient")}
    west = {p["id"]: p for p in ndjson(region / "trust-2", "Patient")}
    collided = [rid for rid in west_only(region) if rid in home_ids]
    assert collided, "the generator's deliberate collisions"
    rid = collided[0]
    number = verified_nhs_number(west[rid])
    assert number is not None
    window = _window(qtbot, make_window, two_trusts)
    hits = type_search(qtbot, window, number)
    [hit] = [h for h in hits if h.nhs_number == number]
    sid = window.session.store.source_id("trust-2")
    assert hit.ref == (sid, rid) and hit.members == ((sid, rid),)
    assert f"known to {WEST_TRUST}" in _rows(window)[hits.index(hit)]
    _tap_row(qtbot, window, hits.index(hit))
    _same_person_everywhere(window, sid, rid)
    shown = window.record_view.record.person.nhs_number.replace(" ", "")
    assert shown == number  # not the home Patient `rid`, someone else
    # The form names the west Trust's Patient, never home's Patient of that id (someone
    # else); the record goes home by NHS number (h14-view, design section 6).
    tap(qtbot, window, "Record encounter")
    form = window.encounter_form
    assert form is not None and window.current_page() == "encounter"
    assert form.data()["patient"] == {"id": rid, "source": "trust-2"}
    assert form.patient_ref() == (sid, rid) and form.identity.patient_id == rid
    # The header's facts and Trust are read on a worker (until then it names the pick).
    qtbot.waitUntil(lambda: form.identity.members == ((sid, rid),), timeout=5_000)
    facts = form.identity.facts.text().replace("\u00a0", " ")
    assert " ".join((number[:3], number[3:6], number[6:])) in facts


def test_the_highlight_record_and_subject_stay_the_person_when_a_sync_merges_their_row(
    qtbot: QtBot, make_window: WindowFactory, two_trusts: Path, region: Path
) -> None:
    """Opened as only the west Trust's person; a sync then brings home's Patient with the
    same verified number: the re-run search shows one merged row with home's id, and the
    highlight stays on it (the person), not on whoever is first; the record stays open."""
    rid = west_only(region)[0]
    patient = next(p for p in ndjson(region / "trust-2", "Patient") if p["id"] == rid)
    number = verified_nhs_number(patient)
    assert number is not None
    window = _window(qtbot, make_window, two_trusts)
    store = window.session.store
    sid = store.source_id("trust-2")
    name = next(n for n in patient["name"] if n.get("use") == "official")
    query = f"{name['family']} {patient['birthDate']}"
    hits = type_search(qtbot, window, query)
    row = next(i for i, h in enumerate(hits) if h.ref == (sid, rid))
    _tap_row(qtbot, window, row)
    _same_person_everywhere(window, sid, rid)

    # the sync: home now knows them too, under its own id, and a namesake ranks above them
    home_copy = dict(patient, id="home-of-" + rid, meta={"versionId": "1"})
    namesake = dict(patient, id="namesake-" + rid, meta={"versionId": "1"}, identifier=[])
    store.put_resources(HOME_SOURCE, [home_copy, namesake])
    window.search_view.refresh_index()
    qtbot.waitUntil(lambda: not window.search_view.is_searching(), timeout=5_000)
    merged = [h for h in window.search_view.hits() if h.is_person(sid, rid)]
    assert len(merged) == 1 and merged[0].ref == (HOME_SOURCE, "home-of-" + rid)
    assert merged[0].members == ((HOME_SOURCE, "home-of-" + rid), (sid, rid))
    assert window.search_view.highlighted_ref() == merged[0].ref
    record = window.record_view.record
    assert (record.source, record.person.patient_id) == (sid, rid)
    assert window.encounter_subject() == rid


SHOT_SIZES = ((1280, 800), (800, 1280))


def _lightness(image: Any) -> tuple[int, float]:
    from PySide6.QtGui import QColor

    colours: set[int] = set()
    total, samples = 0.0, 0
    for x in range(0, image.width(), 7):
        for y in range(0, image.height(), 7):
            rgb = image.pixel(x, y)
            colours.add(rgb)
            total += QColor(rgb).lightnessF()
            samples += 1
    return len(colours), total / samples


def test_the_merged_row_renders_at_both_sizes_day_and_night(
    qtbot: QtBot, make_window: WindowFactory, two_trusts: Path, region: Path, tmp_path: Path
) -> None:
    """The Find page with a person both Trusts know among namesakes, as PNGs (docs/screenshots/
    search-merged-*.png are these, from a run with --basetemp): the row names both Trusts
    whatever the width; night mode is dark."""
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication

    person = shared_people(region, with_types=("Flag",))[0]
    patient = next(p for p in ndjson(region / "trust-1", "Patient") if p["id"] == person.home_id)
    family = next(n for n in patient["name"] if n.get("use") == "official")["family"]
    window = _window(qtbot, make_window, two_trusts)
    out = tmp_path / "shots"
    out.mkdir()
    for mode in ("day", "night"):
        window.set_night_mode(mode == "night")
        for width, height in SHOT_SIZES:
            window.resize(width, height)
            window.focus_search()
            hits = type_search(qtbot, window, family)
            row = next(i for i, h in enumerate(hits) if h.nhs_number == person.nhs_number)
            assert f"known to {HOME_TRUST} and {WEST_TRUST}" in _rows(window)[row]
            window.search_view.results.scrollTo(window.search_view.model.index(row))
            window.test_runner.wait_until_idle(5_000)
            QApplication.processEvents()  # the resize's layout and the rows' repaint
            path = out / f"search-merged-{width}x{height}-{mode}.png"
            assert window.grab().save(str(path))
            colours, light = _lightness(QImage(str(path)))
            assert colours > 12
            assert (light < 0.35) if mode == "night" else (light > 0.35)
    window.set_night_mode(False)

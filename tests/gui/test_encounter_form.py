"""The encounter form on a real encrypted profile: every DOMAIN.md item, defaults, inline
validation, "Saved" only after COMMIT, drafts that survive a crash, the unknown person, and
touch targets. Work goes through a real `ops.Runner` (its one-worker DB pool), as in the app.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QLineEdit, QPlainTextEdit, QWidget
from pytestqt.qtbot import QtBot

from app.services import _encounter_fhir as fhir_out
from app.services import encounters
from app.services.session import Session, unlock
from app.store import Store
from app.ui import theme
from app.ui.encounter_form import EncounterForm
from app.ui.ops import Runner
from tests.conftest import TEST_PIN
from tests.support.gui import on_screen, shown_text, tap

LEFT = Qt.MouseButton.LeftButton
FormFactory = Callable[..., EncounterForm]


@pytest.fixture
def runner(qapp: QApplication) -> Iterator[Runner]:
    made = Runner(workers=2)
    yield made
    made.wait_until_idle(10_000)
    made.shutdown()


@pytest.fixture
def make_form(qtbot: QtBot, runner: Runner, cohort_session: Session) -> Iterator[FormFactory]:
    """Build a shown form (day theme, landscape); closed, and its work finished, before the
    session the fixture chain closes."""
    theme.apply(QApplication.instance(), theme.DAY)  # type: ignore[arg-type]
    made: list[EncounterForm] = []

    def factory(
        session: Session = cohort_session, *, size: tuple[int, int] = (1280, 800), **kw: Any
    ) -> EncounterForm:
        form = EncounterForm(session, runner, **kw)
        form.resize(*size)
        form.show()
        qtbot.waitExposed(form)
        runner.wait_until_idle(5_000)  # the look for earlier drafts
        made.append(form)
        return form

    yield factory
    for form in made:
        if shiboken6.isValid(form):
            form.close()
            form.deleteLater()
    runner.wait_until_idle(10_000)


@pytest.fixture
def cohort_patient(cohort_dir: Path) -> dict[str, Any]:
    """A cached person with an NHS number (read from the NDJSON, not through the app)."""
    for line in (cohort_dir / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        for ident in patient.get("identifier", ()):
            if ident.get("system") == "https://fhir.nhs.uk/Id/nhs-number":
                return {"id": patient["id"], "nhs_number": ident["value"]}
    raise AssertionError("no cohort patient has an NHS number")


def _fresh_store(session: Session) -> Store:
    """An independent connection: sees only what another connection has committed."""
    return session.open_store()


def _outbox(session: Session) -> list[Any]:
    store = _fresh_store(session)
    try:
        return store.outbox_rows(kind=encounters.KIND)
    finally:
        store.close()


def _drafts(session: Session) -> list[encounters.Draft]:
    """What another connection sees committed (the form's autosave runs on a worker)."""
    return session.on_worker(encounters.load_drafts)


def _tap(qtbot: QtBot, button: QAbstractButton) -> None:
    assert button.isVisible() and button.isEnabled(), button.accessibleName()
    qtbot.mouseClick(button, LEFT)


def _type(qtbot: QtBot, edit: QLineEdit | QPlainTextEdit, text: str) -> None:
    edit.setFocus()
    qtbot.keyClicks(edit, text)


def _fill_required(qtbot: QtBot, form: EncounterForm, nhs_number: str) -> None:
    _type(qtbot, form.nhs_number, nhs_number)
    _type(qtbot, form.location, "Bus station, Moor Street")
    _type(qtbot, form.police_incident_ref, "WMP-2026-11-20-1042")
    _type(qtbot, form.presenting_situation, "Distressed, talking of jumping")
    _tap(qtbot, form.outcome.button("referred-crisis-team"))


def _error(form: EncounterForm, field: str) -> str:
    shown = form.fields[field].error
    return shown.text() if shown.isVisible() else ""


def _visible_errors(form: EncounterForm) -> dict[str, str]:
    return {name: f.error.text() for name, f in form.fields.items() if f.error.isVisible()}


# -- defaults ---------------------------------------------------------------------------------
def test_a_new_form_starts_now_ends_at_save_and_claims_nothing_else(
    qtbot: QtBot,
    make_form: FormFactory,
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    form = make_form()
    start = form.start.value()
    assert start is not None and before - timedelta(seconds=1) <= start <= datetime.now(UTC)
    assert form.end.value() is None and "When you save" in shown_text(qtbot, form, "End")
    assert form.response_mode.value() == "face-to-face"
    assert form.section_136.value() == "no"
    assert form.person_mode.value() == "nhs"
    # A clinical record must not claim what nobody entered: no risk, outcome or place type.
    assert all(choice.value() is None for choice in form.risk.values())
    assert form.outcome.value() is None and form.location_type.value() is None
    assert form.referrals.values() == []
    # Nothing is shown as an error before the first Save, but the bar says what is needed.
    assert _visible_errors(form) == {}
    assert form.missing.text() == (
        "Still needed: NHS number, Location, Police incident reference and 2 more"
    )


# -- a complete record, through taps and typing -----------------------------------------------
def test_every_domain_item_is_recorded_and_saved_only_after_commit(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_session: Session,
    cohort_patient: dict[str, Any],
) -> None:
    form = make_form()
    _tap(qtbot, form.start.buttons["-60"])  # started an hour ago
    _tap(qtbot, form.end.buttons["-15"])  # ended 15 minutes ago
    _type(qtbot, form.nhs_number, cohort_patient["nhs_number"])
    _tap(qtbot, form.response_mode.button("telephone"))
    _type(qtbot, form.location, "Bus station, Moor Street")
    _tap(qtbot, form.location_type.button("public-place"))
    _type(qtbot, form.police_incident_ref, "WMP-2026-11-20-1042")
    _type(qtbot, form.presenting_situation, "Distressed on the bridge")
    _tap(qtbot, form.known_to_services.button("yes"))
    _tap(qtbot, form.crisis_plan_consulted.button("yes"))
    _tap(qtbot, form.risk["risk_to_self"].button("high"))
    _tap(qtbot, form.risk["risk_to_others"].button("low"))
    _tap(qtbot, form.risk["risk_from_others"].button("medium"))
    _tap(qtbot, form.section_136.button("yes"))
    _tap(qtbot, form.s136_detained_at.buttons["now"])
    _tap(qtbot, form.s136_detained_at.buttons["-15"])  # detained 15 minutes ago
    _tap(qtbot, form.s136_arrived_at.buttons["now"])
    _tap(qtbot, form.s136_arrived_at.buttons["-5"])  # at the s136 suite 5 minutes ago
    _tap(qtbot, form.health_professional_consulted.button("yes"))
    _type(qtbot, form.consulted_with, "CPN on the car")
    _tap(qtbot, form.place_of_safety.button("hbpos"))
    _tap(qtbot, form.conveyance.button("ambulance"))
    _tap(qtbot, form.outcome.button("s136-place-of-safety"))
    _tap(qtbot, form.referrals.button("crisis-team"))
    _tap(qtbot, form.referrals.button("gp"))
    _type(qtbot, form.narrative, "Calm after talking; agreed to go with the ambulance.")
    assert form.errors() == []
    assert form.missing.text() == "Ready to save"

    committed_when_signalled: list[int] = []
    form.saved.connect(lambda _cid: committed_when_signalled.append(len(_outbox(cohort_session))))
    _tap(qtbot, form.save_button)
    # The work is queued on the DB worker: nothing may say "Saved" until it has returned.
    assert form.saved_client_id() is None
    assert not on_screen(form, "Encounter saved") and form.save_button.text() == "Saving…"
    with qtbot.waitSignal(form.saved, timeout=10_000) as blocker:
        pass
    client_id = blocker.args[0]
    assert committed_when_signalled == [1]  # another connection already saw the row
    assert on_screen(form, "Encounter saved") and form.draft_status.text() == "Saved"
    assert not form.discard_button.isVisible()  # saved: nothing to discard (issue 11 item 10)

    (row,) = _outbox(cohort_session)
    assert row.client_id == client_id and row.state == "pending"
    assert row.patient_id == cohort_patient["id"] and row.user_id == "pc101"
    answers = fhir_out.answers_of(orjson.loads(row.payload))
    assert answers["patient"] == {"id": cohort_patient["id"]}
    start = datetime.fromisoformat(answers["start"])
    end = datetime.fromisoformat(answers["end"])
    assert timedelta(minutes=44) <= end - start <= timedelta(minutes=46)
    detained = datetime.fromisoformat(answers["s136_detained_at"])
    arrived = datetime.fromisoformat(answers["s136_arrived_at"])
    assert timedelta(minutes=9) <= arrived - detained <= timedelta(minutes=11)
    assert {
        k: answers.get(k)
        for k in (
            "response_mode",
            "location",
            "location_type",
            "police_incident_ref",
            "presenting_situation",
            "known_to_services",
            "crisis_plan_consulted",
            "risk_to_self",
            "risk_to_others",
            "risk_from_others",
            "section_136",
            "health_professional_consulted",
            "consulted_with",
            "place_of_safety",
            "conveyance",
            "outcome",
            "referrals",
            "narrative",
        )
    } == {
        "response_mode": "telephone",
        "location": "Bus station, Moor Street",
        "location_type": "public-place",
        "police_incident_ref": "WMP-2026-11-20-1042",
        "presenting_situation": "Distressed on the bridge",
        "known_to_services": "yes",
        "crisis_plan_consulted": True,
        "risk_to_self": "high",
        "risk_to_others": "low",
        "risk_from_others": "medium",
        "section_136": True,
        "health_professional_consulted": True,
        "consulted_with": "CPN on the car",
        "place_of_safety": "hbpos",
        "conveyance": "ambulance",
        "outcome": "s136-place-of-safety",
        "referrals": ["crisis-team", "gp"],
        "narrative": "Calm after talking; agreed to go with the ambulance.",
    }
    # A second tap on Save cannot record it twice.
    form.save()
    QApplication.processEvents()
    assert len(_outbox(cohort_session)) == 1


# -- inline validation ------------------------------------------------------------------------
def test_end_before_start_is_shown_at_the_end_time_and_nothing_is_saved(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_session: Session,
    cohort_patient: dict[str, Any],
) -> None:
    form = make_form()
    _fill_required(qtbot, form, cohort_patient["nhs_number"])
    _tap(qtbot, form.end.buttons["-15"])  # end 15 minutes before a start of "now"
    assert _visible_errors(form) == {}  # quiet until the officer tries to save
    _tap(qtbot, form.save_button)
    assert _error(form, "end") == "⚠ End must be after start"
    assert set(_visible_errors(form)) == {"end"}
    assert "End" in form.missing.text() and form.save_button.text() == "Save · 1 to fix"
    QApplication.processEvents()
    assert form.saved_client_id() is None and _outbox(cohort_session) == []
    # Fixing it clears the message as you go.
    _tap(qtbot, form.end.buttons["now"])
    assert _error(form, "end") == ""
    assert form.missing.text() == "Ready to save"


def test_missing_required_fields_are_each_shown_next_to_their_field(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_session: Session,
) -> None:
    form = make_form()
    _tap(qtbot, form.save_button)
    shown = _visible_errors(form)
    assert set(shown) == {
        "patient.nhs_number",
        "location",
        "police_incident_ref",
        "presenting_situation",
        "outcome",
    }
    assert shown["location"] == "⚠ Location is required: fill it in"
    assert shown["outcome"] == "⚠ Outcome is required: choose one"
    assert form.save_button.text() == "Save · 5 to fix"
    QApplication.processEvents()
    assert _outbox(cohort_session) == []


def test_section_136_details_are_required_and_refused_in_a_dwelling(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_patient: dict[str, Any],
) -> None:
    form = make_form()
    _fill_required(qtbot, form, cohort_patient["nhs_number"])
    _tap(qtbot, form.section_136.button("yes"))
    _tap(qtbot, form.save_button)
    shown = _visible_errors(form)
    assert {
        "location_type",
        "health_professional_consulted",
        "place_of_safety",
        "conveyance",
    } <= set(shown)
    assert "section_136" not in shown["place_of_safety"]  # people words, not JSON names
    assert shown["place_of_safety"] == ("⚠ Place of safety is required when section 136 is used")
    _tap(qtbot, form.location_type.button("dwelling"))
    assert not form.section_136.isEnabled() and form.section_136.value() == "no"
    assert form.dwelling_note.isVisible() and "dwelling" in form.dwelling_note.text()
    assert not on_screen(form, "Section 136 details")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("943 476 5871", "is not a valid NHS number"),  # wrong check digit: found as you type
        ("485 777 3456", "is not a valid NHS number"),  # the service manual's invalid sample
    ],
)
def test_a_bad_nhs_number_is_shown_next_to_the_field(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_session: Session,
    typed: str,
    message: str,
) -> None:
    form = make_form()
    _fill_required(qtbot, form, typed)
    _tap(qtbot, form.save_button)
    assert message in _error(form, "patient.nhs_number")
    assert set(_visible_errors(form)) == {"patient.nhs_number"}
    QApplication.processEvents()
    assert form.saved_client_id() is None and _outbox(cohort_session) == []


def test_a_valid_nhs_number_nobody_in_the_cache_has_is_refused_at_the_field(
    qtbot: QtBot,
    make_form: FormFactory,
    runner: Runner,
    cohort_session: Session,
    cohort_dir: Path,
) -> None:
    held = (cohort_dir / "Patient.ndjson").read_text()
    unknown = next(n for n in ("9434765870", "4857773457") if n not in held)
    form = make_form()
    _fill_required(qtbot, form, unknown)
    _tap(qtbot, form.save_button)  # passes the form's checks; only the cache can say no
    runner.wait_until_idle(10_000)
    assert "matches no person in this device's cache" in _error(form, "patient.nhs_number")
    assert form.missing.text().startswith("Not saved:")
    assert form.save_button.isEnabled() and form.saved_client_id() is None
    assert _outbox(cohort_session) == []


# -- drafts -----------------------------------------------------------------------------------
def test_a_draft_autosaved_before_a_crash_is_offered_and_restored(
    qtbot: QtBot,
    make_form: FormFactory,
    runner: Runner,
    cohort_session: Session,
    profile_dir: Path,
    cohort_patient: dict[str, Any],
) -> None:
    form = make_form()
    _tap(qtbot, form.person_mode.button("unknown"))
    _type(qtbot, form.description, "Tall, grey hoodie, cut on left hand")
    _tap(qtbot, form.apparent_age.findChildren(QAbstractButton)[2])  # +1: a first guess of 30
    _tap(qtbot, form.sex.button("male"))
    _type(qtbot, form.location, "Canal towpath by the lock")
    _type(qtbot, form.police_incident_ref, "WMP-2026-11-20-2210")
    _tap(qtbot, form.risk["risk_to_self"].button("high"))
    _tap(qtbot, form.referrals.button("substance-misuse"))
    # The autosave timer (not a flush by hand) writes it to the encrypted cache.
    with qtbot.waitSignal(form.draft_saved, timeout=5_000) as saved:
        pass
    runner.wait_until_idle(5_000)
    draft_id = saved.args[0]
    assert [d.draft_id for d in _drafts(cohort_session)] == [draft_id]
    raw = Path(cohort_session.profile.cache_path).read_bytes()
    assert b"grey hoodie" not in raw and b"towpath" not in raw  # encrypted at rest

    # A change after the last autosave, then the app dies: no close, no hide, no flush.
    _type(qtbot, form.narrative, "typed just before the crash")
    shiboken6.delete(form)
    QApplication.processEvents()
    runner.wait_until_idle(5_000)

    with unlock(profile_dir, "pc101", TEST_PIN) as later:
        again = make_form(later)
        assert on_screen(again, "Unsaved encounter found")
        offer = shown_text(qtbot, again, "Unsaved encounter found")
        assert "An unsaved encounter about an unknown person" in offer
        assert again.found_drafts()[0].draft_id == draft_id
        assert again.location.text() == ""  # offered, not forced on the officer
        tap(qtbot, again, "Resume the unsaved encounter")
        assert not on_screen(again, "Unsaved encounter found") and again.draft_id() == draft_id
        assert again.person_mode.value() == "unknown"
        assert again.description.toPlainText() == "Tall, grey hoodie, cut on left hand"
        assert again.apparent_age.value() == 30 and again.sex.value() == "male"
        assert again.location.text() == "Canal towpath by the lock"
        assert again.police_incident_ref.text() == "WMP-2026-11-20-2210"
        assert again.risk["risk_to_self"].value() == "high"
        assert again.referrals.values() == ["substance-misuse"]
        assert again.narrative.toPlainText() == ""  # never autosaved, so lost with the crash
        # Finishing it records the encounter and removes the draft in the same transaction.
        _type(qtbot, again.presenting_situation, "Sitting on the lock gate")
        _tap(qtbot, again.outcome.button("advice-signposting"))
        with qtbot.waitSignal(again.saved, timeout=10_000):
            _tap(qtbot, again.save_button)
        runner.wait_until_idle(5_000)
        assert _drafts(later) == []
        assert len(_outbox(later)) == 1
        again.close()
        runner.wait_until_idle(5_000)


def test_discarding_the_offered_draft_removes_it(
    qtbot: QtBot,
    make_form: FormFactory,
    runner: Runner,
    cohort_session: Session,
) -> None:
    encounters.save_draft(cohort_session, "d-1", {"location": "Old draft"})
    form = make_form()
    assert on_screen(form, "Unsaved encounter found")
    tap(qtbot, form, "Discard the unsaved encounter")
    runner.wait_until_idle(5_000)
    assert not on_screen(form, "Unsaved encounter found") and _drafts(cohort_session) == []


# -- the officer's team ----------------------------------------------------------------------
def _provider(session: Session, client_id: str) -> Any:
    (row,) = [r for r in _outbox(session) if r.client_id == client_id]
    return fhir_out.encounter_of(orjson.loads(row.payload)).get("serviceProvider")


def test_the_profiles_team_is_prefilled_and_saved_with_its_code(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_session: Session,
    cohort_patient: dict[str, Any],
) -> None:
    team = encounters.make_team("Bolton Street Triage", "RXV")
    encounters.set_team(cohort_session.profile, team)
    form = make_form()
    assert form.team.text() == "Bolton Street Triage" and form.team.isVisible()
    assert form.team.accessibleName() == "Team" and form.team.height() >= 48
    _fill_required(qtbot, form, cohort_patient["nhs_number"])
    with qtbot.waitSignal(form.saved, timeout=10_000) as saved:
        _tap(qtbot, form.save_button)
    assert _provider(cohort_session, saved.args[0]) == {
        "display": "Bolton Street Triage",
        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RXV"},
    }


def test_an_edited_team_is_kept_in_the_draft_and_saved_by_name(
    qtbot: QtBot,
    make_form: FormFactory,
    runner: Runner,
    cohort_session: Session,
    cohort_patient: dict[str, Any],
) -> None:
    encounters.set_team(cohort_session.profile, encounters.make_team("Bolton Street Triage", "RXV"))
    form = make_form()
    form.team.setFocus()
    form.team.selectAll()
    qtbot.keyClicks(form.team, "Salford Street Triage")  # covering another team's shift
    form.flush_draft()
    runner.wait_until_idle(5_000)
    (draft,) = _drafts(cohort_session)
    assert draft.data["team"] == "Salford Street Triage"

    again = make_form()  # a later form offers the draft; resuming brings the edit back
    assert again.team.text() == "Bolton Street Triage"
    tap(qtbot, again, "Resume the unsaved encounter")
    assert again.team.text() == "Salford Street Triage"
    _fill_required(qtbot, again, cohort_patient["nhs_number"])
    with qtbot.waitSignal(again.saved, timeout=10_000) as saved:
        _tap(qtbot, again.save_button)
    runner.wait_until_idle(5_000)
    assert _drafts(cohort_session) == []
    # Another team's ODS code is not this device's to claim: recorded by name only.
    assert _provider(cohort_session, saved.args[0]) == {"display": "Salford Street Triage"}


# -- the unknown person -----------------------------------------------------------------------
def test_an_unknown_person_gets_a_provisional_record_from_the_description(
    qtbot: QtBot,
    make_form: FormFactory,
    cohort_session: Session,
) -> None:
    form = make_form(size=(800, 1280))
    _tap(qtbot, form.person_mode.button("unknown"))
    assert on_screen(form, "Unknown person") and not form.nhs_number.isVisible()
    _type(qtbot, form.description, "Slight build, red coat, no shoes")
    steps = {b.text(): b for b in form.apparent_age.findChildren(QAbstractButton)}
    _tap(qtbot, steps["+5"])  # first tap: a mid guess (30)
    _tap(qtbot, steps["−5"])
    _tap(qtbot, steps["−1"])  # 24
    _tap(qtbot, form.sex.button("female"))
    _type(qtbot, form.place_found, "Doorway of 12 High Street")
    _type(qtbot, form.location, "High Street")
    _type(qtbot, form.police_incident_ref, "WMP-2026-11-20-0001")
    _type(qtbot, form.presenting_situation, "Confused, cold")
    _tap(qtbot, form.outcome.button("voluntary-ed"))
    with qtbot.waitSignal(form.saved, timeout=10_000):
        _tap(qtbot, form.save_button)
    (row,) = _outbox(cohort_session)
    assert row.patient_id is None  # the provisional Patient travels inside the record
    bundle = orjson.loads(row.payload)
    (patient,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert fhir_out.PROVISIONAL_TAG in patient["meta"]["tag"]
    assert patient["gender"] == "female"
    assert fhir_out.answers_of(bundle)["patient"] == {
        "unidentified": {
            "description": "Slight build, red coat, no shoes",
            "apparent_age": 24,
            "sex": "female",
            "place_found": "Doorway of 12 High Street",
        }
    }
    (summary,) = encounters.list_encounters(cohort_session)
    assert summary.provisional and summary.patient_display.startswith("Unknown person")


# -- touch and accessibility ------------------------------------------------------------------
@pytest.mark.parametrize("mode", [theme.DAY, theme.NIGHT])
def test_every_control_is_48px_or_more_and_named(
    qtbot: QtBot,
    make_form: FormFactory,
    mode: str,
) -> None:
    form = make_form(size=(800, 1280))
    theme.apply(QApplication.instance(), mode)  # type: ignore[arg-type]
    for shown in ("unknown", "nhs"):
        _tap(qtbot, form.person_mode.button(shown))
        _tap(qtbot, form.section_136.button("yes"))
        _tap(qtbot, form.health_professional_consulted.button("yes"))
        QApplication.processEvents()
        controls = [
            w
            for w in form.findChildren(QWidget)
            if isinstance(w, (QAbstractButton, QLineEdit, QPlainTextEdit)) and w.isVisibleTo(form)
        ]
        assert len(controls) > 60
        small = [(w.accessibleName(), w.height()) for w in controls if w.height() < 48]
        unnamed = [type(w).__name__ for w in controls if not w.accessibleName().strip()]
        assert small == [] and unnamed == []
    theme.apply(QApplication.instance(), theme.DAY)  # type: ignore[arg-type]


def test_section_136_times_show_the_24_hour_limit_and_are_checked(
    qtbot: QtBot, make_form: FormFactory
) -> None:
    """Issue 11 item 11: the time of detention and of arrival at the place of safety; the
    24-hour limit shown while it runs (from arrival, from detention until then); arrival
    before detention refused at the field."""
    form = make_form()
    _tap(qtbot, form.section_136.button("yes"))
    assert form.s136_detained_at.value() is None  # nobody entered it: not claimed
    assert "Set the time of detention" in form.s136_limit.text()
    _tap(qtbot, form.s136_detained_at.buttons["now"])
    _tap(qtbot, form.s136_detained_at.buttons["-60"])
    text = form.s136_limit.text()
    assert text.startswith("24-hour limit: until") and "from detention" in text, text
    assert "22 h" in text or "23 h" in text, text
    _tap(qtbot, form.s136_arrived_at.buttons["now"])
    _tap(qtbot, form.s136_arrived_at.buttons["-60"])
    _tap(qtbot, form.s136_arrived_at.buttons["-60"])  # before the detention
    _tap(qtbot, form.save_button)
    field = form.fields["s136_arrived_at"]
    assert "must be after the time of detention" in field.error.text()
    _tap(qtbot, form.s136_arrived_at.buttons["now"])
    assert "from arrival" in form.s136_limit.text()


def test_a_fixed_error_keeps_its_space_so_the_form_does_not_jump(
    qtbot: QtBot, make_form: FormFactory
) -> None:
    """Issue 11 item 10: error lines that vanish as you type moved the fields under the
    finger. Once shown, an error line keeps its height after it is fixed."""
    form = make_form()
    _tap(qtbot, form.save_button)
    field = form.fields["location"]
    assert field.error.isVisible()
    QApplication.processEvents()  # laid out with the error shown
    before = field.height()
    below = form.fields["location_type"].mapTo(form, form.fields["location_type"].rect().topLeft())
    _type(qtbot, form.location, "Bus station")
    for _ in range(3):  # let the layout settle: a jump would have happened by now
        QApplication.processEvents()
    assert not field.error.isVisible()
    assert field.height() == before
    after = form.fields["location_type"].mapTo(form, form.fields["location_type"].rect().topLeft())
    assert after == below, "the fields below moved when the error went"


def test_save_puts_the_focus_in_the_first_problem(qtbot: QtBot, make_form: FormFactory) -> None:
    """Issue 11 item 10: Save scrolled to the first error but left the focus elsewhere."""
    form = make_form()
    form.person_mode.button("unknown").click()
    _type(qtbot, form.description, "Tall, red coat")
    form.save_button.setFocus()
    _tap(qtbot, form.save_button)
    first = next(
        name for name in ("patient.unidentified.apparent_age", "patient.unidentified.sex",
                          "location") if form.fields[name].error.isVisible()
    )  # fmt: skip
    focused = QApplication.focusWidget()
    assert focused is not None and form.fields[first].isAncestorOf(focused), (first, focused)

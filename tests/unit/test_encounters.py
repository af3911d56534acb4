"""Recording street-triage encounters: validation, the FHIR transaction, the outbox, drafts and
rejections, on a real encrypted cache."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidInput
from app.fhir import (
    APPARENT_AGE_EXT,
    FIELD_RECORD_ID_SYSTEM,
    LEGAL_STATUS_EXT,
    NHS_NUMBER_SYSTEM,
    ODS_ORG_SYSTEM,
    POLICE_INCIDENT_SYSTEM,
    RECORD_STATUS_SYSTEM,
    S136_ARRIVED_EXT,
    S136_DETAINED_EXT,
    STREET_TRIAGE_QUESTIONNAIRE,
)
from app.services import _encounter_rules, encounters
from app.services._encounter_fhir import build_transaction, encounter_of, questionnaire_resource
from app.services.encounters import (
    EncounterInput,
    InvalidEncounter,
    KnownPatient,
    PatientByNhsNumber,
    UnidentifiedPerson,
    list_encounters,
    load_drafts,
    make_team,
    parse_encounter,
    parse_encounter_json,
    record,
    record_many,
    recorded_answers,
    resolve_rejected,
    save_draft,
    set_team,
    team_of,
    validate,
)
from app.services.session import Session, unlock
from app.store import HOME_SOURCE
from tests.conftest import TEST_PIN

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
NARRATIVE = "Narrativecanary said she had not slept for three days"


def valid(**changes: Any) -> dict[str, Any]:
    """A complete, valid encounter in the JSON input format (an unidentified person)."""
    obj: dict[str, Any] = {
        "patient": {
            "unidentified": {"description": "Tall, red coat", "apparent_age": 30, "sex": "female"}
        },
        "start": "2026-11-20T22:15:00Z",
        "end": "2026-11-20T23:05:00Z",
        "location": "Bus station, Moor Street",
        "location_type": "public-place",
        "police_incident_ref": "WMP-2026-11-20-1042",
        "presenting_situation": "Distressed, talking of ending her life",
        "section_136": False,
        "outcome": "referred-crisis-team",
        "narrative": NARRATIVE,
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not _DROP}


_DROP = object()
S136 = {
    "section_136": True,
    "health_professional_consulted": True,
    "consulted_with": "Street triage nurse",
    "place_of_safety": "hbpos",
    "conveyance": "ambulance",
    "outcome": "s136-place-of-safety",
    "s136_detained_at": "2026-11-20T22:40:00Z",
    "s136_arrived_at": "2026-11-20T23:00:00Z",
}
FULL = {
    **S136,
    "response_mode": "face-to-face",
    "known_to_services": "yes",
    "crisis_plan_consulted": True,
    "risk_to_self": "high",
    "risk_to_others": "low",
    "risk_from_others": "medium",
    "referrals": ["crisis-team", "gp"],
    "team": "Bolton Street Triage",
}


def errors_of(obj: Any, session: Session | None = None) -> dict[str, str]:
    inp, errors = parse_encounter(obj, session, now=NOW)
    assert (inp is None) == bool(errors)
    return {e.field: e.message for e in errors}


# -- validation -------------------------------------------------------------------------------
def test_a_complete_encounter_is_accepted() -> None:
    assert errors_of(valid()) == {}
    assert errors_of(valid(**FULL)) == {}


@pytest.mark.parametrize("name", encounters.REQUIRED_FIELDS)
def test_each_required_field_is_named_when_missing(name: str) -> None:
    assert errors_of(valid(**{name: _DROP}))[name] == "is required"


@pytest.mark.parametrize(
    "changes, field, fragment",
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"start": "2026-11-20 22:15"}, "start", "time zone"),
        ({"start": "yesterday"}, "start", "date-time"),
        ({"start": 1763676900}, "start", "date-time"),
        ({"end": "2026-11-20T22:15:00Z"}, "end", "after start"),
        ({"end": "2026-11-20T21:00:00Z"}, "end", "after start"),
        ({"start": "2026-11-19T20:00:00Z"}, "end", "24 hours"),
        ({"start": "2026-11-21T00:50:00Z", "end": "2026-11-21T02:00:00Z"}, "end", "future"),
        ({"end": "2026-11-20T23:05:00+00:00"}, None, None),
        ({"end": "2026-11-21T00:05:00+01:00"}, None, None),
        ({"location": "  "}, "location", "required"),
        ({"location": "x" * 501}, "location", "longer than 500"),
        ({"location": 5}, "location", "string"),
        ({"police_incident_ref": ""}, "police_incident_ref", "required"),
        ({"presenting_situation": ""}, "presenting_situation", "required"),
        ({"narrative": ""}, None, None),
        ({"narrative": None}, "narrative", "string"),
        ({"section_136": "no"}, "section_136", "true or false"),
        ({"outcome": "sent-home"}, "outcome", "must be one of"),
        ({"response_mode": "carrier-pigeon"}, "response_mode", "must be one of"),
        ({"location_type": "car"}, "location_type", "must be one of"),
        ({"known_to_services": "maybe"}, "known_to_services", "must be one of"),
        ({"crisis_plan_consulted": 1}, "crisis_plan_consulted", "true or false"),
        ({"risk_to_self": "extreme"}, "risk_to_self", "must be one of"),
        ({"risk_to_others": "HIGH"}, "risk_to_others", "must be one of"),
        ({"risk_from_others": 3}, "risk_from_others", "string"),
        ({"referrals": "gp"}, "referrals", "list"),
        ({"referrals": ["gp", "vet"]}, "referrals[1]", "must be one of"),
        ({"referrals": ["gp", "gp"]}, "referrals[1]", "twice"),
        ({"risk_to_self": None, "referrals": []}, None, None),
        ({"team": "x" * 201}, "team", "longer than 200"),
        ({"team": 5}, "team", "string"),
        ({"team": None}, None, None),
        ({"team": ""}, None, None),
        # Section 136: the law and its record.
        ({**S136, "location_type": "dwelling"}, "section_136", "dwelling"),
        ({**S136, "location_type": None}, "location_type", "required when section 136 is used"),
        ({**S136, "place_of_safety": None}, "place_of_safety", "required"),
        ({**S136, "conveyance": None}, "conveyance", "required"),
        ({**S136, "health_professional_consulted": None}, "health_professional_consulted", "req"),
        ({**S136, "conveyance": "taxi"}, "conveyance", "must be one of"),
        ({**S136, "place_of_safety": "home"}, "place_of_safety", "must be one of"),
        (
            {**S136, "health_professional_consulted": False},
            "consulted_with",
            "health professional was consulted",
        ),
        ({"place_of_safety": "hbpos"}, "place_of_safety", "only when section 136 is used"),
        # s136 times (issue 11 item 11): the 24-hour limit runs from them.
        ({**S136, "s136_detained_at": None}, "s136_detained_at", "required"),
        (
            {**S136, "s136_arrived_at": "2026-11-20T22:30:00Z"},
            "s136_arrived_at",
            "must be after the time of detention",
        ),
        ({**S136, "s136_detained_at": "2026-11-22T22:40:00Z"}, "s136_detained_at", "future"),
        ({**S136, "s136_arrived_at": "2026-11-22T23:00:00Z"}, "s136_arrived_at", "future"),
        ({**S136, "s136_arrived_at": None}, None, None),
        ({"s136_detained_at": "2026-11-20T22:40:00Z"}, "s136_detained_at", "only when section"),
        ({"conveyance": "ambulance"}, "conveyance", "only when section 136 is used"),
        ({"outcome": "s136-place-of-safety"}, "outcome", "when section 136 is not used"),
        ({"location_type": "dwelling"}, None, None),
        # Police station: never a place of safety for a child.
        (
            {
                **S136,
                "place_of_safety": "police-station",
                "patient": {
                    "unidentified": {"description": "d", "apparent_age": 16, "sex": "male"}
                },
            },
            "place_of_safety",
            "under 18",
        ),
        (
            {
                **S136,
                "place_of_safety": "police-station",
                "patient": {
                    "unidentified": {"description": "d", "apparent_age": 18, "sex": "male"}
                },
            },
            None,
            None,
        ),
        # The person.
        ({"patient": "Jane"}, "patient", "one of"),
        ({"patient": {"id": "a", "nhs_number": "9434765870"}}, "patient", "one of"),
        ({"patient": {"name": "Jane"}}, "patient.name", "unknown field"),
        ({"patient": {"id": 7}}, "patient.id", "string"),
        ({"patient": {"id": " "}}, "patient.id", "empty"),
        ({"patient": {"nhs_number": "485 777 3456"}}, "patient.nhs_number", "not a valid"),
        ({"patient": {"nhs_number": "94347658"}}, "patient.nhs_number", "not a valid"),
        ({"patient": {"nhs_number": 9434765870}}, "patient.nhs_number", "string"),
        ({"patient": {"nhs_number": "943 476 5870"}}, None, None),
        ({"patient": {"unidentified": "tall"}}, "patient.unidentified", "object"),
        (
            {"patient": {"unidentified": {"apparent_age": 30, "sex": "female"}}},
            "patient.unidentified.description",
            "required",
        ),
        (
            {"patient": {"unidentified": {"description": "", "apparent_age": 30, "sex": "male"}}},
            "patient.unidentified.description",
            "required",
        ),
        (
            {
                "patient": {
                    "unidentified": {"description": "d", "apparent_age": True, "sex": "male"}
                }
            },
            "patient.unidentified.apparent_age",
            "whole number",
        ),
        (
            {"patient": {"unidentified": {"description": "d", "apparent_age": 130, "sex": "male"}}},
            "patient.unidentified.apparent_age",
            "0 to 120",
        ),
        (
            {"patient": {"unidentified": {"description": "d", "apparent_age": 30, "sex": "m"}}},
            "patient.unidentified.sex",
            "must be one of",
        ),
        (
            {
                "patient": {
                    "unidentified": {"description": "d", "apparent_age": 30, "sex": "male", "x": 1}
                }
            },
            "patient.unidentified.x",
            "unknown field",
        ),
    ],
)
def test_validation_names_the_field_and_the_reason(
    changes: dict[str, Any], field: str | None, fragment: str | None
) -> None:
    errors = errors_of(valid(**changes))
    if field is None:
        assert errors == {}
    else:
        assert field in errors, errors
        assert fragment in errors[field]


def test_a_non_object_is_refused() -> None:
    assert errors_of([]) == {"encounter": "must be a JSON object"}


def test_messages_never_echo_the_values() -> None:
    bad = valid(location="Q" * 600, presenting_situation="")
    bad["patient"] = {"nhs_number": "485 777 3456"}
    with pytest.raises(InvalidEncounter) as caught:
        parse_encounter_json(bad, now=NOW)
    text = str(caught.value)
    assert "QQQ" not in text and "485" not in text
    assert {e.field for e in caught.value.errors} == {
        "location",
        "presenting_situation",
        "patient.nhs_number",
    }


def test_typed_input_from_the_form_gets_the_same_checks() -> None:
    inp = parse_encounter_json(valid(**S136), now=NOW)
    from dataclasses import replace

    bad = replace(inp, location_type="dwelling", end=inp.start - timedelta(minutes=1))
    assert {e.field for e in validate(bad, now=NOW)} == {"section_136", "end"}


@settings(max_examples=200, deadline=None)
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )
    | st.fixed_dictionaries(
        {},
        optional={
            k: st.none() | st.booleans() | st.integers() | st.text(max_size=30) | st.just(v)
            for k, v in valid(**FULL).items()
        },
    )
)
def test_fuzzed_input_gives_only_field_errors(obj: Any) -> None:
    inp, errors = parse_encounter(obj, now=NOW)
    assert (inp is None) == bool(errors)
    for error in errors:
        assert isinstance(error.field, str) and isinstance(error.message, str)


# -- the FHIR transaction ---------------------------------------------------------------------
def _bundle(obj: dict[str, Any], client_id: str = "c0ffee00-0000-4000-8000-000000000001") -> dict:
    inp = parse_encounter_json(obj, now=NOW)
    patient_id = None if isinstance(inp.patient, UnidentifiedPerson) else "p1"
    return build_transaction(
        inp, client_id=client_id, patient_id=patient_id, user_id="pc101", device_id="dev-1",
        recorded_at=NOW,
    )  # fmt: skip


def _model(rtype: str) -> Any:
    return getattr(importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}"), rtype)


@pytest.mark.parametrize("changes", [{}, FULL, {"patient": {"id": "p1"}, **FULL}])
def test_every_entry_validates_as_fhir_r4(changes: dict[str, Any]) -> None:
    bundle = _bundle(valid(**changes))
    _model("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        _model(entry["resource"]["resourceType"]).model_validate(entry["resource"])


def test_every_entry_is_a_conditional_create_on_a_stable_identifier() -> None:
    first, second = _bundle(valid(**FULL)), _bundle(valid(**FULL))
    conditions = [e["request"]["ifNoneExist"] for e in first["entry"]]
    assert all(e["request"]["method"] == "POST" for e in first["entry"])
    assert [e["request"]["url"] for e in first["entry"]] == [
        e["resource"]["resourceType"] for e in first["entry"]
    ]
    assert len(set(conditions)) == len(conditions)  # unique
    assert conditions == [e["request"]["ifNoneExist"] for e in second["entry"]]  # stable
    for entry, condition in zip(first["entry"], conditions, strict=True):
        res = entry["resource"]
        param, _, token = condition.partition("=")
        system, _, value = token.partition("|")
        assert system == FIELD_RECORD_ID_SYSTEM and value.startswith("c0ffee00-")
        if res["resourceType"] == "Provenance":  # R4 Provenance has no identifier
            assert param == "_tag" and {"system": system, "code": value} in res["meta"]["tag"]
        else:
            idents = (
                res["identifier"] if isinstance(res["identifier"], list) else [res["identifier"]]
            )
            assert param == "identifier" and {"system": system, "value": value} in idents
    values = sorted(c.split("|")[1].removeprefix("c0ffee00-0000-4000-8000-000000000001")
                    for c in conditions)  # fmt: skip
    assert values == ["", "-form", "-patient", "-provenance", "-risk-from-others",
                      "-risk-others", "-risk-self"]  # fmt: skip


def test_references_inside_the_bundle_are_urn_uuids_that_exist() -> None:
    bundle = _bundle(valid(**FULL))
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    assert all(u.startswith("urn:uuid:") for u in full_urls)
    assert len(set(full_urls)) == len(full_urls)
    refs = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                refs.append(node["reference"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(bundle)
    assert refs and all(r in full_urls for r in refs)
    provenance = bundle["entry"][-1]["resource"]
    assert {t["reference"] for t in provenance["target"]} == set(full_urls[:-1])


def test_the_encounter_carries_the_triage_facts() -> None:
    bundle = _bundle(valid(**FULL, patient={"id": "p1"}))
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types == ["Encounter", "Observation", "Observation", "Observation",
                     "QuestionnaireResponse", "Provenance"]  # fmt: skip
    enc = bundle["entry"][0]["resource"]
    assert enc["status"] == "finished" and enc["class"]["code"] == "FLD"
    assert enc["subject"] == {"reference": "Patient/p1"}
    assert enc["period"] == {"start": "2026-11-20T22:15:00Z", "end": "2026-11-20T23:05:00Z"}
    assert {"system": POLICE_INCIDENT_SYSTEM, "value": "WMP-2026-11-20-1042"}.items() <= (
        enc["identifier"][1].items()
    )
    assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == (
        "s136-place-of-safety"
    )
    assert enc["location"][0]["physicalType"]["coding"][0]["code"] == "public-place"
    legal, detained, arrived = enc["extension"]
    assert legal["url"] == LEGAL_STATUS_EXT
    assert detained == {"url": S136_DETAINED_EXT, "valueDateTime": "2026-11-20T22:40:00Z"}
    assert arrived == {"url": S136_ARRIVED_EXT, "valueDateTime": "2026-11-20T23:00:00Z"}
    classification = {e["url"]: e for e in legal["extension"]}["legalStatusClassification"]
    assert classification["valueCodeableConcept"]["coding"][0]["code"] == "20"
    assert enc["participant"][0]["individual"] == {
        "identifier": {"system": "https://kerbside.example/Id/user", "value": "pc101"}
    }
    levels = {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]["valueCodeableConcept"]["coding"][
            0
        ]["code"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert levels == {"risk-to-self": "high", "risk-to-others": "low", "risk-from-others": "medium"}
    assert all(
        e["resource"]["encounter"] == {"reference": bundle["entry"][0]["fullUrl"]}
        for e in bundle["entry"][1:5]
    )
    qr = bundle["entry"][4]["resource"]
    assert qr["questionnaire"].startswith(STREET_TRIAGE_QUESTIONNAIRE + "|")
    answered = {
        item["linkId"]: item["answer"][0]
        for group in qr["item"]
        for item in group.get("item", [])
        if item.get("answer")
    }
    assert answered["s136_detained_at"] == {"valueDateTime": "2026-11-20T22:40:00Z"}
    assert answered["s136_arrived_at"] == {"valueDateTime": "2026-11-20T23:00:00Z"}


def test_no_legal_status_without_section_136() -> None:
    enc = _bundle(valid())["entry"][1]["resource"]
    assert enc["resourceType"] == "Encounter" and "extension" not in enc


def test_an_unidentified_person_gets_a_provisional_patient_without_made_up_facts() -> None:
    bundle = _bundle(valid())
    patient = bundle["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient" and patient["active"] is True
    assert {"system": RECORD_STATUS_SYSTEM, "code": "provisional"}.items() <= (
        patient["meta"]["tag"][0].items()
    )
    assert patient["name"] == [{"use": "temp", "text": "Unknown person"}]
    assert patient["gender"] == "female" and "birthDate" not in patient
    assert all(i["system"] != NHS_NUMBER_SYSTEM for i in patient["identifier"])
    age = {e["url"]: e for e in patient["extension"]}[APPARENT_AGE_EXT]["valueAge"]
    assert age["value"] == 30 and age["code"] == "a"
    urn = bundle["entry"][0]["fullUrl"]
    assert all(
        e["resource"]["subject"] == {"reference": urn}
        for e in bundle["entry"]
        if "subject" in e["resource"]
    )


def test_the_questionnaire_file_is_the_form_definition() -> None:
    on_disk = json.loads((ROOT / "app/resources/questionnaire-street-triage.json").read_text())
    assert on_disk == questionnaire_resource()
    _model("Questionnaire").model_validate(on_disk)
    link_ids = {i["linkId"] for g in on_disk["item"] for i in g["item"]}
    assert link_ids == set(encounters.REQUIRED_FIELDS + encounters.OPTIONAL_FIELDS) - {"patient"}


# -- recording on a real cache ----------------------------------------------------------------
def _cached_patient(session: Session, adult: bool = True) -> dict[str, Any]:
    for pid in session.store.resource_ids(HOME_SOURCE, "Patient"):
        patient = session.store.get_resource(HOME_SOURCE, "Patient", pid)
        assert patient is not None
        if patient.get("identifier") and (patient["birthDate"] < "2006") == adult:
            return patient
    raise AssertionError("the cohort has no such patient")


def _outbox(session: Session) -> list[Any]:
    return session.store.outbox_rows()


def test_recording_queues_one_transaction_bundle(cohort_session: Session) -> None:
    patient = _cached_patient(cohort_session)
    nhs = patient["identifier"][0]["value"]
    obj = valid(**FULL, patient={"nhs_number": f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"})
    saved = record(cohort_session, parse_encounter_json(obj, cohort_session, now=NOW), now=NOW)
    (row,) = _outbox(cohort_session)
    assert (row.client_id, row.kind, row.state) == (saved.client_id, "encounter", "pending")
    assert row.patient_id == patient["id"] == saved.patient_id and not saved.provisional
    assert row.user_id == "pc101" and row.created_at == saved.created_at
    bundle = orjson.loads(row.payload)
    assert bundle["type"] == "transaction"
    assert bundle["entry"][0]["resource"]["subject"] == {"reference": f"Patient/{patient['id']}"}
    # Field records stay out of the resource table (it mirrors the central record).
    assert cohort_session.store.count_by_type().get("QuestionnaireResponse") is None


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"patient": {"nhs_number": "485 777 3456"}}, "patient.nhs_number"),
        ({"patient": {"nhs_number": "485 777 3457"}}, "patient.nhs_number"),  # valid, not cached
        ({"patient": {"id": "no-such-person"}}, "patient.id"),
        ({"end": "2026-11-20T21:00:00Z"}, "end"),
        ({"outcome": "unknown-outcome"}, "outcome"),
    ],
)
def test_invalid_input_is_refused_and_nothing_is_stored(
    cohort_session: Session, changes: dict[str, Any], field: str
) -> None:
    obj = valid(**changes)
    problems = errors_of(obj, cohort_session)
    assert field in problems
    typed = _typed_anyway(obj)
    with pytest.raises(InvalidEncounter) as caught:
        record(cohort_session, typed, now=NOW)
    assert field in {e.field for e in caught.value.errors}
    assert _outbox(cohort_session) == []


def _typed_anyway(obj: dict[str, Any]) -> EncounterInput:
    """The typed input the form could build from `obj`, skipping the JSON checks."""
    person = obj["patient"]
    patient: Any
    if "id" in person:
        patient = KnownPatient(person["id"])
    elif "nhs_number" in person:
        patient = PatientByNhsNumber(person["nhs_number"])
    else:
        patient = UnidentifiedPerson(**person["unidentified"])
    fields = {k: v for k, v in obj.items() if k != "patient"}
    for name in ("start", "end"):
        fields[name] = datetime.fromisoformat(fields[name])
    return EncounterInput(patient=patient, **fields)


def test_police_station_refused_for_a_cached_child(cohort_session: Session) -> None:
    child = _cached_patient(cohort_session, adult=False)
    obj = valid(**{**S136, "place_of_safety": "police-station"}, patient={"id": child["id"]})
    assert "under 18" in errors_of(obj, cohort_session)["place_of_safety"]
    adult = _cached_patient(cohort_session)
    obj = valid(**{**S136, "place_of_safety": "police-station"}, patient={"id": adult["id"]})
    assert errors_of(obj, cohort_session) == {}


@pytest.mark.parametrize(
    "birth_date, under_18",
    [("2008-11-20", False), ("2008-11-21", True), ("2008", True), ("2008-10", False), ("x", None)],
)
def test_partial_birth_dates_count_as_the_youngest_possible(
    birth_date: str, under_18: bool | None
) -> None:
    age = _encounter_rules._youngest_age(birth_date, datetime(2026, 11, 20, 22, tzinfo=UTC))
    assert (age is None) if under_18 is None else ((age < 18) == under_18)


def test_a_failed_write_leaves_nothing(
    cohort_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two records given one client id: the second insert breaks UNIQUE, all is rolled back."""
    save_draft(cohort_session, "d1", {"location": "somewhere"})
    same = uuid.UUID("00000000-0000-4000-8000-000000000000")
    monkeypatch.setattr(encounters.uuid, "uuid4", lambda: same)
    inp = parse_encounter_json(valid(), now=NOW)
    with pytest.raises(Exception, match="UNIQUE"):
        record_many(cohort_session, [inp, inp], draft_ids=["d1", None], now=NOW)
    assert _outbox(cohort_session) == []
    assert [d.draft_id for d in load_drafts(cohort_session)] == ["d1"]


def test_record_many_validates_everything_before_writing(session: Session) -> None:
    good = parse_encounter_json(valid(), now=NOW)
    from dataclasses import replace

    bad = replace(good, outcome="nope")
    with pytest.raises(InvalidEncounter) as caught:
        record_many(session, [good, bad, good], now=NOW)
    assert [e.field for e in caught.value.errors] == ["[1].outcome"]
    assert _outbox(session) == []
    assert len(record_many(session, [good, good], now=NOW)) == 2
    assert len(_outbox(session)) == 2


# -- drafts -----------------------------------------------------------------------------------
def test_a_draft_survives_closing_and_reopening_the_cache(
    session: Session, profile_dir: Path
) -> None:
    partial = {"location": "Canal towpath", "risk_to_self": "high", "start": NOW}
    save_draft(session, "draft-1", partial)
    save_draft(session, "draft-1", {**partial, "narrative": "more"})  # autosave overwrites
    session.close()
    with unlock(profile_dir, "pc101", TEST_PIN) as again:
        (draft,) = load_drafts(again)
        assert draft.draft_id == "draft-1"
        assert draft.data == {
            "location": "Canal towpath",
            "risk_to_self": "high",
            "start": "2026-11-21T01:00:00Z",
            "narrative": "more",
        }
        encounters.discard_draft(again, "draft-1")
        assert load_drafts(again) == []


def test_recording_from_a_draft_removes_it_in_the_same_transaction(session: Session) -> None:
    save_draft(session, "d2", {"location": "x"})
    record(session, parse_encounter_json(valid(), now=NOW), draft_id="d2", now=NOW)
    assert load_drafts(session) == [] and len(_outbox(session)) == 1


def test_drafts_belong_to_their_user(session: Session) -> None:
    session.store.save_draft("theirs", "encounter", "pc202", b"{}")
    assert load_drafts(session) == []
    with pytest.raises(InvalidInput):
        save_draft(session, "", {})


# -- the device's list, rejections ------------------------------------------------------------
def _reject(session: Session, client_id: str, reason: str = "Patient reference not found") -> None:
    with session.store.transaction() as conn:
        conn.execute(
            "UPDATE outbox SET state = 'rejected', reason = ?, attempts = 1 WHERE client_id = ?",
            (reason, client_id),
        )


def test_todays_encounters_show_state_and_who(cohort_session: Session) -> None:
    patient = _cached_patient(cohort_session)
    old = record(
        cohort_session,
        parse_encounter_json(valid(patient={"id": patient["id"]}), cohort_session, now=NOW),
        now=NOW,
    )
    new = record(cohort_session, parse_encounter_json(valid(), now=NOW), now=NOW)
    two_days_ago = (NOW - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    with cohort_session.store.transaction() as conn:
        conn.execute("UPDATE outbox SET state = 'sent' WHERE client_id = ?", (new.client_id,))
        conn.execute(
            "UPDATE outbox SET created_at = ? WHERE client_id = ?", (two_days_ago, old.client_id)
        )
    listed = list_encounters(cohort_session)
    assert [s.client_id for s in listed] == [new.client_id, old.client_id]
    assert listed[0].state == "sent" and listed[0].provisional
    assert listed[0].patient_display == "Unknown person (female, about 30)"
    assert listed[1].state == "waiting" and listed[1].patient_id == patient["id"]
    assert listed[1].patient_display not in ("", "Name not recorded")
    assert listed[1].outcome == "referred-crisis-team"
    # `since` hides older sent records, never ones still waiting or rejected.
    assert [s.client_id for s in list_encounters(cohort_session, since=NOW)] == [
        new.client_id,
        old.client_id,
    ]
    with cohort_session.store.transaction() as conn:
        conn.execute("UPDATE outbox SET state = 'sent'")
    assert [s.client_id for s in list_encounters(cohort_session, since=NOW)] == [new.client_id]
    assert list_encounters(cohort_session, user_id="someone-else") == []


def test_retry_requeues_a_rejected_record_and_audits_it(session: Session) -> None:
    saved = record(session, parse_encounter_json(valid(), now=NOW), now=NOW)
    with pytest.raises(InvalidInput, match="only a rejected record"):
        resolve_rejected(session, saved.client_id, "retry")
    _reject(session, saved.client_id)
    (summary,) = list_encounters(session)
    assert summary.state == "rejected" and summary.reason == "Patient reference not found"
    resolve_rejected(session, saved.client_id, "retry")
    (row,) = _outbox(session)
    assert row.state == "pending" and row.attempts == 0
    assert session.store.audit_entries()[-1].action == "retry-field-record"
    assert session.store.verify_audit_chain() is None


def test_retry_after_an_edit_keeps_the_client_id(session: Session) -> None:
    saved = record(session, parse_encounter_json(valid(), now=NOW), now=NOW)
    _reject(session, saved.client_id, "end: invalid")
    answers = recorded_answers(session, saved.client_id)
    assert parse_encounter_json(answers, now=NOW) == parse_encounter_json(valid(), now=NOW)
    answers["end"] = "2026-11-20T23:45:00Z"
    corrected = parse_encounter_json(answers, now=NOW)
    resolve_rejected(session, saved.client_id, "retry", corrected=corrected, now=NOW)
    (row,) = _outbox(session)
    bundle = orjson.loads(row.payload)
    assert row.state == "pending" and row.client_id == saved.client_id
    assert bundle["entry"][1]["resource"]["period"]["end"] == "2026-11-20T23:45:00Z"
    assert bundle["entry"][1]["resource"]["identifier"][0]["value"] == saved.client_id
    assert session.store.audit_entries()[-1].action == "amend-field-record"


def test_discard_keeps_the_record_and_needs_a_reason(session: Session) -> None:
    saved = record(session, parse_encounter_json(valid(), now=NOW), now=NOW)
    _reject(session, saved.client_id)
    with pytest.raises(InvalidInput, match="reason"):
        resolve_rejected(session, saved.client_id, "discard")
    resolve_rejected(session, saved.client_id, "discard", reason="Duplicate of another record")
    (row,) = _outbox(session)
    assert row.state == "discarded" and row.resolved_by == "pc101" and row.payload
    (summary,) = list_encounters(session)
    assert summary.state == "discarded" and summary.reason == "Patient reference not found"
    entry = session.store.audit_entries()[-1]
    assert (entry.action, entry.reason) == ("discard-field-record", "Duplicate of another record")
    with pytest.raises(InvalidInput):
        resolve_rejected(session, saved.client_id, "retry")
    with pytest.raises(InvalidInput, match="no such encounter"):
        resolve_rejected(session, "nope", "retry")


def test_the_recorded_payload_reads_back_as_the_input(session: Session) -> None:
    obj = valid(**FULL)
    saved = record(session, parse_encounter_json(obj, now=NOW), now=NOW)
    answers = recorded_answers(session, saved.client_id)
    expected = copy.deepcopy(obj)
    assert answers == expected


# -- the officer's team ---------------------------------------------------------------------
TEAM = "Bolton Street Triage"


def test_the_team_is_the_encounters_service_provider_with_its_ods_code() -> None:
    inp = parse_encounter_json(valid(team=f"  {TEAM} "), now=NOW)
    kwargs: dict[str, Any] = {"client_id": "c1", "patient_id": None, "user_id": "pc101"}
    kwargs |= {"device_id": "dev-1", "recorded_at": NOW}
    coded = encounter_of(build_transaction(inp, team_code="RXV", **kwargs))
    assert coded["serviceProvider"] == {
        "display": TEAM,
        "identifier": {"system": ODS_ORG_SYSTEM, "value": "RXV"},
    }
    _model("Encounter").model_validate(coded)
    named = encounter_of(build_transaction(inp, **kwargs))
    assert named["serviceProvider"] == {"display": TEAM}
    blank = parse_encounter_json(valid(team=" "), now=NOW)
    assert "serviceProvider" not in encounter_of(build_transaction(blank, **kwargs))


def test_a_missing_team_is_the_profiles_and_only_that_team_gets_its_code(
    session: Session,
) -> None:
    assert parse_encounter_json(valid(), session, now=NOW).team is None  # no team set
    set_team(session.profile, make_team(TEAM, "rxv"))
    assert team_of(session.profile) == encounters.Team(TEAM, "RXV")
    assert parse_encounter_json(valid(), now=NOW).team is None  # no session, no default
    ours = parse_encounter_json(valid(), session, now=NOW)
    theirs = parse_encounter_json(valid(team="Salford Street Triage"), session, now=NOW)
    nobody = parse_encounter_json(valid(team=None), session, now=NOW)
    assert (ours.team, theirs.team, nobody.team) == (TEAM, "Salford Street Triage", None)
    saved = record_many(session, [ours, theirs, nobody], now=NOW)
    payloads = {r.client_id: orjson.loads(r.payload) for r in _outbox(session)}
    providers = [encounter_of(payloads[s.client_id]).get("serviceProvider") for s in saved]
    assert providers == [
        {"display": TEAM, "identifier": {"system": ODS_ORG_SYSTEM, "value": "RXV"}},
        {"display": "Salford Street Triage"},
        None,
    ]
    assert recorded_answers(session, saved[0].client_id)["team"] == TEAM
    assert "team" not in recorded_answers(session, saved[2].client_id)
    by_id = {e.client_id: e.team for e in list_encounters(session)}
    assert [by_id[s.client_id] for s in saved] == [TEAM, "Salford Street Triage", None]


def test_a_too_long_team_is_refused_by_name_and_nothing_is_stored(session: Session) -> None:
    set_team(session.profile, make_team(TEAM))
    long = dataclasses.replace(parse_encounter_json(valid(), session, now=NOW), team="T" * 201)
    with pytest.raises(InvalidEncounter) as caught:
        record(session, long, now=NOW)
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("team", "is longer than 200 characters")
    ]
    assert _outbox(session) == []


@pytest.mark.parametrize(
    "name, code, field, fragment",
    [
        ("  ", None, "team", "must not be empty"),
        ("x" * 201, None, "team", "longer than 200"),
        ("Bolton\nStreet Triage", None, "team", "one line"),
        (TEAM, "R", "team_code", "ODS code"),
        (TEAM, "RXV 01", "team_code", "ODS code"),
    ],
)
def test_a_bad_team_setting_is_refused_by_name(
    name: str, code: str | None, field: str, fragment: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_team(name, code)
    assert caught.value.field == field and fragment in str(caught.value)


def test_clearing_the_team_drops_its_code_too(session: Session) -> None:
    set_team(session.profile, make_team(TEAM, "RXV01"))
    set_team(session.profile, None)
    assert team_of(session.profile) is None
    assert session.profile.settings["team_code"] is None

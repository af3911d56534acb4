"""An encounter about someone another Trust knows goes home named by verified NHS number
(issue 14, docs/design/multi-trust.md section 6): the transaction Bundle's Patient entry,
who qualifies, and reading the home id back from the server's answer."""

from __future__ import annotations

import copy
import importlib
from datetime import UTC, datetime
from typing import Any

import pytest

from app.fhir import (
    FIELD_RECORD_ID_SYSTEM,
    NHS_NUMBER_SYSTEM,
    NHS_VERIFICATION_EXT,
    NHS_VERIFICATION_SYSTEM,
    verified_nhs_number,
)
from app.services._encounter_fhir import answers_of, build_transaction, encounter_of
from app.services.encounters import (
    PersonAtSource,
    home_patient_id,
    parse_encounter_json,
    person_at_source,
)
from sync._push import payload_types

NOW = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
CLIENT_ID = "c0ffee00-0000-4000-8000-000000000007"
NUMBER = "9434765870"
CONDITION = f"identifier={NHS_NUMBER_SYSTEM}|{NUMBER}"


def neighbours_patient(number: str = NUMBER, status: str | None = "01") -> dict[str, Any]:
    ident: dict[str, Any] = {"system": NHS_NUMBER_SYSTEM, "value": number}
    if status:
        ident["extension"] = [
            {
                "url": NHS_VERIFICATION_EXT,
                "valueCodeableConcept": {
                    "coding": [{"system": NHS_VERIFICATION_SYSTEM, "code": status}]
                },
            }
        ]
    return {
        "resourceType": "Patient",
        "id": "n-42",
        "identifier": [{"system": "https://trust-2.example/mrn", "value": "X1"}, ident],
        "name": [
            {"use": "usual", "given": ["Jo"]},
            {"use": "official", "family": "Bloggs", "given": ["Joanna", "Mary"]},
        ],
        "birthDate": "1988-04-03",
        "gender": "female",
        "address": [{"city": "Walsall"}],
        "telecom": [{"system": "phone", "value": "07700 900123"}],
    }


def encounter_input() -> Any:
    return parse_encounter_json(
        {
            "patient": {"unidentified": {"description": "x", "apparent_age": 30, "sex": "female"}},
            "start": "2026-11-20T22:15:00Z",
            "end": "2026-11-20T23:05:00Z",
            "location": "Bus station, Moor Street",
            "police_incident_ref": "WMP-2026-11-20-1042",
            "presenting_situation": "Distressed in a public place",
            "section_136": False,
            "outcome": "referred-crisis-team",
            "narrative": "Synthetic",
            "risk_to_self": "high",
        },
        now=NOW,
    )


def home_bundle(person: PersonAtSource | None = None) -> dict[str, Any]:
    return build_transaction(
        encounter_input(),
        client_id=CLIENT_ID,
        patient_id=None,
        user_id="pc101",
        device_id="dev-1",
        recorded_at=NOW,
        subject_nhs=person or person_at_source(neighbours_patient()),
    )


def test_only_a_valid_verified_nhs_number_qualifies() -> None:
    person = person_at_source(neighbours_patient())
    assert person == PersonAtSource(
        NUMBER,
        {"use": "official", "family": "Bloggs", "given": ["Joanna", "Mary"]},
        "1988-04-03",
        "female",
    )
    assert verified_nhs_number(neighbours_patient()) == NUMBER
    for unverified in ("02", "04", None):  # traced but not verified, or no status at all
        assert person_at_source(neighbours_patient(status=unverified)) is None
    assert person_at_source(neighbours_patient(number="9434765871")) is None  # check digit
    no_number = neighbours_patient()
    no_number["identifier"] = no_number["identifier"][:1]
    assert person_at_source(no_number) is None


def test_the_subject_is_a_patient_created_conditionally_on_the_nhs_number() -> None:
    bundle = home_bundle()
    [(url, patient_entry)] = [
        (e["fullUrl"], e) for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert patient_entry["request"] == {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": CONDITION,
    }
    patient = patient_entry["resource"]
    assert [i["value"] for i in patient["identifier"]] == [NUMBER]  # only what finds them
    assert verified_nhs_number(patient) == NUMBER
    assert patient["name"] == [{"use": "official", "family": "Bloggs", "given": ["Joanna", "Mary"]}]
    assert (patient["birthDate"], patient["gender"]) == ("1988-04-03", "female")
    assert "address" not in patient and "telecom" not in patient and "tag" not in patient["meta"]
    for entry in bundle["entry"]:
        res = entry["resource"]
        if "subject" in res:
            assert res["subject"] == {"reference": url}  # never Patient/<the neighbour's id>
        if res["resourceType"] not in ("Patient", "Provenance"):
            assert entry["request"]["ifNoneExist"].startswith(
                f"identifier={FIELD_RECORD_ID_SYSTEM}|"
            )
    provenance = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"
    )
    assert url not in [t["reference"] for t in provenance["target"]]  # it may be home's own
    assert "n-42" not in str(bundle)
    assert payload_types(bundle) == {
        "Patient", "Encounter", "Observation", "QuestionnaireResponse", "Provenance"
    }  # fmt: skip


def test_the_bundle_validates_as_fhir_r4() -> None:
    bundle = home_bundle()
    model = importlib.import_module("fhir.resources.R4B.bundle").Bundle
    model.model_validate(bundle)


def test_the_same_record_builds_the_same_conditions() -> None:
    first, second = home_bundle(), home_bundle()
    assert [e["request"]["ifNoneExist"] for e in first["entry"]] == [
        e["request"]["ifNoneExist"] for e in second["entry"]
    ]


def test_answers_name_the_person_by_nhs_number() -> None:
    answers = answers_of(home_bundle())
    assert answers["patient"] == {"nhs_number": NUMBER}
    assert answers["risk_to_self"] == "high"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject_nhs": PersonAtSource("9434765871")},  # wrong check digit
        {"subject_nhs": PersonAtSource("943 476 5870")},  # not as ten digits
        {"subject_nhs": PersonAtSource(NUMBER), "patient_id": "p1"},  # one subject only
    ],
)
def test_a_bad_subject_is_a_programming_error(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "client_id": CLIENT_ID, "patient_id": None, "user_id": "pc101", "device_id": "dev-1",
        "recorded_at": NOW,
    }  # fmt: skip
    with pytest.raises(ValueError, match="subject_nhs"):
        build_transaction(encounter_input(), **{**args, **kwargs})


def test_the_home_id_is_read_from_the_answers_patient_location() -> None:
    bundle = home_bundle()
    index = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient"
    )
    answer = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": f"Encounter/e{i}/_history/1"}}
            for i in range(len(bundle["entry"]))
        ],
    }
    answer["entry"][index]["response"] = {"status": "200 OK", "location": "Patient/h-7/_history/3"}
    assert home_patient_id(bundle, answer) == "h-7"
    absolute = copy.deepcopy(answer)
    absolute["entry"][index]["response"]["location"] = "https://home.example/fhir/Patient/h-7"
    assert home_patient_id(bundle, absolute) == "h-7"
    assert home_patient_id(bundle, {"entry": []}) is None
    ordinary = build_transaction(
        encounter_input(), client_id=CLIENT_ID, patient_id="p1", user_id="pc101",
        device_id="dev-1", recorded_at=NOW,
    )  # fmt: skip
    assert home_patient_id(ordinary, answer) is None
    assert encounter_of(ordinary)["subject"] == {"reference": "Patient/p1"}

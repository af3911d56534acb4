"""The street-triage form and the FHIR R4 transaction Bundle a recorded encounter travels in.

`FORM` is the one definition of the form: the Questionnaire in
`app/resources/questionnaire-street-triage.json` is generated from it (a test keeps them equal),
the QuestionnaireResponse mirrors it, and its link ids are the field names of the JSON input
format, so a payload reads back into the same dict the form and `kerbside record` take.

Every entry has a `urn:uuid:` fullUrl, a client identifier derived from the record's client id
and `request.ifNoneExist` on it, so a retry after a lost response never duplicates anything
(DESIGN.md section 5). Provenance has no `identifier` element in R4, so it carries the same
kind of value as a `meta.tag` and is created conditionally on `_tag`.

An encounter about someone the home central record may not hold (known only to a neighbour
Trust, docs/design/multi-trust.md section 6) names its subject by verified NHS number: a
Patient entry created conditionally on that number, which the home server answers with the
Patient it already holds (200) or a new one (201), and 412 when it holds several: a refusal
the officer resolves, never a guess.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.fhir import (
    APPARENT_AGE_EXT,
    CONVEYANCE_CODES,
    CONVEYANCE_SYSTEM,
    DEVICE_ID_SYSTEM,
    FIELD_RECORD_ID_SYSTEM,
    KNOWN_TO_SERVICES_CODES,
    KNOWN_TO_SERVICES_SYSTEM,
    LEGAL_STATUS_CONTEXT_SYSTEM,
    LEGAL_STATUS_DISPLAYS,
    LEGAL_STATUS_EXT,
    LEGAL_STATUS_S136,
    LEGAL_STATUS_SYSTEM,
    LOCATION_TYPE_SYSTEM,
    LOCATION_TYPES,
    NHS_NUMBER_SYSTEM,
    NHS_VERIFICATION_EXT,
    NHS_VERIFICATION_SYSTEM,
    NHS_VERIFIED,
    ODS_ORG_SYSTEM,
    OUTCOME_CODES,
    OUTCOME_SYSTEM,
    PERSON_DESCRIPTION_EXT,
    PLACE_FOUND_EXT,
    PLACE_OF_SAFETY_CODES,
    PLACE_OF_SAFETY_SYSTEM,
    POLICE_INCIDENT_SYSTEM,
    PROFILE_BASE,
    RECORD_STATUS_SYSTEM,
    REFERRAL_CODES,
    REFERRAL_SYSTEM,
    RESPONSE_MODE_SYSTEM,
    RESPONSE_MODES,
    RISK_LEVEL_SYSTEM,
    RISK_LEVELS,
    RISK_SYSTEM,
    RISK_TOPICS,
    S136_ARRIVED_EXT,
    S136_DETAINED_EXT,
    SERVICE_TYPE_SYSTEM,
    STREET_TRIAGE_QUESTIONNAIRE,
    STREET_TRIAGE_QUESTIONNAIRE_VERSION,
    USER_ID_SYSTEM,
    V3_ACT_CODE,
    objs,
    verified_nhs_number,
)
from app.nhs_number import is_valid as nhs_number_is_valid
from app.times import iso_instant

if TYPE_CHECKING:
    from app.services._encounter_input import EncounterInput, UnidentifiedPerson

UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PROVENANCE_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVISIONAL_TAG = {
    "system": RECORD_STATUS_SYSTEM,
    "code": "provisional",
    "display": "Provisional record: person not identified",
}
PROVISIONAL_NAME = "Unknown person"

_LABELS = {
    "response_mode": {"face-to-face": "Face to face", "telephone": "Telephone",
                      "control-room": "Control room"},
    "location_type": {"public-place": "Public place", "dwelling": "Dwelling"},
    "risk": {"none": "None", "low": "Low", "medium": "Medium", "high": "High"},
}  # fmt: skip
assert set(_LABELS["response_mode"]) == set(RESPONSE_MODES)
assert set(_LABELS["location_type"]) == set(LOCATION_TYPES)
assert tuple(_LABELS["risk"]) == RISK_LEVELS


@dataclass(frozen=True, slots=True)
class FormItem:
    """One question; `link_id` is also the JSON input field and the EncounterInput attribute."""

    link_id: str
    text: str
    type: str  # Questionnaire item type: dateTime, string, text, boolean, choice
    options: Mapping[str, str] | None = None  # code -> display, for choice items
    system: str | None = None  # CodeSystem of the options
    required: bool = False  # always required (conditional rules live in encounters.validate)
    repeats: bool = False
    only_with_s136: bool = False  # shown (and allowed) only when section_136 is true
    max_length: int | None = None
    # The form's button text per code where it differs from the coded display: the question
    # "Known to mental health services" is answered "Yes", stored as "Known to services".
    labels: Mapping[str, str] | None = None

    @property
    def choices(self) -> list[tuple[str, str]]:
        """(code, text on the form's button), in the definition's order."""
        shown = self.labels or self.options or {}
        return [(code, shown[code]) for code in self.options or {}]


@dataclass(frozen=True, slots=True)
class FormSection:
    link_id: str
    text: str
    items: tuple[FormItem, ...]


def _risk(link_id: str) -> FormItem:
    return FormItem(link_id, RISK_TOPICS[link_id][1], "choice", _LABELS["risk"], RISK_LEVEL_SYSTEM)


FORM: tuple[FormSection, ...] = (
    FormSection("when-where", "When and where", (
        FormItem("start", "Start", "dateTime", required=True),
        FormItem("end", "End", "dateTime", required=True),
        FormItem("response_mode", "Response", "choice", _LABELS["response_mode"],
                 RESPONSE_MODE_SYSTEM),
        FormItem("team", "Team", "string", max_length=200),
        FormItem("location", "Location", "string", required=True, max_length=500),
        FormItem("location_type", "Type of location", "choice", _LABELS["location_type"],
                 LOCATION_TYPE_SYSTEM,
                 labels={"public-place": "Public place", "dwelling": "Dwelling (home)"}),
        FormItem("police_incident_ref", "Police incident reference", "string", required=True,
                 max_length=64),
    )),
    FormSection("situation", "Situation", (
        FormItem("presenting_situation", "Presenting situation", "text", required=True,
                 max_length=4000),
        FormItem("known_to_services", "Known to mental health services", "choice",
                 KNOWN_TO_SERVICES_CODES, KNOWN_TO_SERVICES_SYSTEM,
                 labels={"yes": "Yes", "no": "No", "unknown": "Don't know"}),
        FormItem("crisis_plan_consulted", "Crisis plan consulted", "boolean"),
    )),
    FormSection("risk", "Risk", tuple(_risk(k) for k in RISK_TOPICS)),
    FormSection("section-136", "Mental Health Act section 136", (
        FormItem("section_136", "Section 136 used", "boolean", required=True),
        FormItem("s136_detained_at", "Time of detention", "dateTime", only_with_s136=True),
        FormItem("s136_arrived_at", "Arrival at the place of safety", "dateTime",
                 only_with_s136=True),
        FormItem("health_professional_consulted", "Health professional consulted", "boolean",
                 only_with_s136=True),
        FormItem("consulted_with", "Consulted with", "string", only_with_s136=True,
                 max_length=200),
        FormItem("place_of_safety", "Place of safety", "choice", PLACE_OF_SAFETY_CODES,
                 PLACE_OF_SAFETY_SYSTEM, only_with_s136=True),
        FormItem("conveyance", "Conveyance", "choice", CONVEYANCE_CODES, CONVEYANCE_SYSTEM,
                 only_with_s136=True),
    )),
    FormSection("outcome", "Outcome", (
        FormItem("outcome", "Outcome", "choice", OUTCOME_CODES, OUTCOME_SYSTEM, required=True),
        FormItem("referrals", "Referrals", "choice", REFERRAL_CODES, REFERRAL_SYSTEM,
                 repeats=True),
    )),
    FormSection("notes", "Narrative", (
        FormItem("narrative", "Narrative", "text", required=True, max_length=20000),
    )),
)  # fmt: skip

FORM_ITEMS: dict[str, FormItem] = {item.link_id: item for s in FORM for item in s.items}


def questionnaire_resource() -> dict[str, Any]:
    """The Questionnaire the QuestionnaireResponse points at (kept in app/resources/ as JSON)."""

    def item_json(item: FormItem) -> dict[str, Any]:
        out: dict[str, Any] = {"linkId": item.link_id, "text": item.text, "type": item.type}
        if item.only_with_s136:
            out["enableWhen"] = [
                {"question": "section_136", "operator": "=", "answerBoolean": True}
            ]
        if item.required:
            out["required"] = True
        if item.repeats:
            out["repeats"] = True
        if item.max_length:
            out["maxLength"] = item.max_length
        if item.options:
            out["answerOption"] = [
                {"valueCoding": {"system": item.system, "code": code, "display": display}}
                for code, display in item.options.items()
            ]
        return out

    return {
        "resourceType": "Questionnaire",
        "id": "street-triage",
        "url": STREET_TRIAGE_QUESTIONNAIRE,
        "version": STREET_TRIAGE_QUESTIONNAIRE_VERSION,
        "name": "StreetTriageEncounter",
        "title": "Street triage encounter",
        "status": "active",
        "subjectType": ["Patient"],
        "description": (
            "What a street-triage team records about one encounter with a person in crisis "
            "(Kerbside's own form; no national data set covers it)."
        ),
        "item": [
            {
                "linkId": section.link_id,
                "text": section.text,
                "type": "group",
                "item": [item_json(i) for i in section.items],
            }
            for section in FORM
        ],
    }


# -- building the Bundle ----------------------------------------------------------------------
def fhir_instant(when: datetime) -> str:
    """UTC, second precision, `Z`: the form the store and the server compare as text."""
    return iso_instant(when)


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)], "text": display}


def _answers(item: FormItem, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if item.type == "dateTime":
        return [{"valueDateTime": fhir_instant(value)}]
    if item.type == "boolean":
        return [{"valueBoolean": bool(value)}]
    if item.type == "choice":
        codes = value if item.repeats else (value,)
        assert item.options is not None and item.system is not None
        return [{"valueCoding": _coding(item.system, c, item.options[c])} for c in codes]
    text = str(value).strip()
    return [{"valueString": text}] if text else []  # FHIR strings are never empty


def _questionnaire_items(inp: EncounterInput) -> list[dict[str, Any]]:
    groups = []
    for section in FORM:
        items = []
        for item in section.items:
            answers = _answers(item, getattr(inp, item.link_id))
            if answers:
                items.append({"linkId": item.link_id, "text": item.text, "answer": answers})
        if items:
            groups.append({"linkId": section.link_id, "text": section.text, "item": items})
    return groups


def _legal_status_s136() -> dict[str, Any]:
    """UK Core legal status (a complex extension): context `discharge`, i.e. the person's
    status as the encounter ended, and classification 20 (s136)."""
    return {
        "url": LEGAL_STATUS_EXT,
        "extension": [
            {
                "url": "legalStatusContext",
                "valueCodeableConcept": _concept(
                    LEGAL_STATUS_CONTEXT_SYSTEM, "discharge", "Discharge"
                ),
            },
            {
                "url": "legalStatusClassification",
                "valueCodeableConcept": _concept(
                    LEGAL_STATUS_SYSTEM, LEGAL_STATUS_S136, LEGAL_STATUS_DISPLAYS[LEGAL_STATUS_S136]
                ),
            },
        ],
    }


def _provisional_patient(person: UnidentifiedPerson, identifier: dict[str, str]) -> dict[str, Any]:
    """A person who could not be identified: described, never given a made-up birth date."""
    extension: list[dict[str, Any]] = [
        {"url": PERSON_DESCRIPTION_EXT, "valueString": person.description.strip()},
        {
            "url": APPARENT_AGE_EXT,
            "valueAge": {
                "value": person.apparent_age,
                "unit": "years",
                "system": UCUM,
                "code": "a",
            },
        },
    ]
    if person.place_found and person.place_found.strip():
        extension.append({"url": PLACE_FOUND_EXT, "valueString": person.place_found.strip()})
    return {
        "resourceType": "Patient",
        "meta": {"profile": [f"{PROFILE_BASE}Patient"], "tag": [PROVISIONAL_TAG]},
        "extension": extension,
        "identifier": [identifier],
        "active": True,
        "name": [{"use": "temp", "text": PROVISIONAL_NAME}],
        "gender": person.sex,
    }


@dataclass(frozen=True, slots=True)
class PersonAtSource:
    """A person as another Trust's record holds them, identified by a verified NHS number:
    enough for the home record to find them, or to register them (design section 6)."""

    nhs_number: str
    name: Mapping[str, Any] | None = None  # their official HumanName at the source
    birth_date: str | None = None
    gender: str | None = None


def person_at_source(patient: Mapping[str, Any]) -> PersonAtSource | None:
    """The person a cached Patient names, if its NHS number is valid and verified (`01`);
    None otherwise: such a person goes home as an unidentified one, never matched on an
    unverified number."""
    number = verified_nhs_number(dict(patient))
    if number is None:
        return None
    names = [n for n in objs(patient.get("name")) if n.get("use") not in ("old", "anonymous")]
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    birth_date, gender = patient.get("birthDate"), patient.get("gender")
    return PersonAtSource(
        number,
        official,
        birth_date if isinstance(birth_date, str) else None,
        gender if isinstance(gender, str) else None,
    )


def _nhs_condition(number: str) -> str:
    return f"identifier={NHS_NUMBER_SYSTEM}|{number}"


def _patient_by_nhs_number(person: PersonAtSource) -> dict[str, Any]:
    """The Patient the home record keeps if it does not know the person yet."""
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": [f"{PROFILE_BASE}Patient"]},
        "identifier": [
            {
                "extension": [
                    {
                        "url": NHS_VERIFICATION_EXT,
                        "valueCodeableConcept": {
                            "coding": [
                                _coding(
                                    NHS_VERIFICATION_SYSTEM,
                                    NHS_VERIFIED,
                                    "Number present and verified",
                                )
                            ]
                        },
                    }
                ],
                "system": NHS_NUMBER_SYSTEM,
                "value": person.nhs_number,
            }
        ],
    }
    if person.name:
        patient["name"] = [dict(person.name)]
    if person.gender:
        patient["gender"] = person.gender
    if person.birth_date:
        patient["birthDate"] = person.birth_date
    return patient


def build_transaction(
    inp: EncounterInput,
    *,
    client_id: str,
    patient_id: str | None,
    user_id: str,
    device_id: str,
    recorded_at: datetime,
    team_code: str | None = None,
    subject_nhs: PersonAtSource | None = None,
    new_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
) -> dict[str, Any]:
    """The transaction Bundle for one validated encounter.

    `patient_id` is the cached Patient's id, or None when `inp.patient` is an unidentified
    person: a provisional Patient is then created in the same Bundle and referenced by urn.
    `subject_nhs` (with `patient_id` None) names the person by verified NHS number instead:
    a Patient entry created conditionally on it, referenced by urn (design section 6).
    `team_code` is the ODS code of `inp.team`, if known: the team is then identified on
    `serviceProvider`, not only named (the device holds no Organization to point at).
    """
    if subject_nhs is not None and (
        patient_id is not None
        or not nhs_number_is_valid(subject_nhs.nhs_number)
        or not subject_nhs.nhs_number.isdigit()
    ):
        raise ValueError("subject_nhs needs a valid NHS number (ten digits) and no patient_id")
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any], suffix: str | None, condition: str | None = None) -> str:
        full_url = f"urn:uuid:{new_uuid()}"
        value = client_id if suffix is None else f"{client_id}-{suffix}"
        # `condition` given: the resource's own identifier (an NHS number) is the condition.
        if condition is None and resource["resourceType"] == "Provenance":
            resource.setdefault("meta", {})["tag"] = [
                {"system": FIELD_RECORD_ID_SYSTEM, "code": value}
            ]
            condition = f"_tag={FIELD_RECORD_ID_SYSTEM}|{value}"
        elif condition is None:
            condition = f"identifier={FIELD_RECORD_ID_SYSTEM}|{value}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    "ifNoneExist": condition,
                },
            }
        )
        return full_url

    def ident(suffix: str | None) -> dict[str, str]:
        value = client_id if suffix is None else f"{client_id}-{suffix}"
        return {"system": FIELD_RECORD_ID_SYSTEM, "value": value}

    if subject_nhs is not None:
        patient = _patient_by_nhs_number(subject_nhs)
        subject = {"reference": add(patient, None, _nhs_condition(subject_nhs.nhs_number))}
    elif patient_id is None:
        person: UnidentifiedPerson = inp.patient  # type: ignore[assignment]
        subject = {"reference": add(_provisional_patient(person, ident("patient")), "patient")}
    else:
        subject = {"reference": f"Patient/{patient_id}"}
    user = {"identifier": {"system": USER_ID_SYSTEM, "value": user_id}}
    period = {"start": fhir_instant(inp.start), "end": fhir_instant(inp.end)}

    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "meta": {"profile": [f"{PROFILE_BASE}Encounter"]},
        "identifier": [
            ident(None),
            {
                "system": POLICE_INCIDENT_SYSTEM,
                "value": inp.police_incident_ref.strip(),
                "type": {"text": "Police incident reference"},
            },
        ],
        "status": "finished",
        "class": _coding(V3_ACT_CODE, "FLD", "field"),
        "serviceType": _concept(SERVICE_TYPE_SYSTEM, "street-triage", "Street triage"),
        "subject": subject,
        "participant": [
            {
                "type": [_concept(PARTICIPATION_TYPE, "PPRF", "primary performer")],
                "individual": user,
            }
        ],
        "period": period,
        "reasonCode": [{"text": inp.presenting_situation.strip()}],
        "hospitalization": {
            "dischargeDisposition": _concept(
                OUTCOME_SYSTEM, inp.outcome, OUTCOME_CODES[inp.outcome]
            ),
        },
        "location": [{"location": {"display": inp.location.strip()}, "status": "completed"}],
    }
    if inp.response_mode:
        mode = inp.response_mode
        encounter["type"] = [_concept(RESPONSE_MODE_SYSTEM, mode, _LABELS["response_mode"][mode])]
    if inp.location_type:
        kind = inp.location_type
        encounter["location"][0]["physicalType"] = _concept(
            LOCATION_TYPE_SYSTEM, kind, _LABELS["location_type"][kind]
        )
    team = (inp.team or "").strip()
    if team:
        provider: dict[str, Any] = {"display": team}
        if team_code:
            provider["identifier"] = {"system": ODS_ORG_SYSTEM, "value": team_code}
        encounter["serviceProvider"] = provider
    if inp.section_136:
        encounter["extension"] = [_legal_status_s136()]
        for url, when in (
            (S136_DETAINED_EXT, inp.s136_detained_at),
            (S136_ARRIVED_EXT, inp.s136_arrived_at),
        ):
            if when is not None:
                encounter["extension"].append({"url": url, "valueDateTime": fhir_instant(when)})
        if inp.place_of_safety:
            encounter["hospitalization"]["destination"] = {
                "display": PLACE_OF_SAFETY_CODES[inp.place_of_safety]
            }
    encounter_url = add(encounter, None)
    # A Patient this record creates is its target; one found by NHS number may be the home
    # record's own (the Provenance would claim to have created it).
    targets = [subject["reference"]] if patient_id is None and subject_nhs is None else []
    targets.append(encounter_url)

    for link_id, (code, display) in RISK_TOPICS.items():
        level = getattr(inp, link_id)
        if level is None:
            continue
        suffix = code.replace("risk-to-", "risk-")  # risk-self, risk-others, risk-from-others
        observation = {
            "resourceType": "Observation",
            "meta": {"profile": [f"{PROFILE_BASE}Observation"]},
            "identifier": [ident(suffix)],
            "status": "final",
            "category": [_concept(OBSERVATION_CATEGORY, "survey", "Survey")],
            "code": _concept(RISK_SYSTEM, code, display),
            "subject": subject,
            "encounter": {"reference": encounter_url},
            "effectivePeriod": period,
            "performer": [user],
            "valueCodeableConcept": _concept(RISK_LEVEL_SYSTEM, level, _LABELS["risk"][level]),
        }
        targets.append(add(observation, suffix))

    response = {
        "resourceType": "QuestionnaireResponse",
        "meta": {"profile": [f"{PROFILE_BASE}QuestionnaireResponse"]},
        "identifier": ident("form"),
        "questionnaire": f"{STREET_TRIAGE_QUESTIONNAIRE}|{STREET_TRIAGE_QUESTIONNAIRE_VERSION}",
        "status": "completed",
        "subject": subject,
        "encounter": {"reference": encounter_url},
        "authored": fhir_instant(recorded_at),
        "author": user,
        "item": _questionnaire_items(inp),
    }
    targets.append(add(response, "form"))

    provenance = {
        "resourceType": "Provenance",
        "meta": {"profile": [f"{PROFILE_BASE}Provenance"]},
        "target": [{"reference": t} for t in targets],
        "occurredPeriod": period,
        "recorded": fhir_instant(recorded_at),
        "activity": _concept(DATA_OPERATION, "CREATE", "create"),
        "agent": [
            {"type": _concept(PROVENANCE_AGENT_TYPE, "author", "Author"), "who": user},
            {
                "type": _concept(PROVENANCE_AGENT_TYPE, "assembler", "Assembler"),
                "who": {"identifier": {"system": DEVICE_ID_SYSTEM, "value": device_id}},
            },
        ],
    }
    add(provenance, "provenance")
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# -- reading a Bundle back --------------------------------------------------------------------
def resources_of(bundle: Mapping[str, Any], rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(fullUrl, resource) of each entry of one type."""
    for entry in bundle.get("entry", ()):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == rtype:
            yield entry.get("fullUrl", ""), resource


def encounter_of(bundle: Mapping[str, Any]) -> dict[str, Any]:
    return next(resources_of(bundle, "Encounter"))[1]


def provisional_person_of(bundle: Mapping[str, Any]) -> dict[str, Any] | None:
    """The unidentified-person part of the JSON input, from the provisional Patient, if any."""
    for _, patient in resources_of(bundle, "Patient"):
        if PROVISIONAL_TAG["code"] not in {t.get("code") for t in patient["meta"].get("tag", ())}:
            continue
        ext = {e["url"]: e for e in patient.get("extension", ())}
        person: dict[str, Any] = {
            "description": ext.get(PERSON_DESCRIPTION_EXT, {}).get("valueString", ""),
            "apparent_age": ext.get(APPARENT_AGE_EXT, {}).get("valueAge", {}).get("value"),
            "sex": patient.get("gender"),
        }
        if PLACE_FOUND_EXT in ext:
            person["place_found"] = ext[PLACE_FOUND_EXT]["valueString"]
        return person
    return None


def answers_of(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON input (see app/cli/_record_cmds.py) this Bundle was built from.

    The QuestionnaireResponse holds every answered field; the subject gives the patient.
    """
    _, response = next(resources_of(bundle, "QuestionnaireResponse"))
    out: dict[str, Any] = {}
    for group in response.get("item", ()):
        for item in group.get("item", ()):
            spec = FORM_ITEMS.get(item["linkId"])
            if spec is None:
                continue
            values = [_answer_value(spec, a) for a in item.get("answer", ())]
            out[spec.link_id] = values if spec.repeats else values[0]
    out.setdefault("narrative", "")
    person = provisional_person_of(bundle)
    number = subject_nhs_number_of(bundle)
    if person is not None:
        out["patient"] = {"unidentified": person}
    elif number is not None:
        out["patient"] = {"nhs_number": number}
    else:
        ref = encounter_of(bundle)["subject"]["reference"]
        out["patient"] = {"id": ref.removeprefix("Patient/")}
    return out


def _home_patient_entry(bundle: Mapping[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """(position, entry) of the Patient created conditionally on an NHS number, if any."""
    prefix = _nhs_condition("")
    for index, entry in enumerate(bundle.get("entry", ())):
        request = entry.get("request") or {}
        if request.get("url") == "Patient" and str(request.get("ifNoneExist", "")).startswith(
            prefix
        ):
            return index, entry
    return None


def subject_nhs_number_of(bundle: Mapping[str, Any]) -> str | None:
    """The NHS number a record names its person by (design section 6), or None."""
    found = _home_patient_entry(bundle)
    return None if found is None else found[1]["request"]["ifNoneExist"][len(_nhs_condition("")) :]


def home_patient_id(bundle: Mapping[str, Any], response: Mapping[str, Any]) -> str | None:
    """The home record's id for the person a sent record named by NHS number: the location
    the transaction-response gave its Patient entry (`Patient/<id>/_history/<v>`, relative or
    absolute). None for other records, or an answer without it."""
    found = _home_patient_entry(bundle)
    entries = response.get("entry")
    if found is None or not isinstance(entries, list) or len(entries) <= found[0]:
        return None
    answer = entries[found[0]]
    location = (answer.get("response") or {}).get("location") if isinstance(answer, dict) else None
    if not isinstance(location, str):
        return None
    parts = location.split("/_history/")[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] else None


def _answer_value(spec: FormItem, answer: Mapping[str, Any]) -> Any:
    if spec.type == "choice":
        return answer["valueCoding"]["code"]
    if spec.type == "boolean":
        return answer["valueBoolean"]
    if spec.type == "dateTime":
        return answer["valueDateTime"]
    return answer["valueString"]

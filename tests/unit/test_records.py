"""The record card: audited opening, then alerts, crisis plan, contacts and the rest in the
order someone on scene needs them."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from app.errors import CacheExpired, InvalidInput
from app.fhir import (
    ALERT_KINDS,
    CRISIS_PLAN_SECTION_SYSTEM,
    CRISIS_PLAN_SECTIONS,
    FIELD_RECORD_ID_SYSTEM,
    FLAG_CATEGORY_SYSTEM,
    LEGAL_STATUS_EXT,
    LEGAL_STATUS_SYSTEM,
    NHS_NUMBER_SYSTEM,
    SNOMED,
)
from app.services.encounters import parse_encounter_json, record
from app.services.records import ACCESS_REASONS, open_record
from app.services.session import LAST_REFRESH, Session
from app.store import HOME_SOURCE

NOW = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
REASON = ACCESS_REASONS[0]
P = {"reference": "Patient/p1"}


def _flag(fid: str, code: str | None, text: str, status: str = "active", **extra: Any) -> dict:
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": SNOMED, "code": code}]
    return {
        "resourceType": "Flag",
        "id": fid,
        "status": status,
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "safety"}]}],
        "code": concept,
        "subject": P,
        **extra,
    }


def _plan(pid: str, created: str, review: str, sections: list[str], status: str = "active"):
    return {
        "resourceType": "CarePlan",
        "id": pid,
        "status": status,
        "intent": "plan",
        "category": [{"coding": [{"system": SNOMED, "code": "736253002"}]}],
        "subject": P,
        "created": created,
        "period": {"start": created, "end": review},
        "author": {"reference": "Practitioner/pr1", "display": "stale display"},
        "activity": [
            {
                "detail": {
                    "code": {"coding": [{"system": CRISIS_PLAN_SECTION_SYSTEM, "code": code}]},
                    "status": "in-progress",
                    "description": f"{code} text",
                }
            }
            for code in sections
        ],
    }


def _encounter(eid: str, start: str, legal: str | None = None, **extra: Any) -> dict:
    res: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Outpatient appointment"}],
        "subject": P,
        "period": {"start": start},
        **extra,
    }
    if legal:
        res["extension"] = [
            {
                "url": LEGAL_STATUS_EXT,
                "extension": [
                    {"url": "legalStatusContext", "valueCodeableConcept": {"text": "Admission"}},
                    {
                        "url": "legalStatusClassification",
                        "valueCodeableConcept": {
                            "coding": [{"system": LEGAL_STATUS_SYSTEM, "code": legal}]
                        },
                    },
                ],
            }
        ]
    return res


def _resources() -> list[dict[str, Any]]:
    sections = [code for code, _ in CRISIS_PLAN_SECTIONS]
    shuffled = sections[:]
    random.Random(4).shuffle(shuffled)
    return [
        {
            "resourceType": "Practitioner",
            "id": "pr1",
            "name": [{"family": "Okafor", "given": ["Grace"], "prefix": ["Dr"]}],
            "telecom": [{"system": "phone", "value": "0121 496 0001"}],
        },
        {
            "resourceType": "Organization",
            "id": "gp1",
            "name": "Moor Street Surgery",
            "telecom": [{"system": "phone", "value": "0121 496 0999"}],
        },
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9434765870"}],
            "name": [
                {"use": "official", "family": "Ashworth", "given": ["Mabel", "Jane"]},
                {"use": "usual", "family": "Ashworth", "given": ["Mabs"]},
                {"use": "old", "family": "Pike", "given": ["Mabel"]},
                {"use": "nickname", "given": ["Duchess"]},
            ],
            "gender": "female",
            "birthDate": "1990-11-21",
            "telecom": [{"system": "phone", "value": "07700 900123"}],
            "address": [
                {"use": "home", "line": ["1 Canal Side"], "city": "Dudley", "postalCode": "DY1 1AA"}
            ],
            "generalPractitioner": [{"reference": "Organization/gp1"}],
        },
        _flag("f-other", None, "MAPPA"),
        _flag("f-safe", "417430008", "Vulnerable adult"),
        _flag("f-others", "65108000", "Violence"),
        _flag("f-self", "225444004", "Suicide risk"),
        _flag("f-error", "248062006", "Self-harm", status="entered-in-error"),
        _flag("f-inactive", "401233007", "Self-neglect", status="inactive"),
        _flag("f-ended", "129707006", "Old", period={"start": "2020-01-01", "end": "2021-01-01"}),
        _plan("cp-old", "2025-01-10", "2026-01-10", sections[:3]),
        _plan("cp-done", "2026-10-01", "2027-10-01", sections[:2], status="completed"),
        _plan("cp-new", "2026-06-01", "2026-11-20", shuffled),
        {
            "resourceType": "CareTeam",
            "id": "ct1",
            "status": "active",
            "name": "Dudley North CMHT",
            "subject": P,
            "participant": [
                {
                    "role": [{"text": "Care coordinator"}],
                    "member": {"reference": "Practitioner/pr1"},
                }
            ],
            "telecom": [
                {"system": "phone", "value": "0121 496 0500", "rank": 2},
                {"system": "phone", "value": "0800 000 0001", "rank": 1},
            ],
        },
        {
            "resourceType": "RelatedPerson",
            "id": "rp1",
            "patient": P,
            "relationship": [{"text": "Mum"}, {"text": "Carer"}],
            "name": [{"family": "Pike", "given": ["Ruth"]}],
            "telecom": [{"system": "phone", "value": "07700 900456"}],
        },
        {
            "resourceType": "RelatedPerson",
            "id": "rp2",
            "active": False,
            "patient": P,
            "name": [{"family": "Gone", "given": ["Ex"]}],
        },
        {
            "resourceType": "MedicationStatement",
            "id": "m1",
            "status": "active",
            "medicationCodeableConcept": {"text": "Sertraline 100mg tablets"},
            "subject": P,
            "dosage": [{"text": "One each morning"}],
        },
        {
            "resourceType": "MedicationStatement",
            "id": "m2",
            "status": "stopped",
            "medicationCodeableConcept": {"text": "Olanzapine"},
            "subject": P,
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "a1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": "Penicillin"},
            "patient": P,
            "criticality": "high",
            "reaction": [{"manifestation": [{"text": "Anaphylaxis"}]}],
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": "a2",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "verificationStatus": {"coding": [{"code": "refuted"}]},
            "code": {"text": "Latex"},
            "patient": P,
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"text": "Bipolar affective disorder"},
            "subject": P,
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "clinicalStatus": {"coding": [{"code": "resolved"}]},
            "code": {"text": "Fractured wrist"},
            "subject": P,
        },
        _encounter("e-old-s3", "2025-03-01T10:00:00Z", legal="03"),
        _encounter("e-s2", "2026-02-01T10:00:00Z", legal="02"),
        _encounter("e-latest", "2026-10-01T10:00:00Z"),
        _encounter("e-error", "2026-10-05T10:00:00Z", legal="20", status="entered-in-error"),
    ]


@pytest.fixture
def card_session(session: Session) -> Session:
    session.store.put_resources(HOME_SOURCE, _resources())
    session.mark_refreshed(synced=True)
    return session


def test_opening_is_audited_with_the_reason_and_the_chain_holds(card_session: Session) -> None:
    before = len(card_session.store.audit_entries())
    card = open_record(card_session, "p1", REASON, now=NOW)
    entries = card_session.store.audit_entries()
    assert len(entries) == before + 1
    entry = entries[-1]
    assert (entry.action, entry.patient_id, entry.reason, entry.user_id) == (
        "open-record",
        "p1",
        REASON,
        "pc101",
    )
    assert entry.event_id == card.audit_event_id
    assert card_session.store.verify_audit_chain() is None


def test_the_audit_comes_first_even_when_the_person_is_not_there(card_session: Session) -> None:
    with pytest.raises(InvalidInput, match="no such person"):
        open_record(card_session, "nobody", REASON, now=NOW)
    assert card_session.store.audit_entries()[-1].patient_id == "nobody"


def test_a_reason_from_the_list_is_required(card_session: Session) -> None:
    for reason in ("", "curiosity"):
        with pytest.raises(InvalidInput, match="reason"):
            open_record(card_session, "p1", reason, now=NOW)
    assert card_session.store.audit_entries() == []


def test_a_stale_cache_opens_nothing(card_session: Session) -> None:
    card_session.store.set_meta(LAST_REFRESH, "2026-01-01T00:00:00.000Z")
    with pytest.raises(CacheExpired):
        open_record(card_session, "p1", REASON, now=NOW)
    assert card_session.store.audit_entries() == []


def test_person_details(card_session: Session) -> None:
    person = open_record(card_session, "p1", REASON, now=NOW).person
    assert person.name == "Mabel Jane Ashworth"
    assert person.known_as == ("Mabs Ashworth",) and person.aliases == ("Duchess",)
    assert person.previous_names == ("Mabel Pike",)
    assert person.birth_date == date(1990, 11, 21) and person.age == 36  # birthday today
    eve = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert open_record(card_session, "p1", REASON, now=eve).person.age == 35
    assert person.nhs_number == "943 476 5870"
    assert person.address == "1 Canal Side, Dudley, DY1 1AA"
    assert person.phones == ("07700 900123",)
    assert (person.gp, person.gp_phone) == ("Moor Street Surgery", "0121 496 0999")


def test_active_alerts_only_self_then_others_then_safeguarding_then_other(
    card_session: Session,
) -> None:
    """Staff safety (MAPPA, MARAC, do not visit alone, weapons) comes before all of them."""
    alerts = open_record(card_session, "p1", REASON, now=NOW).alerts
    assert [(a.kind, a.label) for a in alerts] == [
        ("staff", "MAPPA"),
        ("self", "Risk of suicide"),
        ("others", "Risk of violence"),
        ("safeguarding", "Vulnerable adult"),
    ]


def test_the_newest_active_crisis_plan_in_reading_order_and_flagged_stale(
    card_session: Session,
) -> None:
    plan = open_record(card_session, "p1", REASON, now=NOW).crisis_plan
    assert plan is not None and plan.plan_id == "cp-new"
    assert [s.code for s in plan.sections] == [code for code, _ in CRISIS_PLAN_SECTIONS]
    assert [s.heading for s in plan.sections] == [h for _, h in CRISIS_PLAN_SECTIONS]
    assert plan.sections[0].text == "early-warning-signs text"
    assert plan.created == date(2026, 6, 1) and plan.review_date == date(2026, 11, 20)
    assert plan.author == "Grace Okafor"
    assert plan.stale  # review date 20 Nov passed by 21 Nov
    fresh = open_record(card_session, "p1", REASON, now=datetime(2026, 11, 20, 12, tzinfo=UTC))
    assert fresh.crisis_plan is not None and not fresh.crisis_plan.stale


def test_contacts_crisis_line_first_then_team_then_family(card_session: Session) -> None:
    contacts = open_record(card_session, "p1", REASON, now=NOW).contacts
    assert [(c.kind, c.name, c.role, c.phones) for c in contacts] == [
        ("service", "Dudley North CMHT", "24-hour crisis line", ("0800 000 0001",)),
        ("service", "Dudley North CMHT", "Team office", ("0121 496 0500",)),
        ("professional", "Grace Okafor", "Care coordinator", ("0121 496 0001",)),
        ("personal", "Ruth Pike", "Mum, Carer", ("07700 900456",)),
    ]


def test_medicines_allergies_conditions_current_only(card_session: Session) -> None:
    card = open_record(card_session, "p1", REASON, now=NOW)
    assert [(m.name, m.dosage) for m in card.medications] == [
        ("Sertraline 100mg tablets", "One each morning")
    ]
    assert [(a.substance, a.reactions, a.criticality) for a in card.allergies] == [
        ("Penicillin", ("Anaphylaxis",), "high")
    ]
    assert [c.name for c in card.conditions] == ["Bipolar affective disorder"]


def test_legal_status_from_the_newest_encounter_recording_one(card_session: Session) -> None:
    legal = open_record(card_session, "p1", REASON, now=NOW).legal_status
    assert legal is not None
    assert (legal.code, legal.display) == (
        "02",
        "Formally detained under Mental Health Act Section 2",
    )
    assert legal.as_of == datetime(2026, 2, 1, 10, tzinfo=UTC)


def test_last_contacts_merge_central_and_this_devices_records(card_session: Session) -> None:
    obj = {
        "patient": {"id": "p1"},
        "start": "2026-11-20T22:15:00Z",
        "end": "2026-11-20T23:05:00Z",
        "location": "Bus station",
        "police_incident_ref": "WMP-1",
        "presenting_situation": "Distressed",
        "section_136": False,
        "outcome": "advice-signposting",
        "narrative": "",
    }
    earlier = {
        **obj,
        "start": "2026-11-20T21:00:00Z",
        "end": "2026-11-20T21:30:00Z",
        "team": "Bolton Street Triage",
    }
    mine = record(card_session, parse_encounter_json(earlier, card_session, now=NOW), now=NOW)
    echoed = record(card_session, parse_encounter_json(obj, card_session, now=NOW), now=NOW)
    # The centre's copy of `echoed` has come back in a pull: show it once, as the centre has it.
    back = _encounter("e-back", "2026-11-20T22:15:00Z")
    back["identifier"] = [{"system": FIELD_RECORD_ID_SYSTEM, "value": echoed.client_id}]
    card_session.store.put_resources(HOME_SOURCE, [back])
    contacts = open_record(card_session, "p1", REASON, now=NOW).last_contacts
    assert [(c.source, c.client_id, c.state) for c in contacts] == [
        ("central", None, None),  # e-back
        ("this-device", mine.client_id, "waiting"),
        ("central", None, None),  # e-latest
        ("central", None, None),  # e-s2
        ("central", None, None),  # e-old-s3 (e-error is never shown)
    ]
    assert contacts[1].outcome == "Advice / signposting"
    assert contacts[1].provider == "Bolton Street Triage"  # the team that recorded it
    assert contacts[0].description == "Outpatient appointment"
    assert [c.when for c in contacts] == sorted((c.when for c in contacts), reverse=True)


def test_last_refreshed_comes_from_the_session(card_session: Session) -> None:
    card = open_record(card_session, "p1", REASON, now=NOW)
    assert card.last_refreshed is not None
    assert datetime.now(UTC) - card.last_refreshed < timedelta(minutes=5)


def test_every_generated_record_opens(cohort_session: Session) -> None:
    """The generator's shapes (UK Core flavoured) all render, and sections keep their order."""
    order = [code for code, _ in CRISIS_PLAN_SECTIONS]
    plans = stale = 0
    for pid in list(cohort_session.store.resource_ids(HOME_SOURCE, "Patient")):
        card = open_record(cohort_session, pid, REASON, now=NOW)
        assert card.person.name
        assert card.person.nhs_number is None or len(card.person.nhs_number) == 12
        assert [a.kind for a in card.alerts] == sorted(
            (a.kind for a in card.alerts), key=list(ALERT_KINDS).index
        )
        if card.crisis_plan:
            plans += 1
            stale += card.crisis_plan.stale
            codes = [s.code for s in card.crisis_plan.sections]
            assert codes == sorted(codes, key=order.index)
            assert card.crisis_plan.author
        assert all(c.phones or c.kind == "personal" for c in card.contacts)
    assert plans > 10 and 0 < stale < plans
    assert cohort_session.store.verify_audit_chain() is None

"""Refused records stay actionable (hazard H8): the queued record keeps who it is about, and
the server's reason becomes what to do, on a real encrypted cache."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from app.fhir import display_name_of
from app.services import encounters
from app.services.refusals import GENERAL, PERSON_GONE, advice_for, plain_failure
from app.services.session import Session
from app.store import HOME_SOURCE

NOW = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)


def _about(patient_id: str) -> dict[str, Any]:
    return {
        "patient": {"id": patient_id},
        "start": "2026-11-20T22:15:00Z",
        "end": "2026-11-20T23:05:00Z",
        "location": "Bus station, Moor Street",
        "location_type": "public-place",
        "police_incident_ref": "WMP-2026-11-20-1042",
        "presenting_situation": "Distressed",
        "section_136": False,
        "outcome": "referred-crisis-team",
        "narrative": "Synthetic",
    }


def _adult(session: Session) -> dict[str, Any]:
    for pid in session.store.resource_ids(HOME_SOURCE, "Patient"):
        patient = session.store.get_resource(HOME_SOURCE, "Patient", pid)
        if patient and patient.get("birthDate", "9999") < "2000" and patient.get("identifier"):
            return patient
    raise AssertionError("no adult with an NHS number in the cohort")


def test_a_refused_record_still_names_its_person_after_they_leave_the_cache(
    cohort_session: Session,
) -> None:
    patient = _adult(cohort_session)
    inp = encounters.parse_encounter_json(_about(patient["id"]), cohort_session, now=NOW)
    saved = encounters.record(cohort_session, inp, now=NOW)
    store = cohort_session.store
    row = store.outbox_row(saved.client_id)
    assert row is not None
    store.mark_outbox_rejected(
        row.seq,
        "Encounter.subject refers to a Patient that does not exist on this server",
        None,
        "2026-11-21T01:05:00Z",
    )
    store.delete_resources(HOME_SOURCE, "Patient", [patient["id"]])  # merged or removed centrally

    (summary,) = [s for s in encounters.list_encounters(cohort_session) if s.state == "rejected"]
    assert summary.person_gone
    assert summary.patient_display == display_name_of(patient)
    assert summary.subject_birth_date == patient["birthDate"]
    assert summary.subject_nhs_number and len(summary.subject_nhs_number) == 10
    advice = advice_for(summary.reason, person_gone=summary.person_gone)
    assert advice is PERSON_GONE


def test_the_outbox_has_the_snapshot_column_at_the_current_version(cohort_session: Session) -> None:
    from app.store._store import SCHEMA_VERSION

    store = cohort_session.store
    assert store.schema_version == SCHEMA_VERSION >= 2
    columns = {row[1] for row in store.conn.execute("PRAGMA table_info(outbox)")}
    assert "subject" in columns


@pytest.mark.parametrize(
    ("reason", "starts"),
    [
        ("Encounter.subject refers to a Patient that does not exist on this server", "This person"),
        ("duplicate: a record with this identifier already exists", "The central record already"),
        (
            "tablets may only create provisional Patients (Bundle.entry[1].resource.meta.tag)",
            "The central record does not let",
        ),
        ("If-Match does not match the current version", "Someone changed"),
        (
            "ifNoneExist matched more than one resource (Bundle.entry[0].request.ifNoneExist)",
            "The central record holds more than one person",
        ),
        (
            'Failed to CREATE resource with match URL "Patient?identifier=https://fhir.nhs.uk/'
            'Id/nhs-number|9434765870" because this search matched 2 resources',
            "The central record holds more than one person",
        ),
        ("an Encounter must have a subject (Bundle.entry[0].resource.subject)", "Something"),
        (None, GENERAL.what[:12]),
        ("teapot", GENERAL.what[:12]),
    ],
)
def test_reasons_become_plain_advice(reason: str | None, starts: str) -> None:
    advice = advice_for(reason)
    assert advice.what.startswith(starts)
    for text in (advice.what, advice.todo):
        assert "Bundle" not in text and "Patient/" not in text and "cache" not in text


@pytest.mark.parametrize(
    ("message", "starts"),
    [
        ("the connection to the token endpoint failed", "The tablet could not sign in"),
        ("the token endpoint did not answer in time", "The central record did not answer"),
        ("the central record did not answer in time", "The central record did not answer"),
        ("could not connect to the central record", "No connection"),
        ("the server's TLS certificate could not be verified", "The central record's identity"),
        ("something odd", "Sync stopped."),
    ],
)
def test_sync_failures_are_said_plainly(message: str, starts: str) -> None:
    text = plain_failure(message)
    assert text.startswith(starts), text
    assert not re.search(r"token|endpoint|cache|centre|TLS", text)

"""Admin actions reach the centre as what they are (a user enrolled, a central record added),
not as a patient record read: a Trust's audit team filters on the event type."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from app.services.session import ADD_USER_ACTION, CHANGE_TEAM_ACTION, REMOVE_USER_ACTION
from app.services.sources import SOURCE_ADD_ACTION, SOURCE_REMOVE_ACTION
from sync import AuditIdentity, AuditRecord, audit_event

DCM = "http://dicom.nema.org/resources/ontology/DCM"
IDENTITY = AuditIdentity(device_id="tablet-1")
AT = "2026-11-20T22:15:00.000Z"


@pytest.mark.parametrize(
    ("action", "code", "verb"),
    [
        (ADD_USER_ACTION, "110136", "C"),
        (REMOVE_USER_ACTION, "110136", "D"),
        (CHANGE_TEAM_ACTION, "110137", "U"),
        (SOURCE_ADD_ACTION, "110113", "C"),
        (SOURCE_REMOVE_ACTION, "110113", "D"),
    ],
)
def test_an_admin_action_is_its_own_event_type_with_the_detail_on_the_entity(
    action: str, code: str, verb: str
) -> None:
    event = audit_event(AuditRecord("e1", AT, "admin1", action, None, "detail"), IDENTITY)
    AuditEvent.model_validate(event)
    assert event["type"]["system"] == DCM and event["type"]["code"] == code
    assert event["action"] == verb
    assert "purposeOfEvent" not in event  # the detail is not a reason for reading a record
    assert event["entity"][0]["description"] == "detail"
    assert "what" not in event["entity"][0]


def test_a_central_record_added_is_a_network_configuration_alert() -> None:
    event = audit_event(
        AuditRecord("e1", AT, "admin1", SOURCE_ADD_ACTION, None, "west fhir.west.example"),
        IDENTITY,
    )
    assert event["subtype"] == [
        {"system": DCM, "code": "110128", "display": "Network Configuration"}
    ]


def test_an_opening_is_still_a_patient_record_read() -> None:
    event = audit_event(AuditRecord("e1", AT, "pc101", "open-record", "p1", None), IDENTITY)
    assert event["type"]["code"] == "110110" and event["action"] == "R"

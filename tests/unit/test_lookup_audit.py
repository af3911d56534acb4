"""The AuditEvent an online look-up posts before it asks (issue 14 section 7), from the one
builder every AuditEvent comes from (`sync.audit_event`), and what it needs to know of a
server (`Capabilities.batch`)."""

from __future__ import annotations

from fhir.resources.R4B.auditevent import AuditEvent

from sync import (
    AuditIdentity,
    AuditRecord,
    Capabilities,
    PurposeOfUse,
    audit_event,
    parse_capabilities,
)

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
IDENTITY = AuditIdentity(device_id="tablet-1")
AT = "2026-11-20T22:15:00.000Z"


def test_an_opening_with_a_purpose_says_why_in_code_and_in_the_officers_words() -> None:
    purpose = PurposeOfUse("  Collapsed in the street; known next door  ")
    event = audit_event(
        AuditRecord("e1", AT, "pc101", "read", "p1", "ignored when coded", purpose=purpose),
        IDENTITY,
    )
    AuditEvent.model_validate(event)
    assert event["action"] == "R" and event["subtype"][0]["code"] == "read"
    assert event["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert event["purposeOfEvent"] == [
        {
            "coding": [{"system": ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"}],
            "text": "Collapsed in the street; known next door",
        },
        {"coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}]},
    ]
    assert "extension" not in event  # not a local chain entry


def test_one_code_is_one_concept_with_the_text() -> None:
    event = audit_event(
        AuditRecord(
            "e2", AT, "pc101", "search", None, "family=x", purpose=PurposeOfUse("why", ("BTG",))
        ),
        IDENTITY,
    )
    AuditEvent.model_validate(event)
    assert event["purposeOfEvent"] == [
        {
            "coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}],
            "text": "why",
        }
    ]
    assert event["subtype"][0]["code"] == "search-type"


def test_local_entries_without_a_purpose_are_built_as_before() -> None:
    opening = audit_event(
        AuditRecord("e3", AT, "pc101", "open", "p1", "checking the plan"), IDENTITY
    )
    assert opening["purposeOfEvent"] == [{"text": "checking the plan"}]
    search = audit_event(AuditRecord("e4", AT, "pc101", "search", None, "smith"), IDENTITY)
    assert "purposeOfEvent" not in search


def test_a_server_declares_batch_in_its_capability_statement() -> None:
    def caps(*codes: str) -> Capabilities:
        return parse_capabilities(
            {
                "resourceType": "CapabilityStatement",
                "rest": [{"mode": "server", "interaction": [{"code": c} for c in codes]}],
            }
        )

    assert caps("transaction", "batch").batch is True
    assert caps("transaction").batch is False

"""Online look-up ("break the glass", issue 14 section 7) over real HTTP against the reference
central record: `sync.search_online` and `sync.open_online`, audited at the source first.

The server's own access report (`ReferenceServer.access_report`) is the witness that every
read was preceded by a purpose of use from the same device; its request journal shows what
went over the wire (and that no name, birth date or NHS number went into a URL).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
import requests
from fhir.resources.R4B.auditevent import AuditEvent

from sync import (
    AuditIdentity,
    AuthFailed,
    BadResponse,
    ClientCredentials,
    FhirClient,
    InvalidRequest,
    NotFound,
    OnlineRecord,
    PurposeOfUse,
    RetryPolicy,
    ServerUnavailable,
    Timeout,
    Timeouts,
    new_http_session,
    open_online,
    search_online,
)
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT
from tests.support.clock import ManualClock
from tests.support.sync import FAST_RETRY, search_all

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
EVENT_TAG = "https://kerbside.example/Id/audit-event"
REASON = PurposeOfUse("Found collapsed at the bus station; not in our cache")
IDENTITY = AuditIdentity(device_id="tablet-1")
AT = "2026-11-20T22:15:00.000Z"
PARTS = {
    "Flag": "patient",
    "CarePlan": "patient",
    "CareTeam": "patient",
    "RelatedPerson": "patient",
    "AllergyIntolerance": "patient",
    "MedicationStatement": "patient",
}


@pytest.fixture
def server_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def admin(reference: ReferenceServer) -> requests.Session:
    return reference.session(admin=True)


@pytest.fixture
def patients(reference: ReferenceServer, admin: requests.Session) -> list[dict[str, Any]]:
    return search_all(admin, f"{reference.base_url}/Patient")


def make_client(
    reference: ReferenceServer,
    *,
    retry: RetryPolicy = FAST_RETRY,
    timeouts: Timeouts | None = None,
    secret: str = TABLET_CLIENT[1],
) -> FhirClient:
    return FhirClient(
        reference.base_url,
        new_http_session(),
        auth=ClientCredentials(reference.token_url, TABLET_CLIENT[0], secret),
        retry=retry,
        timeouts=timeouts,
        sleep=lambda _s: None,  # backoff recorded by the policy, never waited
    )


@pytest.fixture
def client(reference: ReferenceServer) -> Iterator[FhirClient]:
    yield make_client(reference)


def nhs_of(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == NHS)


def lookup_events(reference: ReferenceServer, admin: requests.Session) -> list[dict[str, Any]]:
    return [
        e
        for e in search_all(admin, f"{reference.base_url}/AuditEvent")
        if any(
            c.get("system") == ACT_REASON for p in e.get("purposeOfEvent", []) for c in p["coding"]
        )
    ]


def wire(reference: ReferenceServer) -> list[tuple[str, str, str]]:
    """(method, path, query) of the tablet's FHIR requests (not the token endpoint)."""
    return [
        (r["method"], r["path"], r["query"])
        for r in reference.requests()
        if r["path"].startswith("/fhir")
    ]


# -- searching -----------------------------------------------------------------------------


def test_a_search_by_nhs_number_is_audited_at_the_source_first_and_finds_only_enough(
    reference: ReferenceServer,
    client: FhirClient,
    admin: requests.Session,
    patients: list[dict[str, Any]],
) -> None:
    person = patients[4]
    number = nhs_of(person)
    spaced = f"{number[:3]} {number[3:6]} {number[6:]}"
    reference.clear_requests()
    hits = search_online(
        client, purpose=REASON, audit=IDENTITY, user_id="pc101", nhs_number=spaced,
        event_id="lookup-1", at=AT,
    )  # fmt: skip
    assert not hits.more
    [hit] = hits.patients
    assert hit["id"] == person["id"]
    assert set(hit) <= {"resourceType", "id", "meta", "name", "birthDate", "gender", "address",
                        "active", "deceasedBoolean", "deceasedDateTime", "link"}  # fmt: skip
    assert hit["name"] == person["name"] and hit["birthDate"] == person["birthDate"]
    assert "identifier" not in hit and "telecom" not in hit
    assert [t["code"] for t in hit["meta"]["tag"]] == ["SUBSETTED"]

    # The audit went first, as its own request; nothing personal went into a URL.
    assert wire(reference) == [("POST", "/fhir", ""), ("POST", "/fhir/Patient/_search", "")]
    [event] = lookup_events(reference, admin)
    AuditEvent.model_validate(event)
    assert event["meta"]["tag"][0] == {"system": EVENT_TAG, "code": "lookup-1"}
    assert event["subtype"][0]["code"] == "search-type" and event["action"] == "E"
    assert event["recorded"] == AT
    assert event["purposeOfEvent"] == [
        {
            "coding": [{"system": ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"}],
            "text": REASON.text,
        },
        {"coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}]},
    ]
    query = dict(parse_qsl(base64.b64decode(event["entity"][0]["query"]).decode()))
    assert query["identifier"] == f"{NHS}|{number}" and query["_count"] == "10"
    assert event["agent"][0]["who"]["identifier"]["value"] == "pc101"
    report = reference.access_report()
    assert report["reads"] == {"audited": 1, "unaudited": 0}
    assert [(p["kind"], p["codes"]) for p in report["purposes"]] == [("search", ["BTG", "ETREAT"])]


def test_a_search_by_name_and_birth_date_and_when_too_many_match(
    reference: ReferenceServer,
    client: FhirClient,
    admin: requests.Session,
    patients: list[dict[str, Any]],
) -> None:
    person = patients[9]
    official = next(n for n in person["name"] if n.get("use") == "official")
    hits = search_online(
        client, purpose=REASON, audit=IDENTITY, user_id="pc101",
        family=official["family"].upper(), given=official["given"][0][:3],
        birth_date=person["birthDate"],
    )  # fmt: skip
    assert person["id"] in [h["id"] for h in hits.patients]

    twins = [
        {
            "resourceType": "Patient",
            "name": [{"use": "official", "family": "Twelvetrees", "given": [f"Kid{n}"]}],
            "birthDate": "2001-02-03",
        }
        for n in range(12)
    ]
    for twin in twins:
        admin.post(f"{reference.base_url}/Patient", json=twin,
                   headers={"Content-Type": "application/fhir+json"})  # fmt: skip
    crowd = search_online(
        client, purpose=REASON, audit=IDENTITY, user_id="pc101",
        family="twelvetrees", birth_date="2001-02-03",
    )  # fmt: skip
    assert len(crowd.patients) == 10 and crowd.more
    assert reference.access_report()["reads"] == {"audited": 2, "unaudited": 0}


@pytest.mark.parametrize(
    ("criteria", "field"),
    [
        ({"nhs_number": "485 777 345"}, "nhs_number"),  # nine digits
        ({"nhs_number": "12345"}, "nhs_number"),
        ({"nhs_number": "9434765870", "family": "Smith"}, "nhs_number"),  # one way or the other
        ({"family": "Smith"}, "birth_date"),
        ({"family": "Smith", "birth_date": "1988"}, "birth_date"),  # the whole date
        ({"family": "Smith", "birth_date": "3/4/88"}, "birth_date"),
        ({"family": " ", "birth_date": "1988-04-03"}, "family"),
        ({"family": "Smith,Jones", "birth_date": "1988-04-03"}, "family"),  # no OR smuggled in
        ({}, "family"),
    ],
)
def test_bad_input_gets_a_clear_error_and_nothing_is_sent(
    reference: ReferenceServer, client: FhirClient, criteria: dict[str, Any], field: str
) -> None:
    reference.clear_requests()
    with pytest.raises(InvalidRequest) as caught:
        search_online(client, purpose=REASON, audit=IDENTITY, user_id="pc101", **criteria)
    assert caught.value.field == field
    assert "Smith" not in str(caught.value) and "3456" not in str(caught.value)
    assert reference.requests() == []  # not even a token request


@pytest.mark.parametrize(
    ("text", "codes", "field"),
    [
        ("", ("ETREAT", "BTG"), "text"),
        ("   ", ("ETREAT",), "text"),
        ("why", (), "codes"),
        ("why", ("TREAT",), "codes"),
        ("why", ("BTG", "BTG"), "codes"),
        ("x" * 1001, ("BTG",), "text"),
        ("why\x1b[2J", ("BTG",), "text"),
    ],
)
def test_a_purpose_of_use_is_checked_when_it_is_given(
    text: str, codes: tuple[str, ...], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        PurposeOfUse(text, codes)
    assert caught.value.field == field
    assert PurposeOfUse("line one\nline two", ("BTG",)).codes == ("BTG",)


# -- failing closed ------------------------------------------------------------------------


def test_no_audit_no_look_up(
    reference: ReferenceServer, client: FhirClient, patients: list[dict[str, Any]]
) -> None:
    reference.inject("unavailable", path="/fhir", method="POST", query=None, retry_after_s=0)
    reference.clear_requests()
    with pytest.raises(ServerUnavailable):
        search_online(
            client, purpose=REASON, audit=IDENTITY, user_id="pc101",
            nhs_number=nhs_of(patients[0]),
        )  # fmt: skip
    with pytest.raises(ServerUnavailable):
        open_online(client, patients[0]["id"], purpose=REASON, audit=IDENTITY, user_id="pc101")
    # Only the refused audits went out: no search, no batch reached the records.
    assert {path for _, path, _ in wire(reference)} == {"/fhir"}
    assert reference.access_report() == {
        "window_s": 900.0,
        "purposes": [],
        "reads": {"audited": 0, "unaudited": 0},
        "unaudited": [],
    }


def test_an_audit_whose_answer_is_lost_is_stored_once_and_the_look_up_goes_on(
    reference: ReferenceServer,
    client: FhirClient,
    admin: requests.Session,
    patients: list[dict[str, Any]],
) -> None:
    reference.inject("apply-then-drop", path="/fhir", method="POST", count=1)
    search_online(
        client, purpose=REASON, audit=IDENTITY, user_id="pc101",
        nhs_number=nhs_of(patients[0]), event_id="lookup-lost",
    )  # fmt: skip
    assert client.retries == 1
    events = lookup_events(reference, admin)
    assert [e["meta"]["tag"][0]["code"] for e in events] == ["lookup-lost"]
    assert reference.access_report()["reads"] == {"audited": 1, "unaudited": 0}


# -- opening -------------------------------------------------------------------------------


def _expected_parts(
    reference: ReferenceServer, admin: requests.Session, pid: str
) -> dict[str, set[str]]:
    return {
        rtype: {r["id"] for r in search_all(admin, f"{reference.base_url}/{rtype}", {p: pid})}
        for rtype, p in PARTS.items()
    }


def test_opening_fetches_the_whole_record_in_one_batch_audited_first(
    reference: ReferenceServer,
    client: FhirClient,
    admin: requests.Session,
) -> None:
    flags = search_all(admin, f"{reference.base_url}/Flag")
    pid = flags[0]["subject"]["reference"].split("/")[1]
    reference.clear_requests()
    record = open_online(
        client, pid, purpose=REASON, audit=IDENTITY, user_id="pc101", event_id="open-1", at=AT
    )
    assert wire(reference) == [("POST", "/fhir", ""), ("POST", "/fhir", "")]
    assert isinstance(record, OnlineRecord)
    assert record.patient == admin.get(f"{reference.base_url}/Patient/{pid}").json()
    expected = _expected_parts(reference, admin, pid)
    assert {t: {r["id"] for r in rs} for t, rs in record.parts.items()} == expected
    assert expected["Flag"] and len(record.resources) == 1 + sum(map(len, expected.values()))

    [event] = lookup_events(reference, admin)
    assert event["subtype"][0]["code"] == "read" and event["action"] == "R"
    assert event["entity"][0]["what"] == {"reference": f"Patient/{pid}"}
    report = reference.access_report()
    assert report["reads"] == {"audited": 7, "unaudited": 0}
    assert [(p["kind"], p["patient_id"]) for p in report["purposes"]] == [("read", pid)]


def test_a_long_part_is_paged_to_the_end(
    reference: ReferenceServer, client: FhirClient, admin: requests.Session
) -> None:
    pid = search_all(admin, f"{reference.base_url}/Patient")[0]["id"]
    before = len(search_all(admin, f"{reference.base_url}/Flag", {"patient": pid}))
    flag = {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "Synthetic alert"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": flag, "request": {"method": "POST", "url": "Flag"}}] * 130,
    }
    admin.post(reference.base_url, json=bundle, headers={"Content-Type": "application/fhir+json"})
    record = open_online(client, pid, purpose=REASON, audit=IDENTITY, user_id="pc101")
    assert len(record.parts["Flag"]) == before + 130
    assert len({f["id"] for f in record.parts["Flag"]}) == before + 130


def test_opening_someone_the_source_does_not_hold_is_not_found(
    reference: ReferenceServer, client: FhirClient, admin: requests.Session
) -> None:
    with pytest.raises(NotFound) as caught:
        open_online(client, "no-such-person", purpose=REASON, audit=IDENTITY, user_id="pc101")
    assert caught.value.status == 404 and "Patient" in str(caught.value)
    pid = search_all(admin, f"{reference.base_url}/Patient")[1]["id"]
    admin.delete(f"{reference.base_url}/Patient/{pid}")
    with pytest.raises(NotFound) as gone:
        open_online(client, pid, purpose=REASON, audit=IDENTITY, user_id="pc101")
    assert gone.value.status == 410
    with pytest.raises(InvalidRequest):
        open_online(client, "../Flag", purpose=REASON, audit=IDENTITY, user_id="pc101")


FAULTS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("truncate", {"fraction": 0.5}, BadResponse, "not valid JSON"),
    ("invalid-json", {}, BadResponse, "not valid JSON"),
    ("wrong-type", {"resource_type": "Basic"}, BadResponse, "expected a Bundle, got Basic"),
    ("missing-ids", {}, BadResponse, "a Patient has no valid id"),
    ("drop", {"after_bytes": 200}, Exception, "dropped"),
    ("status", {"status": 403}, AuthFailed, "refused access (403)"),
    ("status", {"status": 401}, AuthFailed, "refused access (401)"),
    ("unavailable", {"retry_after_s": 0}, ServerUnavailable, "503"),
]


@pytest.mark.parametrize(("kind", "params", "error", "words"), FAULTS,
                         ids=[f"{f[0]}-{f[1].get('status', '')}" for f in FAULTS])  # fmt: skip
def test_a_broken_answer_to_the_opening_is_a_clear_error(
    reference: ReferenceServer,
    client: FhirClient,
    patients: list[dict[str, Any]],
    kind: str,
    params: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    """Every fault hits the batch (the audit before it goes through: `skip=1`)."""
    reference.inject(kind, path="/fhir", method="POST", skip=1, **params)
    with pytest.raises(error, match=re.escape(words)):
        open_online(client, patients[0]["id"], purpose=REASON, audit=IDENTITY, user_id="pc101")
    reference.clear_faults()
    record = open_online(client, patients[0]["id"], purpose=REASON, audit=IDENTITY, user_id="pc101")
    assert record.patient["id"] == patients[0]["id"]


def test_a_fault_that_passes_is_retried_and_the_record_still_opens(
    reference: ReferenceServer, client: FhirClient, patients: list[dict[str, Any]]
) -> None:
    reference.inject("truncate", path="/fhir", method="POST", skip=1, count=1)
    record = open_online(client, patients[0]["id"], purpose=REASON, audit=IDENTITY, user_id="pc101")
    assert record.patient["id"] == patients[0]["id"] and client.retries == 1


def test_a_source_that_does_not_answer_in_time_is_a_timeout(
    reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    # Margins, not races: every request but the delayed one has 5 s to answer on a busy box
    # (0.3 s once failed a stressed CI run at the token endpoint); the delayed one takes 60.
    slow = make_client(
        reference,
        retry=RetryPolicy(attempts=1, base_s=0.01, cap_s=0.01),
        timeouts=Timeouts(connect_s=5, read_s=5, total_s=10),
    )
    slow.get(slow.url("metadata"), label="warm up")  # token fetched before the fault
    reference.inject("latency", path="/fhir/Patient/_search", delay_s=60)
    with pytest.raises(Timeout):
        search_online(
            slow, purpose=REASON, audit=IDENTITY, user_id="pc101", nhs_number=nhs_of(patients[0])
        )


def test_wrong_credentials_are_an_auth_failure_before_anything_is_asked(
    reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    stranger = make_client(reference, secret="not-the-secret-0123456789")
    reference.clear_requests()
    with pytest.raises(AuthFailed):
        open_online(stranger, patients[0]["id"], purpose=REASON, audit=IDENTITY, user_id="pc101")
    assert wire(reference) == []
    assert orjson.dumps(reference.access_report()["purposes"]) == b"[]"

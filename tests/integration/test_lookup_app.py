"""The app's online look-up (issue 14 slice 7, `app.services.lookup`) over real HTTP against the
reference central record, with a tablet whose cache holds nobody yet.

Audited at both ends: the source's access report shows every read covered by a purpose of use,
and the local chain holds the same events (same ids) with the source and the reason. Kept
until its time (an injected `now`), unless the person joins the cohort; erased with the index.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from app import times
from app.errors import InvalidInput
from app.services import lookup
from app.services.records import refresh_record
from app.services.search import PatientSearch
from app.services.session import expire_due_lookups
from app.services.syncing import run_sync
from app.store import HOME_SOURCE
from sync import RetryPolicy
from sync.reference import ReferenceServer
from tests.support.sync import search_all

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
REASON = lookup.LookupReason("ETREAT", "Found collapsed at the bus station")
ONCE = RetryPolicy(attempts=1, bad_body_attempts=1)


@pytest.fixture
def patients(reference: ReferenceServer) -> list[dict[str, Any]]:
    return search_all(reference.session(admin=True), f"{reference.base_url}/Patient")


def nhs_of(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == NHS)


def lookup_events(reference: ReferenceServer) -> dict[str, dict[str, Any]]:
    """The source's AuditEvents with a coded purpose of use, by the tablet's event id."""
    events = search_all(reference.session(admin=True), f"{reference.base_url}/AuditEvent")
    return {
        e["meta"]["tag"][0]["code"]: e
        for e in events
        if any(
            c.get("system") == ACT_REASON for p in e.get("purposeOfEvent", []) for c in p["coding"]
        )
    }


def tablet_wire(reference: ReferenceServer) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in reference.requests() if r["path"].startswith("/fhir")]


def test_a_look_up_is_audited_here_and_at_the_source_under_one_event_id(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    person = patients[3]
    number = nhs_of(person)
    found = lookup.look_up(
        tablet, "home", lookup.LookupQuery(nhs_number=f"{number[:3]} {number[3:6]} {number[6:]}"),
        REASON,
    )  # fmt: skip
    [hit] = found.hits
    assert (hit.patient_id, hit.source) == (person["id"], "home")
    assert hit.birth_date == date.fromisoformat(person["birthDate"])
    assert hit.area is None or len(hit.area.split()) <= 4  # town and outward code, no street

    opened_at = times.now()
    record = lookup.open_looked_up(tablet, "home", hit, REASON, now=opened_at)
    assert record.person.patient_id == person["id"] and record.source == HOME_SOURCE
    assert record.looked_up_until is not None
    assert record.looked_up_until - opened_at <= timedelta(hours=12, seconds=1)
    assert record.looked_up_until - opened_at >= timedelta(hours=12) - timedelta(seconds=1)

    # Here: two entries, each naming the source and the reason, with the source's event ids.
    entries = tablet.store.audit_entries()[-2:]
    assert [e.action for e in entries] == ["lookup-search", "lookup-open"]
    assert [e.event_id for e in entries] == [found.audit_event_id, record.audit_event_id]
    assert all(e.reason.startswith("home ETREAT: Found collapsed") for e in entries)
    assert (entries[1].patient_id, entries[1].source) == (person["id"], HOME_SOURCE)
    assert tablet.audit_problems() == []

    # There: the same two events, coded, at the same times; every read was covered.
    events = lookup_events(reference)
    assert set(events) == {found.audit_event_id, record.audit_event_id}
    for entry in entries:
        event = events[entry.event_id]
        assert event["recorded"] == entry.at
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
        assert event["purposeOfEvent"][0]["text"] == REASON.text
    report = reference.access_report()
    assert report["reads"]["unaudited"] == 0 and report["reads"]["audited"] >= 2
    assert {p["kind"] for p in report["purposes"]} == {"search", "read"}

    # The home record holds the look-up events as links of this device's chain: the sync's
    # upload of the same entries leaves no gap and no second copy.
    run_sync(tablet)
    assert set(lookup_events(reference)) == set(events)
    chains = reference.audit_chains()
    device = chains["devices"][tablet.profile.profile_id]
    assert device["gaps"] == [] and device["breaks"] == [] and device["conflicts"] == []


def test_a_wrong_check_digit_or_no_reason_sends_and_writes_nothing(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    number = nhs_of(patients[0])
    wrong = number[:9] + str((int(number[9]) + 1) % 10)
    head = tablet.store.audit_head()
    reference.clear_requests()
    with pytest.raises(InvalidInput, match="check digit") as caught:
        lookup.look_up(tablet, "home", lookup.LookupQuery(nhs_number=wrong), REASON)
    assert caught.value.field == "nhs_number"
    for reason in (lookup.LookupReason("ETREAT", "  "), lookup.LookupReason("XYZ", "why")):
        with pytest.raises(InvalidInput):
            lookup.look_up(tablet, "home", lookup.LookupQuery(nhs_number=number), reason)
    with pytest.raises(InvalidInput, match="date of birth"):
        lookup.look_up(tablet, "home", lookup.LookupQuery(family="Smith"), REASON)
    assert tablet_wire(reference) == [] and tablet.store.audit_head() == head


def test_no_audit_at_the_source_no_look_up(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    query = lookup.LookupQuery(nhs_number=nhs_of(patients[0]))
    lookup.look_up(tablet, "home", query, REASON)  # the token and the metadata are fetched
    reference.inject("unavailable", path="/fhir", method="POST", query=None, retry_after_s=0)
    reference.clear_requests()
    with pytest.raises(lookup.LookupFailed, match="No connection to the central record") as caught:
        lookup.look_up(tablet, "home", query, REASON, retry=ONCE)
    assert caught.value.offline
    # The refused audit and nothing else (the token endpoint's discovery aside).
    assert [w for w in tablet_wire(reference) if w[0] == "POST"] == [("POST", "/fhir")]
    # The attempt is in the local chain all the same.
    assert tablet.store.audit_entries()[-1].action == "lookup-search"
    assert reference.access_report()["reads"]["unaudited"] == 0


def test_offline_is_a_clear_error_and_keeps_nothing(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    query = lookup.LookupQuery(nhs_number=nhs_of(patients[1]))
    [hit] = lookup.look_up(tablet, "home", query, REASON).hits
    reference.stop()
    for attempt in (
        lambda: lookup.look_up(tablet, "home", query, REASON, retry=ONCE),
        lambda: lookup.open_looked_up(tablet, "home", hit, REASON, retry=ONCE),
    ):
        with pytest.raises(lookup.LookupFailed) as caught:
            attempt()
        assert caught.value.offline and "No connection to the central record" in str(caught.value)
    assert tablet.store.count_by_type() == {}


def test_a_look_up_is_erased_after_its_time_with_the_search_index(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    person = patients[5]
    family = person["name"][0]["family"]
    born = date.fromisoformat(person["birthDate"])
    found = lookup.look_up(
        tablet, "home", lookup.LookupQuery(family=family, birth_date=born), REASON
    )
    hit = next(h for h in found.hits if h.patient_id == person["id"])
    start = times.now()
    record = lookup.open_looked_up(tablet, "home", hit, REASON, now=start)
    assert tablet.store.count_by_type("Patient") == {"Patient": 1}
    found_here = PatientSearch(tablet).search(f"{family} {born:%d/%m/%Y}").hits
    assert [(h.id, h.looked_up) for h in found_here] == [(person["id"], True)]  # labelled

    assert lookup.expire_lookups(tablet.store, start + timedelta(hours=11, minutes=59)) == 0
    assert refresh_record(tablet, record).person.patient_id == person["id"]
    erased = lookup.expire_lookups(tablet.store, start + timedelta(hours=12, seconds=1))
    assert erased >= 1
    assert tablet.store.count_by_type() == {}
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", person["id"]) is None
    assert PatientSearch(tablet).search(f"{family} {born:%d/%m/%Y}").hits == []
    with pytest.raises(InvalidInput):
        refresh_record(tablet, record)  # the open record cannot be read back once erased


def test_someone_who_joins_the_cohort_is_kept(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    person = patients[7]
    [hit] = lookup.look_up(
        tablet, "home", lookup.LookupQuery(nhs_number=nhs_of(person)), REASON
    ).hits
    start = times.now()
    lookup.open_looked_up(tablet, "home", hit, REASON, now=start)
    tablet.profile.update_settings(**{lookup.KEEP_SETTING: lookup.KEEP_SYNC})
    run_sync(tablet)  # the cohort brings everyone, this person too: the mark goes
    assert tablet.store.looked_up_until(HOME_SOURCE, "Patient", person["id"]) is None
    hits = PatientSearch(tablet).search(person["name"][0]["family"]).hits
    assert not any(h.looked_up for h in hits if h.id == person["id"])  # the cohort's now
    assert lookup.expire_lookups(tablet.store, start + timedelta(days=2)) == 0
    assert expire_due_lookups(tablet, synced=True) == 0
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", person["id"]) is not None


def test_refusals_are_clear_errors_that_keep_nothing(
    tablet: Any, reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    from app.security import store_client_secret

    person = patients[9]
    [hit] = lookup.look_up(
        tablet, "home", lookup.LookupQuery(nhs_number=nhs_of(person)), REASON
    ).hits
    # The record went from the source between the search and the opening.
    admin = reference.session(admin=True)
    assert admin.delete(f"{reference.base_url}/Patient/{person['id']}").status_code in (200, 204)
    with pytest.raises(lookup.LookupFailed, match="no longer holds that record") as gone:
        lookup.open_looked_up(tablet, "home", hit, REASON, retry=ONCE)
    assert not gone.value.offline
    # This tablet's credentials are refused.
    store_client_secret(tablet.profile.profile_id, "not-the-secret-0123456789")
    with pytest.raises(lookup.LookupFailed, match="did not accept this tablet") as refused:
        lookup.look_up(
            tablet, "home", lookup.LookupQuery(nhs_number=nhs_of(patients[0])), REASON, retry=ONCE
        )
    assert not refused.value.offline
    assert tablet.store.count_by_type() == {}

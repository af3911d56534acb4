"""The record of a person two Trusts know (issue 14 slice 5, docs/design/multi-trust.md section
5): opened by one member's (sid, id), it is every source's row with the same verified NHS
number, read from each source and labelled with the Trust's name from the profile; the
identity fields the Trusts disagree on are named; each member source's opening is audited;
a refresh after a sync that changed who is joined never switches the person (hazard H1)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app.fhir import NHS_VERIFICATION_EXT
from app.services.records import ACCESS_REASONS, open_record, refresh_record
from app.store import HOME_SOURCE
from app.synthetic import generate_trusts
from tests.support.trusts import (
    HOME_TRUST,
    WEST_TRUST,
    Shared,
    import_two_trusts,
    shared_people,
    west_only,
)

PEOPLE = 200
SEED = 21
REASON = ACCESS_REASONS[0]


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


@pytest.fixture
def two(session: Any, region: Path) -> tuple[Any, int, Shared]:
    west = import_two_trusts(session, region)
    person = shared_people(region, with_types=("Flag", "CarePlan", "CareTeam"))[0]
    return session, west, person


def _set_patient(session: Any, source: int, rid: str, change: Any) -> None:
    patient = copy.deepcopy(session.store.get_resource(source, "Patient", rid))
    change(patient)
    meta = patient.setdefault("meta", {})
    meta["versionId"] = str(int(meta.get("versionId", "1")) + 1)
    session.store.put_resources(source, [patient])


def _unverify(patient: dict[str, Any]) -> None:
    for ident in patient["identifier"]:
        for ext in ident.get("extension", ()):
            if ext["url"] == NHS_VERIFICATION_EXT:
                ext["valueCodeableConcept"]["coding"][0]["code"] = "02"


def _opened(session: Any) -> list[tuple[str | None, int | None]]:
    return [
        (e.patient_id, e.source) for e in session.store.audit_entries() if e.action == "open-record"
    ]


def test_a_person_two_trusts_know_is_one_record_labelled_by_trust(two: Any) -> None:
    session, west, person = two
    record = open_record(session, person.home_id, REASON)
    assert record.members == ((HOME_SOURCE, person.home_id), (west, person.west_id))
    assert record.merged and record.sources == (HOME_TRUST, WEST_TRUST)
    assert record.person.patient_id == person.home_id and record.source == HOME_SOURCE
    # Alerts, plans and contacts from both, each with its Trust's name.
    assert {a.source for a in record.alerts} == {HOME_TRUST, WEST_TRUST}
    assert {p.source for p in record.crisis_plans} == {HOME_TRUST, WEST_TRUST}
    created = [p.created for p in record.crisis_plans]
    assert created == sorted(created, reverse=True) and record.crisis_plan == record.crisis_plans[0]
    assert {c.source for c in record.contacts} == {HOME_TRUST, WEST_TRUST}
    assert [i.source for i in record.identities] == [HOME_TRUST, WEST_TRUST]
    assert record.person.disagreements == ()  # the generator keeps identity the same
    # Each Trust's alerts are the ones a cache of that Trust alone shows.
    home_alone = open_record(session, person.home_id, REASON, source=HOME_SOURCE)
    assert home_alone.members == record.members  # either way in, the same person
    # One audit entry per member source, in one go.
    assert _opened(session)[:2] == [(person.home_id, HOME_SOURCE), (person.west_id, west)]
    assert session.store.verify_audit_chain() is None


def test_opened_by_the_neighbours_id_it_is_the_same_person_shown_as_opened(two: Any) -> None:
    session, west, person = two
    record = open_record(session, person.west_id, REASON, source=west)
    assert record.members == ((HOME_SOURCE, person.home_id), (west, person.west_id))
    assert record.source == west and record.person.patient_id == person.west_id
    assert _opened(session) == [(person.home_id, HOME_SOURCE), (person.west_id, west)]


def test_the_fields_the_trusts_disagree_on_are_named(two: Any) -> None:
    session, west, person = two

    def wrong(patient: dict[str, Any]) -> None:
        patient["birthDate"] = "1901-01-01"
        for name in patient["name"]:
            if name.get("use") == "official":
                name["family"] = "Quennell"
        patient["address"] = [{"text": "1 Another Street, Elsewhere"}]

    _set_patient(session, west, person.west_id, wrong)
    record = open_record(session, person.home_id, REASON)
    assert record.person.disagreements == ("name", "date of birth")
    # The address is listed per Trust, not flagged.
    assert record.identities[1].person.address == "1 Another Street, Elsewhere"
    assert record.identities[0].person.address != record.identities[1].person.address


def test_a_number_not_verified_at_one_trust_is_not_merged(two: Any) -> None:
    session, west, person = two
    _set_patient(session, west, person.west_id, _unverify)
    record = open_record(session, person.home_id, REASON)
    assert record.members == ((HOME_SOURCE, person.home_id),) and not record.merged
    assert all(a.source is None for a in record.alerts)  # one source: as before, unlabelled
    assert record.sources == (HOME_TRUST,)
    assert _opened(session) == [(person.home_id, HOME_SOURCE)]


def test_a_neighbour_only_person_is_one_source_and_says_which(session: Any, region: Path) -> None:
    west = import_two_trusts(session, region)
    rid = west_only(region)[0]
    record = open_record(session, rid, REASON, source=west)
    assert record.members == ((west, rid),) and record.sources == (WEST_TRUST,)
    assert all(a.source is None for a in record.alerts)
    assert _opened(session) == [(rid, west)]


def test_a_refresh_never_switches_the_person_when_the_membership_changes(two: Any) -> None:
    session, west, person = two
    _set_patient(session, west, person.west_id, _unverify)
    record = open_record(session, person.home_id, REASON)
    assert not record.merged
    audited = len(session.store.audit_entries())

    # A sync verifies the number at the west Trust: it knows this person too. The refresh
    # says so and does not read its record (its opening was not audited).
    def verify(patient: dict[str, Any]) -> None:
        for ident in patient["identifier"]:
            for ext in ident.get("extension", ()):
                if ext["url"] == NHS_VERIFICATION_EXT:
                    ext["valueCodeableConcept"]["coding"][0]["code"] = "01"

    _set_patient(session, west, person.west_id, verify)
    again = refresh_record(session, record)
    assert again.members == record.members and again.person.patient_id == person.home_id
    assert again.joined == (WEST_TRUST,) and again.left == ()
    assert all(a.source is None for a in again.alerts)
    assert len(session.store.audit_entries()) == audited

    # Opened again (audited), it is both; then the number stops being verified at the west
    # Trust: the merge breaks, the person shown stays the one opened, and the record says
    # whose record left.
    both = open_record(session, person.home_id, REASON)
    assert both.merged
    _set_patient(session, west, person.west_id, _unverify)
    after = refresh_record(session, both)
    assert after.members == ((HOME_SOURCE, person.home_id),)
    assert after.person.patient_id == person.home_id and after.left == (WEST_TRUST,)
    assert all(a.source is None for a in after.alerts)
    assert after.audit_event_id == both.audit_event_id


def test_opened_from_the_west_the_break_keeps_the_west_person(two: Any) -> None:
    session, west, person = two
    record = open_record(session, person.west_id, REASON, source=west)
    _set_patient(session, HOME_SOURCE, person.home_id, _unverify)
    after = refresh_record(session, record)
    assert after.members == ((west, person.west_id),) and after.person.patient_id == person.west_id
    assert after.left == (HOME_TRUST,)

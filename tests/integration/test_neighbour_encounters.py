"""An encounter recorded through the app's service layer about a person only a neighbour Trust
knows goes home (issue 14, docs/design/multi-trust.md section 6 "Left for the wiring"), over
real HTTP with two reference servers: home (trust-1 of a generated region) and the neighbour
(trust-2), the neighbour synced into its own read-only source of the tablet's cache. The
record lands at home exactly once (a lost answer retried, the same Bundle sent again); a
person both Trusts know goes under home's own id; a neighbour's person without a verified NHS
number goes as an unidentified person described by the neighbour's record; two home Patients
with the number are a refusal the officer resolves (hazard H17)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from app.fhir import FIELD_RECORD_ID_SYSTEM, NHS_NUMBER_SYSTEM, display_name_of, nhs_number_of
from app.services.encounters import (
    DISCARD_REASONS,
    KnownPatient,
    field_records_for_patient,
    list_encounters,
    parse_encounter_json,
    person_at_source,
    record,
    resolve_rejected,
)
from app.services.refusals import SEVERAL_PEOPLE, advice_for
from app.services.syncing import build_client, run_sync
from app.store import HOME_SOURCE
from app.synthetic import generate_trusts
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, reference_config
from tests.support.sync import FAST_RETRY, UNIDENTIFIED, encounter_json, search_all
from tests.support.trusts import WEST_TRUST, name_sources, ndjson, sync_read_only

PEOPLE = 60
SEED = 14


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


@pytest.fixture(scope="module")
def cohort_dir(region: Path) -> Path:
    """The home central record (`reference`, and the `tablet` enrolled with it) is trust-1."""
    return region / "trust-1"


@pytest.fixture
def west_server(tmp_path: Path, region: Path) -> Iterator[ReferenceServer]:
    server = ReferenceServer(reference_config(tmp_path / "west", region / "trust-2")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def neighbours(region: Path) -> dict[str, list[dict[str, Any]]]:
    """trust-2's people: verified and unknown at home, verified and known there, unverified
    and unknown at home."""
    home = {nhs_number_of(p) for p in ndjson(region / "trust-1", "Patient")}
    west = ndjson(region / "trust-2", "Patient")
    verified = [p for p in west if person_at_source(p) is not None]
    out = {
        "unknown": [p for p in verified if nhs_number_of(p) not in home],
        "known": [p for p in verified if nhs_number_of(p) in home],
        "unverified": [
            p
            for p in west
            if person_at_source(p) is None and nhs_number_of(p) not in home and p.get("birthDate")
        ],
    }
    assert len(out["unknown"]) >= 2 and out["known"] and out["unverified"]
    return out


def _both(tablet: Any, west_server: ReferenceServer) -> int:
    """Home synced (as any shift starts), the neighbour pulled into its own source; its sid."""
    run_sync(tablet)
    west = name_sources(
        tablet,
        home_url=tablet.profile.server.base_url,
        west_url=west_server.base_url,
        client=TABLET_CLIENT,  # so each later sync pulls the west Trust too, as on a shift
    )
    assert sync_read_only(tablet, west_server, west).bulk_export
    return west


def _record_about(tablet: Any, patient_id: str, source: int) -> str:
    """Record an encounter about `source`'s Patient as the form does: through the service."""
    inp = parse_encounter_json(encounter_json(UNIDENTIFIED), tablet)
    inp = dataclasses.replace(inp, patient=KnownPatient(patient_id, source=source))
    return record(tablet, inp).client_id


def _at_home(
    reference: ReferenceServer, admin: requests.Session, number: str, client_id: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """(ids of home Patients with this NHS number, Encounters with this client id)."""
    patients = search_all(
        admin, f"{reference.base_url}/Patient", {"identifier": f"{NHS_NUMBER_SYSTEM}|{number}"}
    )
    encounters = search_all(
        admin,
        f"{reference.base_url}/Encounter",
        {"identifier": f"{FIELD_RECORD_ID_SYSTEM}|{client_id}"},
    )
    return [p["id"] for p in patients], encounters


def test_a_neighbour_only_person_recorded_in_the_app_lands_at_home_exactly_once(
    tablet: Any,
    reference: ReferenceServer,
    west_server: ReferenceServer,
    neighbours: dict[str, list[dict[str, Any]]],
) -> None:
    west = _both(tablet, west_server)
    admin = reference.session(admin=True)
    person = neighbours["unknown"][0]
    number = nhs_number_of(person)
    assert number and _at_home(reference, admin, number, "none")[0] == []
    client_id = _record_about(tablet, person["id"], west)
    row = tablet.store.outbox_row(client_id)
    assert (row.patient_id, row.patient_source) == (person["id"], west)
    bundle = orjson.loads(row.payload)
    assert f"Patient/{person['id']}" not in row.payload.decode()  # never the neighbour's id
    assert (
        bundle["entry"][0]["request"]["ifNoneExist"] == f"identifier={NHS_NUMBER_SYSTEM}|{number}"
    )

    # The answer is lost after the server applied the Bundle: the retry is answered from what
    # was made, once.
    fault = reference.inject("apply-then-drop", path="/fhir", method="POST", count=1)
    report = run_sync(tablet, retry=FAST_RETRY)
    assert fault.hits == 1 and (report.pushed, report.rejected) == (1, 0)
    [home_id], [encounter] = _at_home(reference, admin, number, client_id)
    assert encounter["subject"] == {"reference": f"Patient/{home_id}"} and home_id != person["id"]
    # Sent again as it is (a crash before the answer was kept): nothing new at home.
    before = reference.counts()
    again = build_client(tablet.profile).post(
        reference.base_url, row.payload, label="send again", headers={"Prefer": "return=minimal"}
    )
    assert {e["response"]["status"] for e in again.body["entry"]} == {"200 OK"}
    assert reference.counts() == before
    assert _at_home(reference, admin, number, client_id)[0] == [home_id]

    # The device remembers the person's home id; the row is the neighbour's person, named,
    # not "gone", and shows on their record card.
    [summary] = [s for s in list_encounters(tablet) if s.client_id == client_id]
    assert summary.state == "sent" and summary.home_patient_id == home_id
    assert not summary.person_gone and not summary.provisional
    assert summary.patient_display == display_name_of(person)
    assert [s.client_id for s in field_records_for_patient(tablet, person["id"], source=west)] == [
        client_id
    ]
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", home_id) is not None


def test_a_person_both_trusts_know_picked_from_the_neighbour_goes_under_homes_id(
    tablet: Any,
    reference: ReferenceServer,
    west_server: ReferenceServer,
    neighbours: dict[str, list[dict[str, Any]]],
) -> None:
    west = _both(tablet, west_server)
    admin = reference.session(admin=True)
    person = neighbours["known"][0]
    number = nhs_number_of(person)
    assert number
    [home_id], _ = _at_home(reference, admin, number, "none")
    client_id = _record_about(tablet, person["id"], west)
    row = tablet.store.outbox_row(client_id)
    assert (row.patient_id, row.patient_source) == (home_id, HOME_SOURCE)
    before = reference.counts()
    assert run_sync(tablet).pushed == 1
    [still], [encounter] = _at_home(reference, admin, number, client_id)
    assert still == home_id and encounter["subject"]["reference"] == f"Patient/{home_id}"
    assert reference.counts()["Patient"] == before["Patient"]


def test_a_neighbours_person_without_a_verified_number_goes_as_an_unidentified_person(
    tablet: Any,
    reference: ReferenceServer,
    west_server: ReferenceServer,
    neighbours: dict[str, list[dict[str, Any]]],
) -> None:
    west = _both(tablet, west_server)
    admin = reference.session(admin=True)
    person = neighbours["unverified"][0]
    client_id = _record_about(tablet, person["id"], west)
    row = tablet.store.outbox_row(client_id)
    assert (row.patient_id, row.patient_source) == (person["id"], west)
    assert run_sync(tablet).pushed == 1
    [encounter] = search_all(
        admin,
        f"{reference.base_url}/Encounter",
        {"identifier": f"{FIELD_RECORD_ID_SYSTEM}|{client_id}"},
    )
    made = admin.get(f"{reference.base_url}/{encounter['subject']['reference']}").json()
    assert made["id"] != person["id"]
    assert not any(i.get("system") == NHS_NUMBER_SYSTEM for i in made.get("identifier", []))
    text = orjson.dumps(made).decode()
    assert f"Known to {WEST_TRUST} as " in text
    [summary] = [s for s in list_encounters(tablet) if s.client_id == client_id]
    assert summary.provisional and not summary.person_gone and summary.state == "sent"


def test_two_home_patients_with_the_number_are_a_refusal_the_officer_resolves(
    tablet: Any,
    reference: ReferenceServer,
    west_server: ReferenceServer,
    neighbours: dict[str, list[dict[str, Any]]],
) -> None:
    admin = reference.session(admin=True)
    person = neighbours["known"][-1]
    number = nhs_number_of(person)
    assert number
    [home_id], _ = _at_home(reference, admin, number, "none")
    twin = admin.get(f"{reference.base_url}/Patient/{home_id}").json()
    del twin["id"]
    made = admin.post(
        f"{reference.base_url}/Patient",
        json=twin,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert made.status_code == 201
    west = _both(tablet, west_server)  # home now holds the number twice: nobody is merged
    client_id = _record_about(tablet, person["id"], west)
    row = tablet.store.outbox_row(client_id)
    assert (row.patient_id, row.patient_source) == (person["id"], west)  # by NHS number
    before = reference.counts()
    report = run_sync(tablet)
    assert (report.pushed, report.rejected) == (0, 1) and report.rejections[0].status == 412
    assert reference.counts() == before
    [summary] = [s for s in list_encounters(tablet) if s.client_id == client_id]
    assert summary.state == "rejected" and not summary.person_gone
    assert advice_for(summary.reason, person_gone=summary.person_gone) is SEVERAL_PEOPLE
    # The officer (at base) resolves it: discarded with a reason, kept, audited.
    resolve_rejected(tablet, client_id, "discard", reason=DISCARD_REASONS[0])
    assert tablet.store.outbox_row(client_id).state == "discarded"
    assert run_sync(tablet).pushed == 0

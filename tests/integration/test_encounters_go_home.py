"""An encounter about someone a neighbour Trust knows lands at home exactly once (issue 14,
docs/design/multi-trust.md section 6), over real HTTP into the reference server seeded with
trust-1 of a generated region, pushed by the tablet's own sync from a real encrypted outbox.

The neighbour's Patients come from trust-2's folder as its server would serve them: some are
unknown at home (a Patient is made there, once), some are known under home's own id (the
encounter joins it). Two home Patients with one NHS number refuse the record (412), which
stays on the tablet with plain advice: never a guess.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from app.fhir import FIELD_RECORD_ID_SYSTEM, NHS_NUMBER_SYSTEM, nhs_number_of
from app.services._encounter_fhir import build_transaction
from app.services.encounters import (
    KIND,
    home_patient_id,
    list_encounters,
    parse_encounter_json,
    person_at_source,
)
from app.services.refusals import SEVERAL_PEOPLE, advice_for
from app.services.syncing import build_client, run_sync
from app.store import HOME_SOURCE
from app.synthetic import generate_trusts
from sync.reference import ReferenceServer
from tests.support.sync import FAST_RETRY, UNIDENTIFIED, encounter_json, search_all

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


def _patients(folder: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (folder / "Patient.ndjson").read_bytes().splitlines()]


@pytest.fixture
def neighbours(region: Path) -> dict[str, list[dict[str, Any]]]:
    """trust-2's people who qualify (verified NHS number): unknown at home, or known there."""
    home = {nhs_number_of(p) for p in _patients(region / "trust-1")}
    qualified = [p for p in _patients(region / "trust-2") if person_at_source(p) is not None]
    out = {
        "unknown": [p for p in qualified if nhs_number_of(p) not in home],
        "known": [p for p in qualified if nhs_number_of(p) in home],
    }
    assert len(out["unknown"]) >= 2 and len(out["known"]) >= 2
    return out


def _queue(tablet: Any, neighbour: dict[str, Any]) -> tuple[str, bytes]:
    """Queue an encounter about a neighbour's person as the outbox holds it; (client id,
    payload). The wiring that picks these people (outbox.patient_source) is the cache's."""
    inp = parse_encounter_json(encounter_json(UNIDENTIFIED), tablet)
    client_id = str(uuid.uuid4())
    bundle = build_transaction(
        inp,
        client_id=client_id,
        patient_id=None,
        user_id=tablet.user_id,
        device_id=tablet.profile.profile_id,
        recorded_at=datetime.now(UTC),
        subject_nhs=person_at_source(neighbour),
    )
    payload = orjson.dumps(bundle)
    tablet.store.add_outbox(
        client_id=client_id,
        kind=KIND,
        patient_id=None,
        patient_source=None,
        user_id=tablet.user_id,
        payload=payload,
    )
    return client_id, payload


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


def _response(tablet: Any, client_id: str) -> dict[str, Any]:
    (raw,) = tablet.store.conn.execute(
        "SELECT response FROM outbox WHERE client_id = ?", (client_id,)
    ).fetchone()
    return dict(orjson.loads(raw))


def test_a_neighbours_patient_unknown_at_home_lands_once_even_sent_twice(
    tablet: Any, reference: ReferenceServer, neighbours: dict[str, list[dict[str, Any]]]
) -> None:
    run_sync(tablet)  # the home cohort, as on any shift
    admin = reference.session(admin=True)
    person = neighbours["unknown"][0]
    number = nhs_number_of(person)
    assert number and _at_home(reference, admin, number, "none")[0] == []
    client_id, payload = _queue(tablet, person)

    report = run_sync(tablet)
    assert (report.pushed, report.rejected) == (1, 0)
    [home_id], [encounter] = _at_home(reference, admin, number, client_id)
    assert encounter["subject"] == {"reference": f"Patient/{home_id}"}
    assert home_id != person["id"]
    created = admin.get(f"{reference.base_url}/Patient/{home_id}").json()
    assert created["birthDate"] == person["birthDate"] and created["gender"] == person["gender"]
    # The answer kept with the sent record names the person's home id; the home Patient is
    # cached from the same answer (the next pull would bring it too).
    assert home_patient_id(orjson.loads(payload), _response(tablet, client_id)) == home_id
    assert tablet.store.get_resource(HOME_SOURCE, "Patient", home_id) is not None

    # Sent again, as a retry after a crash would: the same answers, nothing new.
    before = reference.counts()
    again = build_client(tablet.profile).post(
        reference.base_url, payload, label="send again", headers={"Prefer": "return=minimal"}
    )
    assert {e["response"]["status"] for e in again.body["entry"]} == {"200 OK"}
    assert reference.counts() == before
    assert _at_home(reference, admin, number, client_id)[0] == [home_id]


def test_a_lost_answer_is_retried_into_exactly_one_patient_and_one_encounter(
    tablet: Any, reference: ReferenceServer, neighbours: dict[str, list[dict[str, Any]]]
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    person = neighbours["unknown"][1]
    number = nhs_number_of(person)
    assert number
    client_id, payload = _queue(tablet, person)
    fault = reference.inject("apply-then-drop", path="/fhir", method="POST", count=1)
    report = run_sync(tablet, retry=FAST_RETRY)
    assert fault.hits == 1 and report.pushed == 1 and report.retries >= 1
    [home_id], [encounter] = _at_home(reference, admin, number, client_id)
    assert encounter["subject"]["reference"] == f"Patient/{home_id}"
    assert home_patient_id(orjson.loads(payload), _response(tablet, client_id)) == home_id
    assert tablet.store.outbox_row(client_id).state == "sent"


def test_a_person_home_already_holds_gets_the_encounter_under_homes_own_id(
    tablet: Any, reference: ReferenceServer, neighbours: dict[str, list[dict[str, Any]]]
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    person = neighbours["known"][0]
    number = nhs_number_of(person)
    assert number
    [home_id], _ = _at_home(reference, admin, number, "none")
    before = reference.counts()
    client_id, payload = _queue(tablet, person)
    assert run_sync(tablet).pushed == 1
    [still], [encounter] = _at_home(reference, admin, number, client_id)
    assert still == home_id and encounter["subject"]["reference"] == f"Patient/{home_id}"
    assert reference.counts()["Patient"] == before["Patient"]  # nobody new at home
    assert home_patient_id(orjson.loads(payload), _response(tablet, client_id)) == home_id


def test_two_home_patients_with_the_number_refuse_the_record_never_a_guess(
    tablet: Any, reference: ReferenceServer, neighbours: dict[str, list[dict[str, Any]]]
) -> None:
    run_sync(tablet)
    admin = reference.session(admin=True)
    person = neighbours["known"][1]
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
    before = reference.counts()
    client_id, _ = _queue(tablet, person)

    report = run_sync(tablet)
    assert (report.pushed, report.rejected) == (0, 1)
    assert report.rejections[0].status == 412
    assert reference.counts() == before  # nothing of it written
    row = tablet.store.outbox_row(client_id)
    assert row.state == "rejected"
    assert advice_for(row.reason) is SEVERAL_PEOPLE
    [summary] = [s for s in list_encounters(tablet) if s.client_id == client_id]
    assert summary.state == "rejected" and summary.reason == row.reason
    assert run_sync(tablet).rejected == 0  # kept, not retried on its own
    assert tablet.store.outbox_row(client_id).state == "rejected"

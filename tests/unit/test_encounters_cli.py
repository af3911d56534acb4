"""`kerbside record --from-json`, driven as a shell user would (stdin PIN, exit codes)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.fhir import ODS_ORG_SYSTEM
from app.services._encounter_fhir import encounter_of
from app.services.encounters import make_team, set_team
from app.services.session import Session
from app.store import HOME_SOURCE
from tests.conftest import TEST_PIN

NARRATIVE = "Narrativecanary was found on the footbridge"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)


def _encounter(patient: dict[str, Any], **changes: Any) -> dict[str, Any]:
    obj = {
        "patient": patient,
        "start": START.isoformat().replace("+00:00", "Z"),
        "end": (START + timedelta(minutes=50)).isoformat().replace("+00:00", "Z"),
        "location": "Footbridge over the ring road",
        "police_incident_ref": "WMP-2026-11-20-1042",
        "presenting_situation": "Standing on the wrong side of the railings",
        "section_136": False,
        "outcome": "referred-crisis-team",
        "narrative": NARRATIVE,
    }
    obj.update(changes)
    return obj


def _run(
    session: Session,
    profile_dir: Path,
    encounters: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    path = tmp_path / "encounters.json"
    path.write_text(encounters if isinstance(encounters, str) else json.dumps(encounters))
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{TEST_PIN}\n"))
    args = ["record", "--profile", str(profile_dir), "--user", "pc101", "--pin-stdin"]
    code = main([*args, "--from-json", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def _nhs_number(session: Session) -> tuple[str, str]:
    for pid in session.store.resource_ids(HOME_SOURCE, "Patient"):
        patient = session.store.get_resource(HOME_SOURCE, "Patient", pid) or {}
        for ident in patient.get("identifier", ()):
            return pid, ident["value"]
    raise AssertionError("no patient with an NHS number")


def test_record_prints_the_client_ids_and_queues_each(
    cohort_session: Session,
    profile_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid, nhs = _nhs_number(cohort_session)
    batch = [
        _encounter({"nhs_number": f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"}, risk_to_self="high"),
        _encounter(
            {"unidentified": {"description": "Grey hoodie", "apparent_age": 25, "sex": "male"}},
            referrals=["gp"],
        ),
    ]
    code, out, err = _run(cohort_session, profile_dir, batch, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    ids = json.loads(out)
    assert len(ids) == 2 and all(uuid.UUID(i) for i in ids)
    rows = {r.client_id: r for r in cohort_session.store.outbox_rows()}
    assert list(rows) == ids
    assert rows[ids[0]].patient_id == pid and rows[ids[1]].patient_id is None
    assert all(r.state == "pending" and r.kind == "encounter" for r in rows.values())
    assert NARRATIVE not in out + err


@pytest.mark.parametrize(
    "second, expected",
    [
        ({"end": "2000-01-01T00:00:00Z"}, "[1].end: must be after start"),
        ({"outcome": None}, "[1].outcome: is required"),
        ({"section_136": "yes"}, "[1].section_136: must be true or false"),
        ({"colour": "blue"}, "[1].colour: unknown field"),
        ({"patient": {"nhs_number": "485 777 3457"}}, "[1].patient.nhs_number: matches no person"),
        ({"patient": {"id": "nobody"}}, "[1].patient.id: matches no person"),
        ({"team": "x" * 201}, "[1].team: is longer than 200 characters"),
    ],
)
def test_one_bad_encounter_stores_nothing_and_names_index_and_field(
    cohort_session: Session,
    profile_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    second: dict[str, Any],
    expected: str,
) -> None:
    pid, _ = _nhs_number(cohort_session)
    bad = {**_encounter({"id": pid}), **second}
    bad = {k: v for k, v in bad.items() if v is not None}
    batch = [_encounter({"id": pid}), bad]
    code, out, err = _run(cohort_session, profile_dir, batch, tmp_path, monkeypatch, capsys)
    assert code == 1 and out == ""
    assert expected in err and "nothing was stored" in err
    assert NARRATIVE not in err
    assert cohort_session.store.outbox_rows() == []


@pytest.mark.parametrize(
    "content, expected",
    [("{not json", "not valid JSON"), ("{}", "JSON array"), ("[]", "no encounters")],
)
def test_a_bad_file_is_refused_before_the_pin(
    session: Session,
    profile_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str,
    expected: str,
) -> None:
    code, out, err = _run(session, profile_dir, content, tmp_path, monkeypatch, capsys)
    assert code == 1 and out == "" and expected in err
    assert session.profile.failures == 0


def test_a_missing_team_is_the_profiles_and_a_given_one_is_kept(
    session: Session,
    profile_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_team(session.profile, make_team("Bolton Street Triage", "RXV"))
    person = {"unidentified": {"description": "Grey hoodie", "apparent_age": 25, "sex": "male"}}
    batch = [
        _encounter(person),
        _encounter(person, team="Salford Street Triage"),
        _encounter(person, team=None),
    ]
    code, out, err = _run(session, profile_dir, batch, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    payloads = {r.client_id: orjson.loads(r.payload) for r in session.store.outbox_rows()}
    providers = [encounter_of(payloads[cid]).get("serviceProvider") for cid in json.loads(out)]
    ours = {"system": ODS_ORG_SYSTEM, "value": "RXV"}
    assert providers == [
        {"display": "Bolton Street Triage", "identifier": ours},
        {"display": "Salford Street Triage"},  # another team's code is not ours to guess
        None,
    ]

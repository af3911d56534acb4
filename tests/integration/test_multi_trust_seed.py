"""`generate --trusts` folders served by real reference servers over HTTP on 127.0.0.1.

Each Trust's folder seeds its own server (in process, and once as the `serve-reference
--seed DIR/trust-k` command); a person shared by two Trusts is found by NHS number on both,
under each Trust's own id, and an id both Trusts use is a different person on each.
"""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from app.fhir import NHS_NUMBER_SYSTEM, nhs_number_of
from app.synthetic import generate_trusts
from sync.reference import ReferenceServer
from tests.conftest import TABLET_CLIENT, reference_config

KERBSIDE = str(Path(sys.executable).parent / "kerbside")
PEOPLE = 400
SEED = 21


def _patients(folder: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (folder / "Patient.ndjson").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


@pytest.fixture
def servers(tmp_path: Path, region: Path) -> Iterator[list[ReferenceServer]]:
    started: list[ReferenceServer] = []
    try:
        for k in (1, 2):
            config = reference_config(tmp_path / f"central-{k}", region / f"trust-{k}")
            started.append(ReferenceServer(config).start())
        yield started
    finally:
        for server in started:
            server.stop()


def _search_nhs(http: requests.Session, base: str, number: str) -> list[dict[str, Any]]:
    resp = http.get(
        f"{base}/Patient", params={"identifier": f"{NHS_NUMBER_SYSTEM}|{number}"}, timeout=30
    )
    assert resp.status_code == 200, resp.text[:300]
    return [e["resource"] for e in resp.json().get("entry", [])]


def test_a_shared_person_is_found_by_nhs_number_at_each_trust_under_its_own_id(
    region: Path, servers: list[ReferenceServer]
) -> None:
    ids = [{nhs_number_of(p): p["id"] for p in _patients(region / f"trust-{k}")} for k in (1, 2)]
    shared = sorted(n for n in ids[0].keys() & ids[1].keys() if n)
    assert len(shared) > 50
    https = [server.session() for server in servers]
    for number in shared[:5]:
        found = [
            _search_nhs(http, s.base_url, number) for http, s in zip(https, servers, strict=True)
        ]
        assert [[p["id"] for p in hits] for hits in found] == [[ids[0][number]], [ids[1][number]]]
        assert ids[0][number] != ids[1][number]


def test_an_id_both_trusts_use_is_a_different_person_on_each_server(
    region: Path, servers: list[ReferenceServer]
) -> None:
    numbers = [
        {p["id"]: nhs_number_of(p) for p in _patients(region / f"trust-{k}")} for k in (1, 2)
    ]
    colliding = sorted(numbers[0].keys() & numbers[1].keys())
    assert colliding
    for pid in colliding:
        served = []
        for server in servers:
            resp = server.session().get(f"{server.base_url}/Patient/{pid}", timeout=30)
            assert resp.status_code == 200
            served.append(nhs_number_of(resp.json()))
        assert served == [numbers[0][pid], numbers[1][pid]]
        assert served[0] != served[1]


def test_serve_reference_seeds_from_a_trust_folder(tmp_path: Path, region: Path) -> None:
    patient = _patients(region / "trust-2")[0]
    number = nhs_number_of(patient)
    assert number is not None
    proc = subprocess.Popen(
        [
            KERBSIDE,
            "serve-reference",
            "--data",
            str(tmp_path / "central"),
            "--seed",
            str(region / "trust-2"),
            "--client",
            ":".join(TABLET_CLIENT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        base = proc.stdout.readline().strip() if ready else ""
        assert base, "serve-reference printed no base URL"
        smart = requests.get(f"{base}/.well-known/smart-configuration", timeout=30).json()
        token = requests.post(
            smart["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=TABLET_CLIENT,
            timeout=30,
        ).json()["access_token"]
        http = requests.Session()
        http.headers.update({"Authorization": f"Bearer {token}"})
        assert [p["id"] for p in _search_nhs(http, base, number)] == [patient["id"]]
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()

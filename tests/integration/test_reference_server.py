"""The reference central record over real HTTP on 127.0.0.1: the FHIR semantics sync relies on,
OAuth and the device registry, persistence, and every fault kind as a client sees it.

Served resources are validated with `fhir.resources` R4B models where that is cheap.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from sync.reference import ReferenceServer
from tests.conftest import ADMIN_CLIENT, TABLET_CLIENT
from tests.support.clock import ManualClock
from tests.support.sync import cohort_counts

FHIR_JSON = "application/fhir+json"
PROVISIONAL = {
    "system": "https://kerbside.example/CodeSystem/patient-record-status",
    "code": "provisional",
}
SIGNAL_SYSTEM = "https://kerbside.example/CodeSystem/server-signal"
TEST_SYSTEM = "https://kerbside.example/test-id"


# -- helpers -----------------------------------------------------------------------------


def outcome(resp: requests.Response, status: int) -> dict[str, Any]:
    """Assert `resp` is an error with `status` carrying a valid OperationOutcome."""
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith(FHIR_JSON)
    body = resp.json()
    OperationOutcome.model_validate(body)
    assert body["issue"][0]["severity"] == "error"
    return body


def ok(resp: requests.Response, status: int = 200) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:300]
    return resp.json()  # type: ignore[no-any-return]


def pages(
    http: requests.Session, url: str, params: dict[str, str] | None = None, between: Any = None
) -> list[list[dict[str, Any]]]:
    """Every page of a search, following `next` exactly as given; `between(n)` runs after
    page n is read (to change data mid-pull)."""
    out: list[list[dict[str, Any]]] = []
    next_url: str | None = url
    while next_url:
        bundle = ok(http.get(next_url, params=params if not out else None))
        out.append([e["resource"] for e in bundle.get("entry", []) if "resource" in e])
        next_url = next(
            (lk["url"] for lk in bundle.get("link", []) if lk["relation"] == "next"), None
        )
        if between is not None:
            between(len(out))
    return out


def all_ids(http: requests.Session, url: str, params: dict[str, str]) -> list[str]:
    return [r["id"] for page in pages(http, url, params) for r in page]


def first_id(http: requests.Session, base: str) -> str:
    """The id of one Patient (one page, no paging)."""
    bundle = ok(http.get(f"{base}/Patient", params={"_count": "1"}))
    return str(bundle["entry"][0]["resource"]["id"])


def new_patient(marker: str, *, provisional: bool = False) -> dict[str, Any]:
    meta = {"tag": [PROVISIONAL]} if provisional else {}
    return {
        "resourceType": "Patient",
        "meta": meta,
        "active": True,
        "identifier": [{"system": TEST_SYSTEM, "value": marker}],
        "name": [{"family": "Testperson", "given": ["Synthetic"]}],
    }


def create(http: requests.Session, base: str, resource: dict[str, Any]) -> dict[str, Any]:
    resp = http.post(
        f"{base}/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR_JSON}
    )
    return ok(resp, 201)


def raw_get(
    server: ReferenceServer, path: str, token: str, timeout_s: float = 10.0
) -> tuple[dict[str, str], bytes, list[float]]:
    """GET over a bare socket: headers, the body bytes that really arrived before the server
    closed, and the arrival time of each received chunk (to see trickles and drops)."""
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer "
            f"{token}\r\nAccept: {FHIR_JSON}\r\nConnection: close\r\n\r\n".encode()
        )
        data, times = b"", []
        while chunk := sock.recv(65536):
            data += chunk
            times.append(time.perf_counter())
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    headers[":status"] = lines[0].split()[1]
    return headers, body, times


def _plus_ms(stamp: str, ms: int) -> str:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.fixture
def server_clock() -> ManualClock:
    """Overrides conftest's wall clock: the server's time moves only when a test moves it."""
    return ManualClock()


@pytest.fixture
def tablet_http(reference: ReferenceServer) -> requests.Session:
    return reference.session()


@pytest.fixture
def admin_http(reference: ReferenceServer) -> requests.Session:
    return reference.session(admin=True)


# -- discovery ---------------------------------------------------------------------------


def test_metadata_is_a_valid_capability_statement(reference: ReferenceServer) -> None:
    resp = requests.get(f"{reference.base_url}/metadata", timeout=30)  # no token needed
    cs = ok(resp)
    assert resp.headers["content-type"].startswith(FHIR_JSON)
    CapabilityStatement.model_validate(cs)
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance"
    rest = cs["rest"][0]
    assert {"code": "transaction"} in rest["interaction"]
    by_type = {r["type"]: r for r in rest["resource"]}
    for rtype in ("Patient", "Encounter", "Observation", "QuestionnaireResponse", "Flag"):
        codes = {i["code"] for i in by_type[rtype]["interaction"]}
        assert {"read", "vread", "search-type", "create", "history-type"} <= codes
        assert by_type[rtype]["conditionalCreate"] is True
    params = {p["name"] for p in by_type["Encounter"]["searchParam"]}
    assert {"_lastUpdated", "identifier", "patient", "_sort", "_count"} <= params
    token_ext = rest["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": reference.token_url} in token_ext

    smart = ok(requests.get(f"{reference.base_url}/.well-known/smart-configuration", timeout=30))
    assert smart["token_endpoint"] == reference.token_url
    assert "client_credentials" in smart["grant_types_supported"]
    granted = ok(
        requests.post(
            smart["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=TABLET_CLIENT,
            timeout=30,
        )
    )
    assert granted["token_type"] == "bearer" and granted["expires_in"] > 0
    assert "system/Patient.crs" in granted["scope"].split()


# -- read, search, history ---------------------------------------------------------------


def test_read_has_etag_version_and_last_updated(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    base = reference.base_url
    pid = first_id(tablet_http, base)
    resp = tablet_http.get(f"{base}/Patient/{pid}")
    patient = ok(resp)
    Patient.model_validate(patient)
    assert patient["meta"]["versionId"] == "1"
    assert resp.headers["etag"] == 'W/"1"'
    assert patient["meta"]["lastUpdated"].endswith("Z") and "." in patient["meta"]["lastUpdated"]
    assert "last-modified" in resp.headers
    assert (
        tablet_http.get(f"{base}/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code
        == 304
    )

    patient["active"] = False
    put = admin_http.put(
        f"{base}/Patient/{patient['id']}",
        json=patient,
        headers={"If-Match": 'W/"1"', "Content-Type": FHIR_JSON},
    )
    updated = ok(put)
    assert updated["meta"]["versionId"] == "2" and put.headers["etag"] == 'W/"2"'
    assert updated["meta"]["lastUpdated"] > patient["meta"]["lastUpdated"]
    stale = admin_http.put(
        f"{base}/Patient/{patient['id']}",
        json=patient,
        headers={"If-Match": 'W/"1"', "Content-Type": FHIR_JSON},
    )
    outcome(stale, 412)
    old = ok(tablet_http.get(f"{base}/Patient/{patient['id']}/_history/1"))
    assert old["active"] is True and old["meta"]["versionId"] == "1"


def test_search_by_last_updated_identifier_and_patient(
    reference: ReferenceServer,
    tablet_http: requests.Session,
    admin_http: requests.Session,
    server_clock: ManualClock,
) -> None:
    base = reference.base_url
    seeded = all_ids(tablet_http, f"{base}/Patient", {"_count": "100"})
    assert len(seeded) == 40
    a = create(admin_http, base, new_patient("lu-a"))
    server_clock.advance(timedelta(milliseconds=5))  # a later millisecond
    b = create(admin_http, base, new_patient("lu-b"))
    a_lu = a["meta"]["lastUpdated"]
    assert b["meta"]["lastUpdated"] > a_lu

    def search(**params: str) -> set[str]:
        return set(all_ids(tablet_http, f"{base}/Patient", {"_count": "100", **params}))

    assert search(_lastUpdated=f"gt{a_lu}") == {b["id"]}
    assert search(_lastUpdated=f"ge{a_lu}") == {a["id"], b["id"]}
    assert search(_lastUpdated=f"lt{a_lu}") == set(seeded)
    assert search(_lastUpdated=f"ge{a_lu}", identifier=f"{TEST_SYSTEM}|lu-b") == {b["id"]}
    assert search(identifier="lu-a") == {a["id"]}  # any system
    assert search(identifier="https://other.example|lu-a") == set()

    nhs = ok(tablet_http.get(f"{base}/Patient/{seeded[0]}"))["identifier"][0]
    assert search(identifier=f"{nhs['system']}|{nhs['value']}") == {seeded[0]}

    encounters = [
        r for page in pages(tablet_http, f"{base}/Encounter", {"_count": "1000"}) for r in page
    ]
    subject = encounters[0]["subject"]["reference"]
    expected = {e["id"] for e in encounters if e["subject"]["reference"] == subject}
    by_ref = set(all_ids(tablet_http, f"{base}/Encounter", {"patient": subject}))
    by_id = set(all_ids(tablet_http, f"{base}/Encounter", {"patient": subject.split("/")[1]}))
    assert by_ref == by_id == expected


def test_count_and_next_links_page_through_everything(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    url = f"{reference.base_url}/Patient"
    got = pages(tablet_http, url, {"_count": "7", "_sort": "_lastUpdated", "_total": "accurate"})
    assert [len(p) for p in got] == [7, 7, 7, 7, 7, 5]
    ids = [r["id"] for p in got for r in p]
    assert len(set(ids)) == 40
    stamps = [r["meta"]["lastUpdated"] for p in got for r in p]
    assert stamps == sorted(stamps)
    bundle = ok(tablet_http.get(url, params={"_count": "7", "_total": "accurate"}))
    Bundle.model_validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 40
    assert all(e["fullUrl"] == f"{url}/{e['resource']['id']}" for e in bundle["entry"])
    counted = ok(tablet_http.get(url, params={"_summary": "count"}))
    assert counted["total"] == 40 and not counted.get("entry")
    assert not [lk for lk in counted["link"] if lk["relation"] == "next"]
    outcome(tablet_http.get(url, params={"_summary": "text"}), 400)


def test_history_since_lists_updates_creates_and_deletes(
    reference: ReferenceServer,
    tablet_http: requests.Session,
    admin_http: requests.Session,
    server_clock: ManualClock,
) -> None:
    base = reference.base_url
    ids = all_ids(tablet_http, f"{base}/Patient", {"_count": "100", "_sort": "_lastUpdated"})
    seeded_at = ok(tablet_http.get(f"{base}/Patient/{ids[-1]}"))["meta"]["lastUpdated"]
    since = _plus_ms(seeded_at, 1)  # after the seed, before the changes below
    server_clock.advance(timedelta(milliseconds=5))
    changed = ok(tablet_http.get(f"{base}/Patient/{ids[0]}"))
    changed["active"] = False
    ok(
        admin_http.put(
            f"{base}/Patient/{ids[0]}", json=changed, headers={"Content-Type": FHIR_JSON}
        )
    )
    assert admin_http.delete(f"{base}/Patient/{ids[1]}").status_code == 204
    made = create(admin_http, base, new_patient("hist"))

    history = pages(tablet_http, f"{base}/Patient/_history", {"_since": since, "_count": "2"})
    bundle = ok(tablet_http.get(f"{base}/Patient/_history", params={"_since": since}))
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    by_id = {e["fullUrl"].rsplit("/", 1)[1]: e for e in bundle["entry"]}
    assert set(by_id) == {ids[0], ids[1], made["id"]}  # nothing from before `_since`
    assert by_id[ids[0]]["request"]["method"] == "PUT"
    assert by_id[ids[0]]["resource"]["meta"]["versionId"] == "2"
    assert by_id[ids[1]]["request"] == {"method": "DELETE", "url": f"Patient/{ids[1]}"}
    assert "resource" not in by_id[ids[1]]
    assert by_id[made["id"]]["request"]["method"] == "POST"
    assert [len(p) for p in history] == [1, 1]  # the same listing in pages of 2 (the
    # deletion carries no resource), through `next` links

    outcome(tablet_http.get(f"{base}/Patient/{ids[1]}"), 410)
    assert ids[1] not in all_ids(tablet_http, f"{base}/Patient", {"_count": "100"})


# -- transactions ------------------------------------------------------------------------


def _field_bundle(marker: str) -> dict[str, Any]:
    p_urn, e_urn = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    ident = [{"system": TEST_SYSTEM, "value": marker}]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": p_urn,
                "resource": new_patient(marker, provisional=True),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={TEST_SYSTEM}|{marker}",
                },
            },
            {
                "fullUrl": e_urn,
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "identifier": ident,
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "FLD",
                    },
                    "subject": {"reference": p_urn},
                },
                "request": {
                    "method": "POST",
                    "url": "Encounter",
                    "ifNoneExist": f"identifier={TEST_SYSTEM}|{marker}",
                },
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "identifier": ident,
                    "code": {"text": "risk"},
                    "subject": {"reference": p_urn},
                    "encounter": {"reference": e_urn},
                },
                "request": {
                    "method": "POST",
                    "url": "Observation",
                    "ifNoneExist": f"identifier={TEST_SYSTEM}|{marker}",
                },
            },
        ],
    }


def test_transaction_resolves_urns_and_conditional_create_is_idempotent(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    base = reference.base_url
    headers = {"Content-Type": FHIR_JSON}
    bundle = _field_bundle("tx-1")
    first = ok(tablet_http.post(base, json=bundle, headers=headers))
    Bundle.model_validate(first)
    assert first["type"] == "transaction-response"
    assert [e["response"]["status"] for e in first["entry"]] == ["201 Created"] * 3
    pid, eid, oid = (e["response"]["location"].split("/")[1] for e in first["entry"])
    encounter = ok(tablet_http.get(f"{base}/Encounter/{eid}"))
    assert encounter["subject"]["reference"] == f"Patient/{pid}"
    before = reference.counts()

    again = ok(tablet_http.post(base, json=bundle, headers=headers))  # a retried push
    assert [e["response"]["status"] for e in again["entry"]] == ["200 OK"] * 3
    assert [e["response"]["location"].split("/")[1] for e in again["entry"]] == [pid, eid, oid]
    assert reference.counts() == before
    admin = reference.session(admin=True)  # tablets may create Observations, not read them
    assert all_ids(admin, f"{base}/Observation", {"identifier": "tx-1"}) == [oid]
    observation = ok(admin.get(f"{base}/Observation/{oid}"))
    assert observation["encounter"]["reference"] == f"Encounter/{eid}"

    broken = _field_bundle("tx-2")
    broken["entry"][2]["resource"]["subject"] = {"reference": f"urn:uuid:{uuid.uuid4()}"}
    outcome(tablet_http.post(base, json=broken, headers=headers), 400)
    assert reference.counts() == before  # all or nothing


# -- errors and auth ---------------------------------------------------------------------


def test_every_error_is_an_operation_outcome(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    base, json_h = reference.base_url, {"Content-Type": FHIR_JSON}
    pid = first_id(tablet_http, base)
    patient = ok(tablet_http.get(f"{base}/Patient/{pid}"))
    cases = [
        (tablet_http.get(f"{base}/Patient/no-such-id"), 404),
        (tablet_http.get(f"{base}/Unheard"), 404),
        (tablet_http.get(f"{base}/Patient/a/b/c/d"), 404),
        (tablet_http.get(f"{base}/Patient", params={"colour": "red"}), 400),
        (tablet_http.get(f"{base}/Patient", params={"_lastUpdated": "gtyesterday"}), 400),
        (tablet_http.post(f"{base}/Encounter", data=b"{not json", headers=json_h), 400),
        (
            tablet_http.post(
                f"{base}/Encounter", json={"resourceType": "Encounter"}, headers=json_h
            ),
            400,
        ),
        (requests.get(f"{base}/Patient", timeout=30), 401),
        (
            requests.get(f"{base}/Patient", headers={"Authorization": "Bearer forged"}, timeout=30),
            401,
        ),
        (tablet_http.delete(f"{base}/Patient/{pid}"), 403),
        (tablet_http.put(f"{base}/Patient/{pid}", json=patient, headers=json_h), 403),
        (tablet_http.get(f"{reference.root_url}/admin/clients"), 403),
        (tablet_http.patch(f"{base}/Patient/{pid}", json={}, headers=json_h), 405),
        (tablet_http.put(f"{base}/metadata", json={}, headers=json_h), 405),
        (
            tablet_http.post(f"{base}/Encounter", data="x", headers={"Content-Type": "text/plain"}),
            415,
        ),
    ]
    for resp, status in cases:
        outcome(resp, status)
    unauth = requests.get(f"{base}/Patient", timeout=30)
    assert unauth.headers["www-authenticate"].startswith("Bearer")
    admin = reference.session(admin=True)
    outcome(
        admin.put(f"{base}/Patient/{pid}", json=patient, headers={**json_h, "If-Match": 'W/"9"'}),
        412,
    )


def test_expired_unknown_and_forgotten_tokens_get_401(
    reference: ReferenceServer, server_clock: ManualClock
) -> None:
    url = f"{reference.base_url}/Patient?_count=1"
    reference.configure(token_lifetime_s=1)
    short = reference.session()
    ok(short.get(url))
    server_clock.advance(timedelta(seconds=1))
    body = outcome(short.get(url), 401)
    assert body["issue"][0]["code"] == "login"

    reference.configure(token_lifetime_s=300)
    fresh = reference.session()
    ok(fresh.get(url))
    assert reference.expire_tokens(TABLET_CLIENT[0]) >= 1
    outcome(fresh.get(url), 401)
    wrong = requests.post(
        reference.token_url,
        data={"grant_type": "client_credentials"},
        auth=(TABLET_CLIENT[0], "not-the-secret"),
        timeout=30,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_a_revoked_device_is_told_so_until_reinstated(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    url, admin = f"{reference.base_url}/Patient?_count=1", f"{reference.root_url}/admin"
    ok(tablet_http.get(url))
    revoked = ok(admin_http.post(f"{admin}/clients/{TABLET_CLIENT[0]}/revoke"))
    assert revoked["revoked"] is True
    body = outcome(tablet_http.get(url), 403)
    assert body["issue"][0]["details"]["coding"] == [
        {"system": SIGNAL_SYSTEM, "code": "device-revoked"}
    ]
    refused = requests.post(
        reference.token_url,
        data={"grant_type": "client_credentials"},
        auth=TABLET_CLIENT,
        timeout=30,
    )
    assert refused.status_code == 400
    assert refused.json()["error_description"] == "device-revoked"
    listed = {c["client_id"]: c for c in ok(admin_http.get(f"{admin}/clients"))}
    assert listed[TABLET_CLIENT[0]]["revoked"] is True

    ok(admin_http.post(f"{admin}/clients/{TABLET_CLIENT[0]}/reinstate"))
    ok(reference.session().get(url))


def test_admin_adds_and_removes_clients_while_running(
    reference: ReferenceServer, admin_http: requests.Session
) -> None:
    admin, url = f"{reference.root_url}/admin", f"{reference.base_url}/Patient?_count=1"
    made = admin_http.put(
        f"{admin}/clients/tablet-9",
        json={"secret": "a-new-secret-123", "policy": {"idle-lock-minutes": 2}},
    )
    assert made.status_code == 201 and made.json()["role"] == "tablet"
    new = reference.token("tablet-9", "a-new-secret-123")
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {new}"
    ok(http.get(url))
    policy = ok(http.get(f"{reference.base_url}/$device-policy"))
    assert {"name": "idle-lock-minutes", "valueInteger": 2} in policy["parameter"]
    listing = admin_http.get(f"{admin}/clients").text
    assert "secret" not in listing and "tablet-9" in listing

    assert admin_http.delete(f"{admin}/clients/tablet-9").status_code == 204
    outcome(http.get(url), 401)
    outcome(admin_http.delete(f"{admin}/clients/tablet-9"), 404)
    assert "tablet-9" not in {c["client_id"] for c in reference.clients()}


# -- persistence and seeding -------------------------------------------------------------


def test_seeding_loads_every_ndjson_line(
    reference: ReferenceServer, cohort_dir: Path, tablet_http: requests.Session
) -> None:
    assert reference.counts() == cohort_counts(cohort_dir)
    line = json.loads((cohort_dir / "Patient.ndjson").read_bytes().splitlines()[0])
    served = ok(tablet_http.get(f"{reference.base_url}/Patient/{line['id']}"))
    assert served["meta"]["versionId"] == "1"
    served.pop("meta"), line.pop("meta")
    assert served == line


def test_data_clients_and_revocations_survive_a_restart(
    reference: ReferenceServer, cohort_dir: Path, admin_http: requests.Session
) -> None:
    base = reference.base_url
    made = create(admin_http, base, new_patient("persist"))
    reference.register_client("tablet-2", "second-secret-456")
    reference.revoke("tablet-2")
    before = reference.counts()
    old_token = admin_http.headers["Authorization"]

    reference.restart()
    assert reference.base_url == base  # same port
    assert reference.counts() == before  # the seed directory is not loaded twice
    assert before["Patient"] == cohort_counts(cohort_dir)["Patient"] + 1
    gone = requests.get(
        f"{base}/Patient?_count=1", headers={"Authorization": old_token}, timeout=30
    )
    outcome(gone, 401)  # tokens live in memory only
    admin = reference.session(admin=True)
    assert ok(admin.get(f"{base}/Patient/{made['id']}")) == made
    later = create(admin, base, new_patient("after-restart"))
    assert later["meta"]["lastUpdated"] >= made["meta"]["lastUpdated"]
    revoked = {c["client_id"]: c["revoked"] for c in reference.clients()}
    assert revoked["tablet-2"] is True


# -- paging modes and history off --------------------------------------------------------


def _pull_with_update(
    reference: ReferenceServer, tablet: requests.Session, admin: requests.Session
) -> tuple[list[str], list[str], str]:
    """Page Patients sorted by lastUpdated, updating the first one after page 1 (as a clerk
    would mid-pull); returns (ids before, ids seen, id updated)."""
    url = f"{reference.base_url}/Patient"
    params = {"_count": "10", "_sort": "_lastUpdated"}
    before = all_ids(tablet, url, {**params, "_count": "100"})

    def update_first(page: int) -> None:
        if page == 1:
            resource = ok(admin.get(f"{url}/{before[0]}"))
            resource["active"] = not resource.get("active", True)
            ok(admin.put(f"{url}/{before[0]}", json=resource, headers={"Content-Type": FHIR_JSON}))

    seen = [r["id"] for page in pages(tablet, url, params, between=update_first) for r in page]
    return before, seen, before[0]


def test_offset_paging_skips_a_resource_when_data_moves_mid_pull(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    reference.set_paging("offset")
    page = ok(tablet_http.get(f"{reference.base_url}/Patient", params={"_count": "10"}))
    next_url = next(lk["url"] for lk in page["link"] if lk["relation"] == "next")
    assert "_offset=10" in next_url  # a plain, guessable offset link
    before, seen, moved = _pull_with_update(reference, tablet_http, admin_http)
    assert set(before) - set(seen) == {before[10]}  # the 11th slid onto page 1: never seen
    assert seen.count(moved) == 2  # and the moved one is read twice


def test_keyset_paging_misses_nothing_when_data_moves_mid_pull(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    before, seen, moved = _pull_with_update(reference, tablet_http, admin_http)
    assert set(seen) == set(before)
    assert seen.count(moved) == 2


def test_offset_paging_also_shifts_on_delete(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    reference.set_paging("offset")
    url = f"{reference.base_url}/Patient"
    before = all_ids(tablet_http, url, {"_count": "100"})

    def delete_one(page: int) -> None:
        if page == 1:
            assert admin_http.delete(f"{url}/{before[3]}").status_code == 204

    seen = [
        r["id"] for p in pages(tablet_http, url, {"_count": "10"}, between=delete_one) for r in p
    ]
    assert set(before) - set(seen) == {before[10]}


def test_history_can_be_switched_off(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    reference.set_history(False)
    cs = ok(requests.get(f"{reference.base_url}/metadata", timeout=30))
    CapabilityStatement.model_validate(cs)
    for resource in cs["rest"][0]["resource"]:
        assert "history-type" not in {i["code"] for i in resource["interaction"]}
    outcome(tablet_http.get(f"{reference.base_url}/Patient/_history"), 404)
    reference.set_history(True)
    ok(tablet_http.get(f"{reference.base_url}/Patient/_history", params={"_count": "1"}))


# -- faults on the wire ------------------------------------------------------------------


def _a_patient(reference: ReferenceServer, http: requests.Session) -> tuple[str, bytes]:
    pid = first_id(http, reference.base_url)
    path = f"{urlsplit(reference.base_url).path}/Patient/{pid}"
    return path, http.get(f"{reference.root_url}{path}").content


def test_fault_drop_closes_the_connection_after_n_bytes(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    path, whole = _a_patient(reference, tablet_http)
    token = reference.token()
    reference.inject("drop", path=path, after_bytes=100, count=1)
    headers, body, _ = raw_get(reference, path, token)
    assert headers[":status"] == "200"
    assert int(headers["content-length"]) == len(whole) > 100
    assert body == whole[:100]  # then the server hung up
    reference.inject("drop", path=path, after_bytes=50, count=1)
    with pytest.raises(
        (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    ):
        tablet_http.get(f"{reference.root_url}{path}")
    assert tablet_http.get(f"{reference.root_url}{path}").content == whole  # rule used up


def test_fault_rate_of_503s(reference: ReferenceServer) -> None:
    rule = reference.inject("unavailable", path="/fhir/metadata", rate=0.4, seed=3)
    statuses = []
    for _ in range(30):
        resp = requests.get(f"{reference.base_url}/metadata", timeout=30)
        statuses.append(resp.status_code)
        if resp.status_code == 503:
            assert resp.headers["retry-after"] == "1"
            outcome(resp, 503)
    assert set(statuses) == {200, 503}
    assert statuses.count(503) == rule.hits
    assert 4 <= rule.hits <= 22  # about 40 % of 30


def test_fault_latency_delays_the_answer(reference: ReferenceServer) -> None:
    reference.inject("latency", path="/fhir/metadata", delay_s=0.4, count=1)
    started = time.perf_counter()
    ok(requests.get(f"{reference.base_url}/metadata", timeout=30))
    assert time.perf_counter() - started >= 0.4


def test_fault_truncated_body_is_complete_http_but_broken_json(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    path, whole = _a_patient(reference, tablet_http)
    reference.inject("truncate", path=path, fraction=0.5, count=1)
    resp = tablet_http.get(f"{reference.root_url}{path}")
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content) == len(whole) // 2
    assert resp.content == whole[: len(whole) // 2]
    with pytest.raises(ValueError):
        resp.json()


def test_fault_trickle_sends_the_body_slowly(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    path, whole = _a_patient(reference, tablet_http)
    token = reference.token()
    chunk, interval = 256, 0.03
    reference.inject("trickle", path=path, chunk_bytes=chunk, interval_s=interval, count=1)
    started = time.perf_counter()
    _headers, body, times = raw_get(reference, path, token)
    steps = -(-len(whole) // chunk)
    assert steps >= 4 and body == whole
    assert times[-1] - started >= (steps - 1) * interval * 0.9
    assert len(times) >= 3  # it arrived in pieces, not in one write


def test_fault_apply_then_drop_commits_the_write(
    reference: ReferenceServer, admin_http: requests.Session
) -> None:
    reference.inject("apply-then-drop", path="/fhir/Patient", method="POST", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        admin_http.post(
            f"{reference.base_url}/Patient",
            json=new_patient("lost-answer"),
            headers={"Content-Type": FHIR_JSON},
        )
    found = all_ids(admin_http, f"{reference.base_url}/Patient", {"identifier": "lost-answer"})
    assert len(found) == 1


def test_faults_switch_on_and_off_through_the_admin_endpoint(
    reference: ReferenceServer, admin_http: requests.Session
) -> None:
    faults, url = f"{reference.root_url}/admin/faults", f"{reference.base_url}/metadata"
    outcome(admin_http.post(faults, json={"kind": "no-such-fault"}), 400)
    rule = ok(
        admin_http.post(faults, json={"kind": "throttle", "path": "/fhir/metadata", "count": 2}),
        201,
    )
    assert [requests.get(url, timeout=30).status_code for _ in range(3)] == [429, 429, 200]
    listed = ok(admin_http.get(f"{faults}/{rule['id']}"))
    assert listed["hits"] == 2 and listed["remaining"] == 0
    ok(admin_http.post(faults, json={"kind": "unavailable", "path": "/fhir/metadata"}), 201)
    assert requests.get(url, timeout=30).status_code == 503
    assert ok(admin_http.delete(faults)) == []
    assert requests.get(url, timeout=30).status_code == 200
    settings = ok(
        admin_http.patch(f"{reference.root_url}/admin/settings", json={"paging": "offset"})
    )
    assert settings["paging"] == "offset"
    outcome(admin_http.patch(f"{reference.root_url}/admin/settings", json={"paging": "x"}), 400)


def test_admin_endpoint_needs_an_admin_token(reference: ReferenceServer) -> None:
    outcome(requests.get(f"{reference.root_url}/admin/clients", timeout=30), 401)
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {reference.token(*ADMIN_CLIENT)}"
    assert ok(admin.get(f"{reference.root_url}/admin/stats"))["resources"]["Patient"] == 40


def test_listening_socket_lets_asyncio_turn_nagle_off() -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when the listener's proto is TCP;
    without it every answer waits ~40 ms for the client's delayed ACK."""
    from sync.reference._server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()

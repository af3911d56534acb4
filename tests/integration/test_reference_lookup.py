"""What an online look-up needs from the reference central record (issue 14, design note
sections 6 and 7), over real HTTP on 127.0.0.1: Patient search by name and birth date with the
R4 string and date semantics, `_elements`, batch Bundles of reads, the purpose-of-use report,
and conditional create of a Patient by NHS number.

Search answers are checked against an oracle: every seeded Patient filtered in Python by the
rules of R4 search.html, written out here independently of the server's code.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from datetime import timedelta
from typing import Any

import pytest
import requests
from fhir.resources.R4B.bundle import Bundle

from sync.reference import ReferenceServer
from tests.support.clock import ManualClock
from tests.support.sync import search_all

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SUBSETTED = "SUBSETTED"


@pytest.fixture
def server_clock() -> ManualClock:
    """The server's time moves only when a test moves it."""
    return ManualClock()


@pytest.fixture
def tablet_http(reference: ReferenceServer) -> requests.Session:
    return reference.session()


@pytest.fixture
def admin_http(reference: ReferenceServer) -> requests.Session:
    return reference.session(admin=True)


@pytest.fixture
def patients(reference: ReferenceServer, admin_http: requests.Session) -> list[dict[str, Any]]:
    return search_all(admin_http, f"{reference.base_url}/Patient")


def _fold(text: str) -> str:
    """Case and accents folded (R4 string search: "normalized by case and accent")."""
    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).casefold()


def _starts(values: list[str], prefix: str) -> bool:
    return any(_fold(v).startswith(_fold(prefix)) for v in values)


def _families(p: dict[str, Any]) -> list[str]:
    return [n["family"] for n in p.get("name", []) if "family" in n]


def _givens(p: dict[str, Any]) -> list[str]:
    return [g for n in p.get("name", []) for g in n.get("given", [])]


def _ids(http: requests.Session, url: str, params: dict[str, str]) -> set[str]:
    return {r["id"] for r in search_all(http, url, params)}


def test_family_given_and_birthdate_search_as_r4_defines_them(
    reference: ReferenceServer, tablet_http: requests.Session, patients: list[dict[str, Any]]
) -> None:
    url = f"{reference.base_url}/Patient"
    someone = patients[3]
    family, given, born = _families(someone)[0], _givens(someone)[0], someone["birthDate"]
    cases: list[tuple[dict[str, str], Any]] = [
        ({"family": family}, lambda p: _starts(_families(p), family)),
        ({"family": family[:2].upper()}, lambda p: _starts(_families(p), family[:2])),
        ({"given": given.lower()}, lambda p: _starts(_givens(p), given)),
        (
            {"family": family, "given": given[:3], "birthdate": born},
            lambda p: (
                _starts(_families(p), family)
                and _starts(_givens(p), given[:3])
                and p.get("birthDate") == born
            ),
        ),
        ({"birthdate": born[:4]}, lambda p: p.get("birthDate", "")[:4] == born[:4]),
        ({"birthdate": f"ge{born}"}, lambda p: p.get("birthDate", "") >= born),
        ({"birthdate": f"gt{born}"}, lambda p: p.get("birthDate", "") > born),
        ({"birthdate": f"lt{born}"}, lambda p: "" < p.get("birthDate", "") < born),
        ({"birthdate": f"le{born[:7]}"}, lambda p: "" < p.get("birthDate", "")[:7] <= born[:7]),
        ({"birthdate": f"ne{born}"}, lambda p: p.get("birthDate") not in (None, born)),
        # OR within one parameter (comma), AND across parameters
        (
            {"family": f"{family},{_families(patients[5])[0]}"},
            lambda p: (
                _starts(_families(p), family) or _starts(_families(p), _families(patients[5])[0])
            ),
        ),
        ({"family": "zzzznobody"}, lambda p: False),
    ]
    sizes: list[int] = []
    for params, expected in cases:
        want = {p["id"] for p in patients if expected(p)}
        assert _ids(tablet_http, url, params) == want, params
        sizes.append(len(want))
    # every case but the last tells people apart (neither nobody nor everybody)
    assert all(0 < n < len(patients) for n in sizes[:-1]) and sizes[-1] == 0, sizes


def test_string_search_folds_accents_and_case_and_sees_updates(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    url = f"{reference.base_url}/Patient"
    made = admin_http.post(
        url,
        json={
            "resourceType": "Patient",
            "name": [{"use": "official", "family": "Brontë", "given": ["Zoë", "Anne"]}],
            "birthDate": "1990-02-03",
        },
        headers={"Content-Type": FHIR_JSON},
    ).json()
    assert _ids(tablet_http, url, {"family": "BRONTE"}) == {made["id"]}
    assert _ids(tablet_http, url, {"given": "zoe", "birthdate": "1990-02"}) == {made["id"]}
    assert _ids(tablet_http, url, {"given": "anne", "family": "bron"}) == {made["id"]}
    made["name"] = [{"use": "official", "family": "Eyre", "given": ["Jane"]}]
    admin_http.put(f"{url}/{made['id']}", json=made, headers={"Content-Type": FHIR_JSON})
    assert _ids(tablet_http, url, {"family": "bronte"}) == set()  # only the current version
    assert _ids(tablet_http, url, {"family": "eyre"}) == {made["id"]}


def test_bad_string_and_date_values_are_refused(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    url = f"{reference.base_url}/Patient"
    for params in (
        {"family": " "},
        {"birthdate": "3/4/88"},
        {"family:exact": "Smith"},
        {"_elements": "name;birthDate"},
        {"birthdate": "sa1990"},
    ):
        resp = tablet_http.get(url, params=params)
        assert resp.status_code == 400, params
        assert resp.json()["resourceType"] == "OperationOutcome"
    # `family` is a Patient parameter only
    assert tablet_http.get(f"{reference.base_url}/Flag", params={"family": "x"}).status_code == 400


def test_elements_cuts_results_to_what_picks_a_person_and_tags_them_subsetted(
    reference: ReferenceServer, tablet_http: requests.Session, patients: list[dict[str, Any]]
) -> None:
    url = f"{reference.base_url}/Patient"
    wanted = "id,name,birthDate,gender,address,active,deceased,link"
    nhs = next(i["value"] for i in patients[0]["identifier"] if i["system"] == NHS)
    by_get = tablet_http.get(url, params={"identifier": f"{NHS}|{nhs}", "_elements": wanted})
    by_post = tablet_http.post(
        f"{url}/_search",
        data={"identifier": f"{NHS}|{nhs}", "_elements": wanted, "_count": "10"},
    )
    for resp in (by_get, by_post):
        bundle = resp.json()
        Bundle.model_validate(bundle)
        [entry] = bundle["entry"]
        hit = entry["resource"]
        assert hit["id"] == patients[0]["id"]
        assert set(hit) <= {"resourceType", "id", "meta", *wanted.split(","), "deceasedBoolean"}
        assert "identifier" not in hit and "telecom" not in hit and "extension" not in hit
        assert hit["name"] == patients[0]["name"] and hit["address"] == patients[0]["address"]
        assert SUBSETTED in {t["code"] for t in hit["meta"]["tag"]}
        assert hit["meta"]["versionId"] == patients[0]["meta"]["versionId"]
    # A continuation page keeps the cut; a plain search still returns whole resources.
    first = tablet_http.get(url, params={"_count": "3", "_elements": "gender"}).json()
    following = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
    page2 = tablet_http.get(following).json()
    assert all(
        set(e["resource"]) == {"resourceType", "id", "meta", "gender"} for e in page2["entry"]
    )
    whole = tablet_http.get(url, params={"_count": "1"}).json()["entry"][0]["resource"]
    assert "identifier" in whole and SUBSETTED not in {
        t.get("code") for t in whole["meta"].get("tag", [])
    }


def test_elements_is_refused_in_a_conditional_create(
    reference: ReferenceServer, admin_http: requests.Session
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b8f3c52-4c1e-4d84-a1f5-25a1a0b0e001",
                "resource": {"resourceType": "Patient"},
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "family=x&_elements=id",
                },
            }
        ],
    }
    resp = admin_http.post(reference.base_url, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert resp.status_code == 400 and "_elements" in resp.text


def test_the_capability_statement_declares_the_look_up_parameters(
    reference: ReferenceServer,
) -> None:
    cs = requests.get(f"{reference.base_url}/metadata", timeout=30).json()
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    params = {p["name"]: p["type"] for p in patient["searchParam"]}
    assert params["family"] == params["given"] == "string"
    assert params["birthdate"] == "date" and params["identifier"] == "token"
    assert "_elements" in params
    assert {"code": "batch"} in cs["rest"][0]["interaction"]


def test_a_store_made_before_string_search_is_indexed_when_opened(
    reference: ReferenceServer, patients: list[dict[str, Any]]
) -> None:
    """A data directory written by the previous schema (2) has no string or date keys; the
    server indexes its live Patients on start, so a look-up finds people loaded before."""
    reference.stop()
    path = reference.config.data_dir / "central-record.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM search_string")
        conn.execute("DELETE FROM search_date")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    reference.start()
    someone = patients[7]
    found = _ids(
        reference.session(),
        f"{reference.base_url}/Patient",
        {"family": _families(someone)[0], "birthdate": someone["birthDate"]},
    )
    assert someone["id"] in found
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    conn.close()


# -- batch ---------------------------------------------------------------------------------

RECORD_TYPES = {
    "Flag": "patient",
    "CarePlan": "patient",
    "CareTeam": "patient",
    "RelatedPerson": "patient",
    "AllergyIntolerance": "patient",
    "MedicationStatement": "patient",
}


def _batch(urls: list[str], method: str = "GET") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": method, "url": u}} for u in urls],
    }


def test_a_batch_of_reads_and_searches_answers_each_entry_on_its_own(
    reference: ReferenceServer, tablet_http: requests.Session, admin_http: requests.Session
) -> None:
    base = reference.base_url
    flags = search_all(admin_http, f"{base}/Flag")
    pid = flags[0]["subject"]["reference"].split("/")[1]
    urls = [f"Patient/{pid}", *(f"{t}?{p}={pid}" for t, p in RECORD_TYPES.items())]
    urls += [f"{base}/Patient/{pid}", "Patient/no-such-person", "Basic?x=1", "Flag?colour=red"]
    resp = tablet_http.post(base, json=_batch(urls), headers={"Content-Type": FHIR_JSON})
    answer = resp.json()
    assert resp.status_code == 200 and answer["type"] == "batch-response"
    Bundle.model_validate(answer)
    entries = answer["entry"]
    assert len(entries) == len(urls)
    patient = tablet_http.get(f"{base}/Patient/{pid}")
    assert entries[0]["resource"] == patient.json() == entries[7]["resource"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["response"]["etag"] == patient.headers["etag"]
    for entry, (rtype, param) in zip(entries[1:7], RECORD_TYPES.items(), strict=True):
        page = entry["resource"]
        assert page["type"] == "searchset" and entry["response"]["status"] == "200 OK"
        direct = _ids(admin_http, f"{base}/{rtype}", {param: pid})
        assert {e["resource"]["id"] for e in page.get("entry", [])} == direct
    assert {e["resource"]["id"] for e in entries[1]["resource"]["entry"]} >= {flags[0]["id"]}
    for entry, status in zip(entries[8:], ("404", "404", "400"), strict=True):
        assert entry["response"]["status"].startswith(status)
        assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
        assert "resource" not in entry


def test_a_batch_takes_only_reads_and_a_bad_token_fails_it_whole(
    reference: ReferenceServer, tablet_http: requests.Session
) -> None:
    base = reference.base_url
    before = reference.counts()
    post = _batch(["Patient"], method="POST")
    post["entry"][0]["resource"] = {"resourceType": "Patient"}
    answer = tablet_http.post(base, json=post, headers={"Content-Type": FHIR_JSON}).json()
    assert answer["entry"][0]["response"]["status"].startswith("405")
    assert reference.counts() == before
    stranger = requests.post(
        base,
        json=_batch(["Patient?_count=1"]),
        headers={"Content-Type": FHIR_JSON, "Authorization": "Bearer nonsense"},
        timeout=30,
    )
    assert stranger.status_code == 401
    assert stranger.json()["resourceType"] == "OperationOutcome"


def test_a_search_in_a_batch_pages_like_any_search(
    reference: ReferenceServer, tablet_http: requests.Session, patients: list[dict[str, Any]]
) -> None:
    base = reference.base_url
    answer = tablet_http.post(
        base, json=_batch(["Patient?_count=15"]), headers={"Content-Type": FHIR_JSON}
    ).json()
    page = answer["entry"][0]["resource"]
    seen = [e["resource"]["id"] for e in page["entry"]]
    next_url = next(lk["url"] for lk in page["link"] if lk["relation"] == "next")
    while next_url:
        more = tablet_http.get(next_url).json()
        seen += [e["resource"]["id"] for e in more.get("entry", [])]
        next_url = next((lk["url"] for lk in more["link"] if lk["relation"] == "next"), None)
    assert sorted(seen) == sorted(p["id"] for p in patients)


# -- purpose of use ------------------------------------------------------------------------

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _audit_event(subtype: str, patient_id: str | None, *, purpose: bool = True) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110110"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
        "recorded": "2026-11-20T22:15:00Z",
        "agent": [{"who": {"identifier": {"value": "pc101"}}, "requestor": True}],
        "source": {"observer": {"identifier": {"value": "tablet-1"}}},
    }
    if purpose:
        event["purposeOfEvent"] = [
            {"coding": [{"system": ACT_REASON, "code": "ETREAT"}], "text": "synthetic reason"},
            {"coding": [{"system": ACT_REASON, "code": "BTG"}]},
        ]
    if patient_id:
        event["entity"] = [{"what": {"reference": f"Patient/{patient_id}"}}]
    return event


def _post_audit(reference: ReferenceServer, http: requests.Session, event: dict[str, Any]) -> str:
    resp = http.post(
        f"{reference.base_url}/AuditEvent", json=event, headers={"Content-Type": FHIR_JSON}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_record_reads_without_a_purpose_of_use_are_reported(
    reference: ReferenceServer,
    tablet_http: requests.Session,
    admin_http: requests.Session,
    patients: list[dict[str, Any]],
) -> None:
    base = reference.base_url
    pid = patients[0]["id"]
    # Cohort sync and the Trust's own systems are not record reads.
    tablet_http.get(f"{base}/Patient", params={"_lastUpdated": "ge2000-01-01", "_count": "5"})
    tablet_http.get(f"{base}/Patient", params={"_id": pid, "_elements": "id"})
    org = patients[0]["managingOrganization"]["reference"]
    assert tablet_http.get(f"{base}/{org}").status_code == 200
    admin_http.get(f"{base}/Patient/{pid}")
    admin_http.get(f"{base}/Flag", params={"patient": pid})
    assert reference.access_report()["reads"] == {"audited": 0, "unaudited": 0}

    assert tablet_http.get(f"{base}/Patient/{pid}").status_code == 200
    tablet_http.get(f"{base}/CarePlan", params={"subject": f"Patient/{pid}"})
    tablet_http.post(f"{base}/Patient/_search", data={"family": "smith"})
    report = reference.access_report()
    assert report["reads"] == {"audited": 0, "unaudited": 3}
    assert [(r["kind"], r["type"], r["patient_id"]) for r in report["unaudited"]] == [
        ("read", "Patient", pid),
        ("read", "CarePlan", pid),
        ("search", "Patient", None),
    ]
    assert {r["client_id"] for r in report["unaudited"]} == {"tablet-1"}
    assert report["purposes"] == [] and report["window_s"] == 900


def test_a_purpose_of_use_covers_that_clients_reads_of_that_person_for_a_while(
    reference: ReferenceServer,
    tablet_http: requests.Session,
    patients: list[dict[str, Any]],
    server_clock: ManualClock,
) -> None:
    base = reference.base_url
    pid, other = patients[0]["id"], patients[1]["id"]
    _post_audit(reference, tablet_http, _audit_event("read", pid, purpose=False))  # no reason
    assert reference.access_report()["purposes"] == []
    event_id = _post_audit(reference, tablet_http, _audit_event("read", pid))
    [purpose] = reference.access_report()["purposes"]
    assert purpose["event"] == f"AuditEvent/{event_id}" and purpose["kind"] == "read"
    assert purpose["codes"] == ["BTG", "ETREAT"] and purpose["patient_id"] == pid

    urls = [f"Patient/{pid}", *(f"{t}?{p}={pid}" for t, p in RECORD_TYPES.items())]
    tablet_http.post(base, json=_batch(urls), headers={"Content-Type": FHIR_JSON})
    assert reference.access_report()["reads"] == {"audited": 7, "unaudited": 0}

    tablet_http.get(f"{base}/Patient/{other}")  # someone else: not covered
    reference.register_client("tablet-2", "second-secret-0123456789")
    second = requests.Session()
    second.headers["Authorization"] = (
        f"Bearer {reference.token('tablet-2', 'second-secret-0123456789')}"
    )
    second.get(f"{base}/Patient/{pid}", timeout=30)  # another device: not covered
    tablet_http.get(f"{base}/Patient", params={"family": "smith"})  # a search: not covered
    report = reference.access_report()
    assert [(r["client_id"], r["kind"], r["patient_id"]) for r in report["unaudited"]] == [
        ("tablet-1", "read", other),
        ("tablet-2", "read", pid),
        ("tablet-1", "search", None),
    ]

    _post_audit(reference, tablet_http, _audit_event("search-type", None))
    tablet_http.get(f"{base}/Patient", params={"family": "smith", "birthdate": "1980"})
    assert reference.access_report()["reads"] == {"audited": 8, "unaudited": 3}
    server_clock.advance(timedelta(seconds=901))  # past the window: a new reason is needed
    later = reference.session()  # (the old token has expired too)
    assert later.get(f"{base}/Patient/{pid}").status_code == 200
    report = reference.access_report()
    assert report["reads"] == {"audited": 8, "unaudited": 4}
    reference.configure(purpose_window_s=3600)
    later.get(f"{base}/Patient/{pid}")
    assert reference.access_report()["reads"] == {"audited": 9, "unaudited": 4}


# -- a Patient created on its NHS number -----------------------------------------------------


def _home_bundle(number: str, carried: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5f1f1d7e-0a0e-4b52-9a53-6d2f3c1b7a10",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": NHS, "value": carried or number}],
                    "name": [{"use": "official", "family": "Testperson", "given": ["Pat"]}],
                    "birthDate": "1980-01-01",
                    "gender": "unknown",
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={NHS}|{number}",
                },
            }
        ],
    }


def test_a_tablet_creates_a_patient_only_conditionally_on_the_nhs_number_it_carries(
    reference: ReferenceServer,
    tablet_http: requests.Session,
    admin_http: requests.Session,
    patients: list[dict[str, Any]],
) -> None:
    base = reference.base_url
    post = {"headers": {"Content-Type": FHIR_JSON}}
    first = tablet_http.post(base, json=_home_bundle("9434765870"), **post)
    assert first.status_code == 200
    [entry] = first.json()["entry"]
    assert entry["response"]["status"] == "201 Created"
    again = tablet_http.post(base, json=_home_bundle("9434765870"), **post).json()
    assert again["entry"][0]["response"]["status"] == "200 OK"
    assert again["entry"][0]["response"]["location"] == entry["response"]["location"]

    known = next(i["value"] for i in patients[2]["identifier"] if i["system"] == NHS)
    existing = tablet_http.post(base, json=_home_bundle(known), **post).json()
    assert existing["entry"][0]["response"]["location"].startswith(f"Patient/{patients[2]['id']}/")
    before = reference.counts()
    # Not on the number it carries, or no condition at all: refused.
    assert (
        tablet_http.post(base, json=_home_bundle("4857773457", "9434765870"), **post).status_code
        == 403
    )
    plain = _home_bundle("4857773457")
    del plain["entry"][0]["request"]["ifNoneExist"]
    assert tablet_http.post(base, json=plain, **post).status_code == 403
    assert reference.counts() == before
    # Two Patients already hold the number: 412, nothing written, never a guess.
    twin = {k: v for k, v in patients[2].items() if k != "id"}
    admin_http.post(f"{base}/Patient", json=twin, **post)
    before = reference.counts()
    refused = tablet_http.post(base, json=_home_bundle(known), **post)
    assert refused.status_code == 412
    assert refused.json()["issue"][0]["code"] == "multiple-matches"
    assert reference.counts() == before


def test_an_audit_event_may_name_a_patient_who_is_gone_or_never_was(
    reference: ReferenceServer,
    tablet_http: requests.Session,
    admin_http: requests.Session,
    patients: list[dict[str, Any]],
) -> None:
    """An audit trail records attempts and reads of records since merged away: unlike a
    field record, an AuditEvent is not refused for naming a Patient the server lacks (the
    tablet's trail would otherwise stick behind it for ever)."""
    gone = patients[5]["id"]
    admin_http.delete(f"{reference.base_url}/Patient/{gone}")
    _post_audit(reference, tablet_http, _audit_event("read", gone))
    _post_audit(reference, tablet_http, _audit_event("read", "never-was"))
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "FLD"},
        "subject": {"reference": f"Patient/{gone}"},
    }
    resp = tablet_http.post(
        f"{reference.base_url}/Encounter", json=encounter, headers={"Content-Type": FHIR_JSON}
    )
    assert resp.status_code == 422  # field records still must name a live Patient

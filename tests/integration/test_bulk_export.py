"""The reference server's `$export` against the Bulk Data Access IG v2, over real HTTP.

These pin the protocol a client sees (kick-off, status, manifest, files, cancel, errors), so
the client's tests in test_sync_bulk.py exercise IG behaviour, not reference quirks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from sync.reference import ReferenceServer
from tests.support.sync import cohort_counts

ASYNC = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def kick_off(http: requests.Session, url: str, **params: str) -> str:
    resp = http.get(url, params=params, headers=ASYNC, timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.headers["Content-Location"]


def wait_for_manifest(http: requests.Session, status_url: str) -> dict[str, Any]:
    """Poll until the job ends (the server says Retry-After: 0; bounded, not timed)."""
    for _ in range(2000):
        resp = http.get(status_url, timeout=30)
        if resp.status_code == 200:
            assert resp.headers["Content-Type"].startswith("application/json")
            return resp.json()
        assert resp.status_code == 202, resp.text
        assert resp.headers["Retry-After"] == "0"
        assert "X-Progress" in resp.headers
        time.sleep(0.01)
    raise AssertionError("the export never finished")


def ndjson(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


@pytest.fixture
def fast(reference: ReferenceServer) -> ReferenceServer:
    reference.configure(export_retry_after_s=0)
    return reference


def test_capability_statement_declares_system_and_group_export(
    reference: ReferenceServer,
) -> None:
    caps = requests.get(f"{reference.base_url}/metadata", timeout=30).json()
    rest = caps["rest"][0]
    assert {
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    }.items() <= (next(op for op in rest["operation"] if op["name"] == "export").items())
    group = next(r for r in rest["resource"] if r["type"] == "Group")
    assert group["operation"][0]["definition"].endswith("/group-export")
    assert caps["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    reference.configure(bulk_export=False)
    caps = requests.get(f"{reference.base_url}/metadata", timeout=30).json()
    assert all(op["name"] != "export" for op in caps["rest"][0]["operation"])
    resp = reference.session().get(f"{reference.base_url}/$export", headers=ASYNC, timeout=30)
    assert resp.status_code == 404


def test_system_export_delivers_every_live_resource_as_ndjson(
    fast: ReferenceServer, cohort_dir: Path
) -> None:
    http = fast.session()
    status_url = kick_off(http, f"{fast.base_url}/$export", _outputFormat="application/fhir+ndjson")
    assert status_url.startswith(fast.base_url)
    manifest = wait_for_manifest(http, status_url)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].startswith(f"{fast.base_url}/$export")
    assert manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    counts: dict[str, int] = {}
    for item in manifest["output"]:
        assert requests.get(item["url"], timeout=30).status_code == 401  # the token is needed
        resp = http.get(item["url"], timeout=30)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/fhir+ndjson"
        resources = ndjson(resp.content)
        assert len(resources) == item["count"]
        assert {r["resourceType"] for r in resources} == {item["type"]}
        assert all(r["meta"]["lastUpdated"] <= manifest["transactionTime"] for r in resources)
        counts[item["type"]] = counts.get(item["type"], 0) + len(resources)
    assert counts == cohort_counts(cohort_dir)


def test_type_filter_ranges_and_writes_after_the_snapshot(fast: ReferenceServer) -> None:
    http = fast.session()
    admin = fast.session(admin=True)
    patient = http.get(f"{fast.base_url}/Patient", params={"_count": "1"}, timeout=30).json()
    pid = patient["entry"][0]["resource"]["id"]
    status_url = kick_off(http, f"{fast.base_url}/$export", _type="Patient,Flag")
    # A write after kick-off is not in the export: it is for the next incremental sync.
    body = http.get(f"{fast.base_url}/Patient/{pid}", timeout=30).json()
    body["gender"] = "unknown" if body.get("gender") != "unknown" else "other"
    assert (
        admin.put(
            f"{fast.base_url}/Patient/{pid}",
            json=body,
            timeout=30,
            headers={"Content-Type": "application/fhir+json"},
        ).status_code
        == 200
    )
    manifest = wait_for_manifest(http, status_url)
    assert {o["type"] for o in manifest["output"]} <= {"Patient", "Flag"}
    item = next(o for o in manifest["output"] if o["type"] == "Patient")
    full = http.get(item["url"], timeout=30)
    exported = {r["id"]: r for r in ndjson(full.content)}
    assert exported[pid]["meta"]["versionId"] == "1"
    assert full.headers["Accept-Ranges"] == "bytes"
    part = http.get(item["url"], headers={"Range": "bytes=100-"}, timeout=30)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-{len(full.content) - 1}/{len(full.content)}"
    assert part.content == full.content[100:]
    fast.configure(export_ranges=False)
    whole = http.get(item["url"], headers={"Range": "bytes=100-"}, timeout=30)
    assert whole.status_code == 200 and whole.content == full.content
    assert "Accept-Ranges" not in whole.headers


def test_group_export_is_the_members_and_their_records(fast: ReferenceServer) -> None:
    http = fast.session()
    admin = fast.session(admin=True)
    patients = http.get(f"{fast.base_url}/Patient", params={"_count": "3"}, timeout=30).json()
    members = [e["resource"]["id"] for e in patients["entry"]][:2]
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members],
    }
    made = admin.post(
        f"{fast.base_url}/Group",
        json=group,
        timeout=30,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    status_url = kick_off(
        http, f"{fast.base_url}/Group/{gid}/$export", _type="Patient,Condition,Organization"
    )
    manifest = wait_for_manifest(http, status_url)
    by_type = {
        o["type"]: ndjson(http.get(o["url"], timeout=30).content) for o in manifest["output"]
    }
    assert sorted(r["id"] for r in by_type["Patient"]) == sorted(members)
    for condition in by_type.get("Condition", []):
        assert condition["subject"]["reference"].split("/")[-1] in members
    all_orgs = http.get(
        f"{fast.base_url}/Organization", params={"_summary": "count"}, timeout=30
    ).json()["total"]
    assert len(by_type.get("Organization", [])) == all_orgs
    resp = http.get(f"{fast.base_url}/Group/nope/$export", headers=ASYNC, timeout=30)
    assert resp.status_code == 404


def test_kick_off_refusals_cancel_and_failed_jobs(fast: ReferenceServer) -> None:
    http = fast.session()
    url = f"{fast.base_url}/$export"
    resp = http.get(url, headers={"Accept": "application/fhir+json"}, timeout=30)
    assert resp.status_code == 400  # Prefer: respond-async is required
    assert resp.json()["resourceType"] == "OperationOutcome"
    for bad in (
        {"_outputFormat": "text/csv"},
        {"_type": "Spaceship"},
        {"_typeFilter": "Patient?active=true"},
    ):
        assert http.get(url, params=bad, headers=ASYNC, timeout=30).status_code == 400
    lenient = {**ASYNC, "Prefer": "respond-async, handling=lenient"}
    assert (
        http.get(url, params={"_typeFilter": "x"}, headers=lenient, timeout=30).status_code == 202
    )
    status_url = kick_off(http, url, _type="Patient")
    assert http.delete(status_url, timeout=30).status_code == 202
    assert http.get(status_url, timeout=30).status_code == 404
    fast.configure(export_fault="fail")
    status_url = kick_off(http, url, _type="Patient")
    for _ in range(2000):
        resp = http.get(status_url, timeout=30)
        if resp.status_code != 202:
            break
        time.sleep(0.01)
    assert resp.status_code == 500
    issue = resp.json()["issue"][0]
    assert issue["severity"] == "fatal"
    fast.configure(export_fault="error-file")
    manifest = wait_for_manifest(http, kick_off(http, url, _type="Patient"))
    errors = ndjson(http.get(manifest["error"][0]["url"], timeout=30).content)
    assert errors[0]["resourceType"] == "OperationOutcome"

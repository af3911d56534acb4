"""A hostile or broken central record is contained (issue 12 finding 6, SECURITY.md 29).

Each attack from the audit is replayed against a tiny loopback server (real HTTP on 127.0.0.1,
port chosen by the OS): an oversized token answer, a gzip bomb from the token endpoint, a body
trickled byte by byte, a CapabilityStatement with `"rest": 5`, an OperationOutcome with
`"issue": 5`; and ANSI escapes in a cached name never reach the terminal.
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import orjson
import pytest

from sync import (
    BadResponse,
    ClientCredentials,
    FhirClient,
    RetryPolicy,
    SyncEngine,
    SyncOptions,
    Timeout,
    Timeouts,
    new_http_session,
)
from tests.support.loopback import Handler, Loopback

CAP = 1 << 20  # the client's response limit in these tests: 1 MiB


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    server = Loopback()
    try:
        yield server
    finally:
        server.stop()


def _client(lb: Loopback, *, auth: bool = False, total_s: float = 300.0) -> FhirClient:
    return FhirClient(
        f"{lb.base}/fhir",
        new_http_session(),
        auth=ClientCredentials(f"{lb.base}/token", "tablet-1", "secret") if auth else None,
        timeouts=Timeouts(connect_s=5, read_s=5, total_s=total_s),
        retry=RetryPolicy(attempts=1),
        max_body_bytes=CAP,
        sleep=lambda _s: None,
    )


def _stream(lb: Loopback, name: str, body: Iterator[bytes], headers: dict[str, str]) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        sent = 0
        try:
            for chunk in body:
                h.wfile.write(chunk)
                h.wfile.flush()
                sent += len(chunk)
        except OSError:
            pass
        finally:
            with lb.finished:
                lb.sent[name] = sent
                lb.finished.notify_all()

    return handle


def test_an_oversized_token_answer_is_cut_off_at_the_limit(loopback: Loopback) -> None:
    size = 64 * CAP
    junk = (b'{"access_token": "' + b"A" * (1 << 20) for _ in range(64))
    loopback.routes["/token"] = _stream(
        loopback, "token", junk, {"Content-Type": "application/json"}
    )
    with pytest.raises(BadResponse, match="larger than allowed"):
        _client(loopback, auth=True).get(f"{loopback.base}/fhir/Patient", label="read")
    assert loopback.sent_by("token") < size // 2  # the rest was never read


def test_a_gzip_bomb_from_the_token_endpoint_stops_at_the_limit(loopback: Loopback) -> None:
    bomb = gzip.compress(b"0" * (200 * CAP), compresslevel=9)  # ~200 KB inflating to 200 MB
    loopback.routes["/token"] = _stream(
        loopback,
        "token",
        iter([bomb]),
        {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(bomb)),
        },
    )
    with pytest.raises(BadResponse, match="larger than allowed"):
        _client(loopback, auth=True).get(f"{loopback.base}/fhir/Patient", label="read")


def test_a_trickled_answer_meets_the_overall_deadline(loopback: Loopback) -> None:
    body = orjson.dumps({"resourceType": "Bundle", "type": "searchset"}) + b" " * 400
    sent = 0

    def trickle() -> Iterator[bytes]:
        nonlocal sent
        for byte in body:
            time.sleep(0.02)  # the hostile server's pace (about 9 s in all), not the test's
            sent += 1
            yield bytes([byte])

    loopback.routes["/fhir/Patient"] = _stream(
        loopback, "patients", trickle(), {"Content-Type": "application/fhir+json"}
    )
    with pytest.raises(Timeout, match="too long"):
        _client(loopback, total_s=1.0).get(f"{loopback.base}/fhir/Patient", label="read")
    # The client gave up at its deadline, long before the whole answer (no wall-clock bound).
    assert sent < len(body)


def _json_answer(status: int, body: Any) -> Handler:
    raw = orjson.dumps(body)

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/fhir+json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    return handle


def test_a_capability_statement_with_rest_5_is_a_bad_response(loopback: Loopback) -> None:
    loopback.routes["/fhir/metadata"] = _json_answer(
        200, {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "rest": 5}
    )
    client = _client(loopback)
    engine = SyncEngine(client, None, SyncOptions(types=()))  # type: ignore[arg-type]
    with pytest.raises(BadResponse, match="CapabilityStatement"):
        engine.discover()


def test_an_operation_outcome_with_issue_5_is_a_bad_response(loopback: Loopback) -> None:
    loopback.routes["/fhir/Patient"] = _json_answer(
        400, {"resourceType": "OperationOutcome", "issue": 5}
    )
    with pytest.raises(BadResponse, match="OperationOutcome"):
        _client(loopback).get(f"{loopback.base}/fhir/Patient", label="read")


def test_escape_sequences_in_a_name_never_reach_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.security._profile as profile_module
    from app.cli import main
    from tests.conftest import TEST_KDF, TEST_PIN

    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    evil = {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "1"},
        "name": [{"family": "Ashworth\x1b]0;pwned\x07\x1b[2J", "given": ["Mabel\x1b[31m"]}],
        "birthDate": "1970-01-01",
    }
    (cohort / "Patient.ndjson").write_bytes(orjson.dumps(evil) + b"\n")
    prof = str(tmp_path / "prof")
    user = ["--profile", prof, "--user", "pc101", "--pin-stdin"]
    for args in (["enrol", *user], ["import", *user, str(cohort)]):
        monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
        assert main(args) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
    assert main(["search", *user, "Ashworth"]) == 0
    out = capsys.readouterr().out
    assert "Ashworth" in out and "Mabel" in out
    assert "\x1b" not in out and "\x07" not in out


def test_an_oversized_resource_is_refused_whole(session: Any) -> None:
    from app.errors import InvalidInput
    from app.store import HOME_SOURCE

    small = {"resourceType": "Patient", "id": "ok", "meta": {"versionId": "1"}}
    huge = {
        "resourceType": "Patient",
        "id": "big",
        "meta": {"versionId": "1"},
        "name": [{"family": "A" * (2 << 20)}],  # the audit's 10 MB name, smaller
    }
    with pytest.raises(InvalidInput, match="larger than the 1024 KiB limit"):
        session.store.put_resources(HOME_SOURCE, [small, huge])
    assert session.store.get_resource(HOME_SOURCE, "Patient", "ok") is None  # nothing half-stored


def test_index_strings_are_cut_to_a_bounded_length(session: Any) -> None:
    from app.services.search import PatientSearch
    from app.store import HOME_SOURCE

    long_name = "Quixotewell" + "x" * 50_000
    session.store.put_resources(
        HOME_SOURCE,
        [
            {
                "resourceType": "Patient",
                "id": "p1",
                "meta": {"versionId": "1"},
                "name": [{"use": "official", "family": long_name, "given": ["Mabel"] * 50}],
            }
        ],
    )
    hits = PatientSearch(session.store).search("Mabel Quixotewell", limit=5).hits
    assert [h.id for h in hits] == ["p1"]
    assert len(hits[0].display_name or "") <= 100 * 9 + 8


def test_an_opened_record_holding_someone_elses_alert_is_refused_whole(
    loopback: Loopback,
) -> None:
    """An online look-up (issue 14) from a source that answers with another person's Flag
    among this person's: nothing comes back, rather than a record with a stranger's alert."""
    from sync import AuditIdentity, PurposeOfUse, open_online

    meta = {"versionId": "1", "lastUpdated": "2026-11-20T22:15:00.000Z"}

    def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
        }

    flag = {"resourceType": "Flag", "id": "f1", "meta": meta, "status": "active"}
    answers = iter(
        [
            {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": "201 Created"}}],
            },
            {
                "resourceType": "Bundle",
                "type": "batch-response",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient", "id": "p1", "meta": meta},
                        "response": {"status": "200 OK"},
                    },
                    {
                        "resource": searchset(
                            {**flag, "subject": {"reference": "Patient/p1"}},
                            {**flag, "id": "f2", "subject": {"reference": "Patient/p2"}},
                        ),
                        "response": {"status": "200 OK"},
                    },
                    *({"resource": searchset(), "response": {"status": "200 OK"}},) * 5,
                ],
            },
        ]
    )
    loopback.routes["/fhir"] = lambda h: _json_answer(200, next(answers))(h)
    with pytest.raises(BadResponse, match="a Flag came back that is not about this person"):
        open_online(
            _client(loopback),
            "p1",
            purpose=PurposeOfUse("synthetic"),
            audit=AuditIdentity(),
            user_id="pc101",
        )

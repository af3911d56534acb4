"""Helpers shared by the sync tests: what the server holds, what the cache holds, a digest of
the whole cache, changing resources centrally, and recording encounters the way the app does."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import requests

from app.fhir import CACHED_TYPES, FIELD_RECORD_ID_SYSTEM
from app.services.encounters import parse_encounter_json, record_many
from app.store import HOME_SOURCE, Store
from app.store._codec import unpack
from app.store._patient_index import decode_pids
from sync import RetryPolicy
from sync.reference import ReferenceServer

# Types a pushed encounter creates on the server, and the suffix of each client identifier.
PUSHED = (("Encounter", None), ("QuestionnaireResponse", "form"), ("Provenance", "provenance"))


def search_all(
    http: requests.Session, url: str, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every resource of a search, following `next` (faults apply to the test's own reads
    too: callers clear them first)."""
    out: list[dict[str, Any]] = []
    query: dict[str, str] | None = {"_count": "1000", **(params or {})}
    next_url: str | None = url
    while next_url:
        resp = http.get(next_url, params=query, timeout=30)
        resp.raise_for_status()
        bundle = resp.json()
        out += [e["resource"] for e in bundle.get("entry", [])]
        next_url = next(
            (link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None
        )
        query = None
    return out


def server_cohort(
    reference: ReferenceServer, http: requests.Session, types: tuple[str, ...] = CACHED_TYPES
) -> dict[str, dict[str, bytes]]:
    """type -> id -> the resource as the server serves it (compact JSON bytes)."""
    return {
        rtype: {r["id"]: orjson.dumps(r) for r in search_all(http, f"{reference.base_url}/{rtype}")}
        for rtype in types
    }


def cache_cohort(
    store: Store, types: tuple[str, ...] = CACHED_TYPES, *, source: int = HOME_SOURCE
) -> dict[str, dict[str, bytes]]:
    """type -> id -> the JSON bytes the cache keeps for it, from one source."""
    out: dict[str, dict[str, bytes]] = {t: {} for t in types}
    for rtype, rid, body in store.conn.execute(
        "SELECT type, id, json FROM resource WHERE source = ?", (source,)
    ):
        if rtype in out:
            out[rtype][rid] = unpack(bytes(body))
    return out


def cursor_queries(reference: ReferenceServer, rtype: str) -> list[str]:
    """The `_lastUpdated` values the tablet's searches of `rtype` asked for, oldest first."""
    out = []
    for r in reference.requests():
        if r["method"] == "GET" and r["path"].rstrip("/").endswith(f"/{rtype}"):
            for part in r["query"].split("&"):
                if part.startswith("_lastUpdated="):
                    out.append(requests.utils.unquote(part.split("=", 1)[1]))
    return out


def store_digest(store: Store) -> str:
    """SHA-256 over every row of every table (search index and FTS shadow tables included)."""
    digest = hashlib.sha256()
    names = [
        n
        for (n,) in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    for name in names:
        rows = store.conn.execute(f'SELECT * FROM "{name}"').fetchall()
        digest.update(name.encode())
        for row in sorted(repr(r) for r in rows):
            digest.update(row.encode())
    return digest.hexdigest()


def encounter_json(
    patient: dict[str, Any], *, now: datetime | None = None, risk: str | None = "high"
) -> dict[str, Any]:
    """One valid encounter in the `kerbside record` JSON format."""
    now = now or datetime.now(UTC)
    return {
        "patient": patient,
        "start": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "end": (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "location": "Bus station, Moor Street",
        "location_type": "public-place",
        "police_incident_ref": "WMP-2026-11-20-1042",
        "presenting_situation": "Distressed in a public place",
        "section_136": False,
        "outcome": "referred-crisis-team",
        "narrative": "Synthetic test narrative",
        "risk_to_self": risk,
    }


UNIDENTIFIED = {
    "unidentified": {"description": "Tall, red coat", "apparent_age": 30, "sex": "female"}
}


def record_encounters(session: Any, patients: list[dict[str, Any]]) -> list[str]:
    """Record one encounter per patient choice; returns their client ids (committed)."""
    inputs = [parse_encounter_json(encounter_json(p), session) for p in patients]
    return [r.client_id for r in record_many(session, inputs)]


def held_on_server(
    http: requests.Session, base_url: str, client_id: str
) -> dict[str, list[dict[str, Any]]]:
    """What the server holds for one field record, found by its client identifiers."""
    found: dict[str, list[dict[str, Any]]] = {}
    for rtype, suffix in PUSHED:
        value = client_id if suffix is None else f"{client_id}-{suffix}"
        param = "_tag" if rtype == "Provenance" else "identifier"
        found[rtype] = search_all(
            http, f"{base_url}/{rtype}", {param: f"{FIELD_RECORD_ID_SYSTEM}|{value}"}
        )
    found["Observation"] = search_all(
        http,
        f"{base_url}/Observation",
        {"identifier": f"{FIELD_RECORD_ID_SYSTEM}|{client_id}-risk-self"},
    )
    return found


# Retries without waiting out a real backoff.
FAST_RETRY = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05)


def change(reference: ReferenceServer, admin: requests.Session, rtype: str, rid: str) -> None:
    """Update one resource centrally (a new version with a later lastUpdated)."""
    url = f"{reference.base_url}/{rtype}/{rid}"
    body = admin.get(url, timeout=30).json()
    body["language"] = "en-GB" if body.get("language") != "en-GB" else "cy-GB"
    resp = admin.put(
        url, data=orjson.dumps(body), timeout=30, headers={"Content-Type": "application/fhir+json"}
    )
    assert resp.status_code == 200, resp.text


def assert_cache_equals_server(tablet: Any, reference: ReferenceServer) -> None:
    admin = reference.session(admin=True)
    assert cache_cohort(tablet.store) == server_cohort(reference, admin)


def cohort_counts(cohort_dir: Path) -> dict[str, int]:
    return {
        p.stem: sum(1 for line in p.read_bytes().splitlines() if line.strip())
        for p in cohort_dir.glob("*.ndjson")
    }


def index_contents(store: Store) -> dict[str, Any]:
    """The derived tables with pids replaced by (source, patient id) (pid numbering is
    free)."""
    conn = store.conn
    ids = {
        pid: (src, rid)
        for pid, src, rid in conn.execute("SELECT pid, source, id FROM patient_index")
    }
    postings = {}
    for term, field, blob in conn.execute("SELECT term, field, pids FROM search_posting"):
        postings[(term, field)] = sorted(ids[p] for p in decode_pids(blob))
    rows = {
        r[:2]: r[2:]
        for r in conn.execute(
            "SELECT source, id, person_key, display_name, known_as, birth_date, gender,"
            " nhs_number, postcode, postcode_key, address, alerts, names, terms FROM patient_index"
        )
    }
    return {
        "rows": rows,
        "postings": postings,
        "vocab": sorted(conn.execute("SELECT * FROM search_vocab")),
        "flags": sorted(conn.execute("SELECT * FROM flag_alert")),
        "by_patient": conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'resource_by_patient'"
        ).fetchone()[0],
    }


# -- several central records (issue 14): one reference server per `generate --trusts` folder ---
@contextmanager
def trust_servers(
    data: Path, region: Path, count: int, **overrides: Any
) -> Iterator[list[ReferenceServer]]:
    """`count` running reference servers, server k seeded with `region/trust-k` (data under
    `data/central-k`), all knowing the test tablet; stopped on exit."""
    from tests.conftest import reference_config

    started: list[ReferenceServer] = []
    try:
        for k in range(1, count + 1):
            config = reference_config(data / f"central-{k}", region / f"trust-{k}", **overrides)
            started.append(ReferenceServer(config).start())
        yield started
    finally:
        for server in started:
            server.stop()


def enrol_sources(session: Any, home: ReferenceServer, *neighbours: ReferenceServer) -> list[int]:
    """Point `session`'s profile at `home` and add each neighbour as read-only source
    `trust-2`, `trust-3`... (display name "Trust k", the tablet's client in the keyring), as
    `source add` does; returns their sids."""
    from app.security import READ_ONLY, ServerSettings, SourceSettings, store_client_secret
    from tests.conftest import TABLET_CLIENT

    profile = session.profile
    profile.set_server(ServerSettings(home.base_url, TABLET_CLIENT[0], None, None))
    store_client_secret(profile.profile_id, TABLET_CLIENT[1])
    sids = []
    for k, server in enumerate(neighbours, start=2):
        name = f"trust-{k}"
        sids.append(session.store.ensure_source(name, READ_ONLY))
        source = SourceSettings(
            name,
            server.base_url,
            TABLET_CLIENT[0],
            server.token_url,
            display_name=f"Trust {k}",
            role=READ_ONLY,
        )
        profile.add_source(source, TABLET_CLIENT[1])
    return sids

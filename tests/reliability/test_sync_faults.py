"""Exactly once under faults (SECURITY.md 20-23): randomised, seeded trials of record -> sync
with one fault at a random point of the push or the pull, retried until a sync runs clean.

After every trial: each encounter is on the server exactly once (found by its client
identifiers), the outbox holds nothing pending, and the cache equals the server's cohort.
Reproduce a failure with its printed trial number: the trial's RNG is `Random(SEED + n)`.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.fhir import CACHED_TYPES
from app.security import ServerSettings, store_client_secret
from app.services.syncing import StoreSyncPort, build_client, sync_options
from sync import RetryPolicy, SyncEngine, SyncError
from sync.reference import ReferenceServer
from tests.integration.conftest import TABLET_CLIENT, reference_config
from tests.integration.test_sync_support import (
    UNIDENTIFIED,
    cache_cohort,
    held_on_server,
    record_encounters,
    search_all,
    server_cohort,
)

SEED = 20261120
TRIALS = int(os.environ.get("KERBSIDE_SYNC_TRIALS", "200"))
# Short backoffs so a trial costs milliseconds, and few attempts so faults do end runs.
RETRY = RetryPolicy(
    attempts=2, base_s=0.001, cap_s=0.005, max_retry_after_s=5.0, bad_body_attempts=2
)
FAULTS = ("drop", "apply-then-drop", "unavailable", "truncate", "reset", "token-expiry")


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-patient cohort with the shared directory cut to 12 Organizations/Practitioners,
    so a sync costs a few requests of a few KB."""
    from app.synthetic import generate_cohort

    full = tmp_path_factory.mktemp("cohort-full")
    generate_cohort(6, SEED, full)
    small = tmp_path_factory.mktemp("cohort-small")
    for path in full.glob("*.ndjson"):
        lines = path.read_bytes().splitlines(keepends=True)
        if path.stem in ("Organization", "Practitioner"):
            lines = lines[:12]
        (small / path.name).write_bytes(b"".join(lines))
    return small


@pytest.fixture
def central(tmp_path: Path, small_cohort: Path) -> Iterator[ReferenceServer]:
    server = ReferenceServer(reference_config(tmp_path / "central", small_cohort)).start()
    try:
        yield server
    finally:
        server.stop()


def _fault(rng: random.Random, server: ReferenceServer, pending: int) -> tuple[str, dict[str, Any]]:
    """Inject one fault at a random point of the push or the pull; returns its description."""
    kind = rng.choice(FAULTS)
    if kind == "token-expiry":
        return kind, {"at_progress": rng.randint(0, 25)}
    push = pending > 0 and rng.random() < 0.5
    params: dict[str, Any] = {
        "path": "/fhir",
        "count": rng.choice((1, 1, 2)),
        "method": "POST" if push else "GET",
        "skip": rng.randint(0, max(0, pending - 1)) if push else rng.randint(0, 24),
    }
    if kind == "drop":
        params["after_bytes"] = rng.randint(0, 1500)
    elif kind == "truncate":
        params["fraction"] = rng.uniform(0.05, 0.95)
    elif kind == "unavailable":
        params["retry_after_s"] = 0
    server.inject(kind, **params)
    return kind, params


def _change_central(rng: random.Random, server: ReferenceServer, admin: requests.Session) -> None:
    """Sometimes the Trust's systems change the central record between syncs."""
    if rng.random() < 0.5:
        return
    rtype = rng.choice(("Patient", "Flag", "Condition", "CarePlan"))
    found = search_all(admin, f"{server.base_url}/{rtype}")
    if not found:
        return
    body = rng.choice(found)
    url = f"{server.base_url}/{rtype}/{body['id']}"
    if rtype != "Patient" and rng.random() < 0.3:
        admin.delete(url, timeout=30).raise_for_status()
        return
    body["language"] = rng.choice(("en-GB", "cy-GB", "pl"))
    admin.put(
        url, json=body, timeout=30, headers={"Content-Type": "application/fhir+json"}
    ).raise_for_status()


def test_every_encounter_reaches_the_server_exactly_once_under_random_faults(
    session: Any, central: ReferenceServer
) -> None:
    started = time.monotonic()
    central.configure(token_lifetime_s=3600)  # the test's admin session outlives the run
    session.profile.set_server(
        ServerSettings(
            base_url=central.base_url, client_id=TABLET_CLIENT[0], token_url=central.token_url
        )
    )
    store_client_secret(session.profile.profile_id, TABLET_CLIENT[1])
    client = build_client(session.profile, retry=RETRY)
    port = StoreSyncPort(session.store)
    options = sync_options(session.profile)
    admin = central.session(admin=True)
    SyncEngine(client, port, options).run()
    patients = [r["id"] for r in search_all(admin, f"{central.base_url}/Patient")]
    recorded: list[str] = []
    faults_fired = failed_runs = 0
    for trial in range(TRIALS):
        rng = random.Random(SEED + trial)
        _change_central(rng, central, admin)
        choices = [
            UNIDENTIFIED if rng.random() < 0.3 else {"id": rng.choice(patients)}
            for _ in range(rng.randint(0, 2))
        ]
        new = record_encounters(session, choices) if choices else []
        recorded += new
        kind, params = _fault(rng, central, len(new))
        calls = [0]

        def progress(
            phase: str,
            done: int,
            total: int | None,
            at: int | None = params.get("at_progress"),
            calls: list[int] = calls,
        ) -> None:
            calls[0] += 1
            if calls[0] == at:
                central.expire_tokens(TABLET_CLIENT[0])

        clean = False
        for _attempt in range(8):
            try:
                SyncEngine(client, port, options, progress=progress).run()
                clean = True
                break
            except SyncError:
                failed_runs += 1
        rules = central.faults.rules()
        faults_fired += sum(r["hits"] for r in rules) + (
            calls[0] >= params.get("at_progress", 1 << 30)
        )
        central.clear_faults()
        assert clean, f"trial {trial} ({kind} {params}) never ran clean"
        assert session.store.outbox_rows(states=("pending", "rejected")) == [], f"trial {trial}"
        for client_id in new:
            held = held_on_server(admin, central.base_url, client_id)
            counts = {t: len(v) for t, v in held.items()}
            assert counts == {
                "Encounter": 1,
                "QuestionnaireResponse": 1,
                "Provenance": 1,
                "Observation": 1,
            }, f"trial {trial} ({kind} {params}): {counts}"
        assert cache_cohort(session.store) == server_cohort(central, admin), (
            f"trial {trial} ({kind} {params}): cache and server differ"
        )
    # The whole run: every encounter once, and nothing else the tablet made.
    encounters = search_all(
        admin,
        f"{central.base_url}/Encounter",
        {"identifier": "https://kerbside.example/Id/field-record|"},
    )
    field_ids = sorted(
        i["value"]
        for e in encounters
        for i in e["identifier"]
        if i["system"].endswith("/Id/field-record")
    )
    assert field_ids == sorted(recorded)
    assert faults_fired >= TRIALS * 0.6 and failed_runs > TRIALS // 10
    assert set(CACHED_TYPES) <= set(cache_cohort(session.store))
    print(
        f"{TRIALS} trials, {len(recorded)} encounters, {faults_fired} faults fired, "
        f"{failed_runs} runs ended by a fault, {time.monotonic() - started:.1f} s"
    )

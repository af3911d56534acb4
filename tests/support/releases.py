"""Caches and profiles as earlier releases wrote them (tests/fixtures/README.md): installing a
copy for a test, and reading a cache's data with plain SQL to compare before and after an
upgrade."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import app.security._keyring as kr
from app.security import Profile
from app.store._codec import unpack
from app.store._connection import connect
from app.store._patient_index import decode_pids

if TYPE_CHECKING:
    from tests.conftest import MemoryKeyring

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = FIXTURES / "release-708b559"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
FIXTURE_2 = FIXTURES / "release-8e74f4c"  # profile format 2, cache schema 2, synced once
EXPECTED_2: dict[str, Any] = json.loads((FIXTURE_2 / "expected.json").read_text())


def install_release(
    fixture: Path,
    tmp_path: Path,
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A copy of the fixture profile, its keyring entries in the in-memory keyring, and that
    keyring taken for the Secret Service the release recorded (the real one:
    test_real_keychain.py)."""
    for service, account, value in json.loads((fixture / "keyring.json").read_text()):
        memory_keyring.secrets[(service, account)] = value
    name = kr.backend_name(memory_keyring)  # type: ignore[arg-type]
    monkeypatch.setattr(kr, "STORE_KINDS", {**kr.STORE_KINDS, name: "secret-service"})
    monkeypatch.setattr(kr, "TRUSTED_BACKENDS", frozenset(kr.STORE_KINDS))
    monkeypatch.delenv("KERBSIDE_ALLOW_INSECURE_KEYRING")
    profile = tmp_path / "profile"
    shutil.copytree(fixture / "profile", profile)
    return profile


def release_key(profile_dir: Path) -> tuple[Profile, bytes]:
    """The release-8e74f4c profile and its data key, without opening (so migrating) the
    cache as `derive_key` would."""
    profile = Profile.load(profile_dir)
    return profile, profile.unlock(EXPECTED_2["user"], EXPECTED_2["pin"])


def raw_cache_contents(profile_dir: Path) -> dict[str, Any]:
    """What release 8e74f4c's cache holds, read with plain SQL before any migration runs."""
    profile, key = release_key(profile_dir)
    conn = connect(profile.cache_path, key)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        return cache_contents(conn, source_column=False)
    finally:
        conn.close()


def cache_contents(conn: Any, *, source_column: bool) -> dict[str, Any]:
    """The data (resources, search index with pids as ids, cursors, sync state, outbox and
    audit), keyed as the old schema keys it."""
    where = " WHERE source = 1" if source_column else ""
    ids = dict(conn.execute(f"SELECT pid, id FROM patient_index{where}"))
    columns = (
        "id, display_name, known_as, birth_date, gender, nhs_number, postcode, postcode_key,"
        " address, alerts, names, terms"
    )
    if source_column:
        state = conn.execute("SELECT key, value FROM sync_state WHERE source = 1").fetchall()
        cursors = conn.execute("SELECT type, value FROM sync_cursor WHERE source = 1").fetchall()
    else:
        state = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'sync.%'").fetchall()
        cursors = conn.execute("SELECT type, value FROM sync_cursor").fetchall()
    return {
        "resources": {
            (t, i): unpack(bytes(j))
            for t, i, j in conn.execute(f"SELECT type, id, json FROM resource{where}")
        },
        "index": {r[0]: r[1:] for r in conn.execute(f"SELECT {columns} FROM patient_index{where}")},
        "postings": {
            (term, field): sorted(ids[p] for p in decode_pids(blob))
            for term, field, blob in conn.execute("SELECT term, field, pids FROM search_posting")
        },
        "vocab": sorted(conn.execute("SELECT * FROM search_vocab")),
        "flags": sorted(conn.execute(f"SELECT flag_id, patient_id, alert FROM flag_alert{where}")),
        "cursors": sorted(cursors),
        "state": sorted(state),
        "outbox": conn.execute("SELECT client_id, patient_id, state FROM outbox").fetchall(),
        "audit": conn.execute("SELECT seq, patient_id, hash FROM audit").fetchall(),
    }


def record_view(record: Any) -> tuple[Any, ...]:
    """What a record view shows of the person's records (not when or why it was opened)."""
    return (
        record.person,
        record.alerts,
        record.crisis_plan,
        record.contacts,
        record.medications,
        record.allergies,
        record.conditions,
        record.legal_status,
    )

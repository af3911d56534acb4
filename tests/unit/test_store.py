"""The encrypted cache on real SQLCipher files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import sqlcipher3

from app.errors import SchemaTooNew, StoreUnavailable, UnlockFailed
from app.store import HOME_SOURCE, SCHEMA_VERSION, Store, row_of

CANARY = "Zebulonqwerty"


def _patient(
    pid: str = "p1",
    version: str = "1",
    family: str = CANARY,
    updated: str = "2026-11-01T10:00:00.000Z",
) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": version, "lastUpdated": updated},
        "name": [{"use": "official", "family": family, "given": ["Ada"]}],
        "birthDate": "1980-02-03",
    }


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


def test_file_starts_without_the_plain_sqlite_header(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        store.put_resources(HOME_SOURCE, [_patient()])
    assert (tmp_path / "c.db").read_bytes()[:16] != b"SQLite format 3\x00"


def test_two_new_caches_have_different_salts(tmp_path: Path, key: bytes) -> None:
    Store.create(tmp_path / "a.db", key).close()
    Store.create(tmp_path / "b.db", key).close()
    assert (tmp_path / "a.db").read_bytes()[:16] != (tmp_path / "b.db").read_bytes()[:16]


def test_canary_name_never_appears_in_db_wal_or_shm(tmp_path: Path, key: bytes) -> None:
    store = Store.create(tmp_path / "c.db", key)
    store.put_resources(HOME_SOURCE, [_patient(f"p{i}", family=f"{CANARY}{i}") for i in range(50)])
    # Look while the WAL still holds the writes, then again after a checkpoint and close.
    files = [p for p in tmp_path.iterdir() if p.name.startswith("c.db")]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path.name
    store.close()
    for path in tmp_path.iterdir():
        assert CANARY.encode() not in path.read_bytes(), path.name


def test_wrong_key_fails_clearly_and_changes_nothing(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        store.put_resources(HOME_SOURCE, [_patient()])
    before = (tmp_path / "c.db").read_bytes()
    with pytest.raises(UnlockFailed):
        Store.open(tmp_path / "c.db", os.urandom(32))
    assert (tmp_path / "c.db").read_bytes() == before
    with Store.open(tmp_path / "c.db", key) as store:
        assert store.get_resource(HOME_SOURCE, "Patient", "p1")["name"][0]["family"] == CANARY


def test_plain_sqlite_and_keyless_sqlcipher_cannot_read_it(tmp_path: Path, key: bytes) -> None:
    Store.create(tmp_path / "c.db", key).close()
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(tmp_path / "c.db").execute("SELECT * FROM sqlite_master").fetchall()
    conn = sqlcipher3.connect(str(tmp_path / "c.db"))
    with pytest.raises(sqlcipher3.dbapi2.DatabaseError):
        conn.execute("SELECT * FROM sqlite_master").fetchall()


def test_temp_store_is_memory_and_wal_is_on(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        assert store.conn.execute("PRAGMA temp_store").fetchone()[0] == 2
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA cipher_plaintext_header_size").fetchone()[0] == "0"
        assert store.check_integrity()


def test_cache_file_is_owner_only(tmp_path: Path, key: bytes) -> None:
    Store.create(tmp_path / "c.db", key).close()
    assert (tmp_path / "c.db").stat().st_mode & 0o077 == 0


def test_older_version_never_replaces_a_newer_one(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        store.put_resources(
            HOME_SOURCE, [_patient(version="2", family="Newer", updated="2026-11-02T10:00:00Z")]
        )
        assert (
            store.put_resources(
                HOME_SOURCE,
                [_patient(version="1", family="Older", updated="2026-11-01T10:00:00.5Z")],
            )
            == 0
        )
        assert (
            store.put_resources(
                HOME_SOURCE, [_patient(version="2", family="Newer", updated="2026-11-02T10:00:00Z")]
            )
            == 0
        )
        assert store.get_resource(HOME_SOURCE, "Patient", "p1")["name"][0]["family"] == "Newer"


def test_apply_page_moves_the_cursor_with_the_page_or_not_at_all(
    tmp_path: Path, key: bytes
) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        store.apply_page(HOME_SOURCE, "Patient", [_patient("p1")], "2026-11-01T10:00:00.000Z")
        bad = _patient("p2")
        del bad["id"]
        with pytest.raises(KeyError):
            store.apply_page(
                HOME_SOURCE, "Patient", [_patient("p3"), bad], "2026-11-09T00:00:00.000Z"
            )
        assert store.cursor(HOME_SOURCE, "Patient") == "2026-11-01T10:00:00.000Z"
        assert store.get_resource(HOME_SOURCE, "Patient", "p3") is None


def test_a_cache_from_a_newer_kerbside_is_refused(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        store.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        Store.open(tmp_path / "c.db", key)


def test_missing_cache_is_a_known_error(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(StoreUnavailable):
        Store.open(tmp_path / "none.db", key)


def test_audit_chain_detects_an_edited_entry(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        for n in range(3):
            store.audit(
                user_id="pc101",
                action="open-record",
                patient_id=f"p{n}",
                source=HOME_SOURCE,
                reason="Street triage",
                event_id=f"e{n}",
            )
        assert store.verify_audit_chain() is None
        store.conn.execute("UPDATE audit SET patient_id = 'other' WHERE seq = 2")
        assert store.verify_audit_chain() == 2


def test_disk_full_is_reported_and_nothing_is_acknowledged(tmp_path: Path, key: bytes) -> None:
    with Store.create(tmp_path / "c.db", key) as store:
        store.put_resources(HOME_SOURCE, [_patient("p0")])
        # A hard page limit makes SQLite report SQLITE_FULL exactly as a full disk would.
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        big = [_patient(f"p{i}", family="x" * 2000) for i in range(1, 200)]
        with pytest.raises(StoreUnavailable, match="disk is full"):
            store.put_resources(HOME_SOURCE, big)
        assert store.count_by_type() == {"Patient": 1}
    with Store.open(tmp_path / "c.db", key) as store:
        assert store.check_integrity()
        assert store.count_by_type() == {"Patient": 1}


def test_counts_per_type_follow_every_write_without_a_scan(tmp_path: Path, key: bytes) -> None:
    def scanned(store: Store) -> dict[str, int]:
        return dict(store.conn.execute("SELECT type, count(*) FROM resource GROUP BY type"))

    with Store.create(tmp_path / "c.db", key) as store:
        store.put_resources(HOME_SOURCE, [_patient(f"p{i}") for i in range(5)])
        store.put_resources(
            HOME_SOURCE, [_patient("p1", version="2", updated="2026-11-02T10:00:00.000Z")]
        )
        store.put_resources(HOME_SOURCE, [_patient("p1")])  # older: skipped
        store.delete_resources(HOME_SOURCE, "Patient", ["p2", "p3", "gone"])
        assert store.count_by_type() == scanned(store) == {"Patient": 3}
        assert store.count_by_type("Patient", "Flag") == {"Patient": 3}
        store.delete_resources(HOME_SOURCE, "Patient", ["p0", "p1", "p4"])
        assert store.count_by_type() == {} == scanned(store)
        # A bulk load counts the rows while it runs (its triggers are off) and once at the end.
        store.begin_bulk_load()
        store.put_rows(HOME_SOURCE, [row_of(_patient(f"b{i}")) for i in range(4)], into_empty=True)
        assert store.count_by_type() == {"Patient": 4}
        store.finish_bulk_load()
        store.put_resources(HOME_SOURCE, [_patient("b9")])
        assert store.count_by_type() == scanned(store) == {"Patient": 5}
        # Per source too: the same ids from another central record are counted apart.
        west = store.ensure_source("west", "read-only")
        store.put_resources(west, [_patient("b1"), _patient("b2")])
        assert store.count_by_type() == scanned(store) == {"Patient": 7}
        assert store.count_by_type(source=west) == {"Patient": 2}
        assert store.count_by_type("Patient", source=HOME_SOURCE) == {"Patient": 5}
        store.erase_source(west)
        assert store.count_by_type() == scanned(store) == {"Patient": 5}

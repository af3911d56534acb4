"""The cache keyed by source (issue 14, docs/design/multi-trust.md section 3), on real SQLCipher:
the same id from two central records is two resources, every read names its source, the
person key joins only verified NHS numbers, erasing a source takes exactly what it brought, and
look-ups give way to the cohort."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlcipher3

from app.errors import InvalidInput, StoreUnavailable
from app.services.importer import import_ndjson
from app.services.records import ACCESS_REASONS, open_record
from app.services.search import PatientSearch
from app.services.session import enrol
from app.services.syncing import StoreSyncPort
from app.store import (
    HOME_SOURCE,
    Store,
    _audit,
    _outbox,
    _patient_index,
    _resources,
    _sources,
    _sync_state,
)
from app.store._connection import connect
from app.store._migrations import MIGRATIONS
from app.synthetic import generate_trusts
from tests.conftest import TEST_KDF, TEST_LOCKOUT, TEST_PIN
from tests.support.people import flag as _flag
from tests.support.people import patient as _patient
from tests.support.sync import index_contents

PEOPLE = 400  # the region's people: ~3 ids of trust-2 collide with trust-1's at seed 21
SEED = 21
CANARY = "Quennellwyvern"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.create(tmp_path / "c.db", os.urandom(32)) as s:
        yield s


@pytest.fixture(scope="module")
def region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("region")
    generate_trusts(2, 0.3, PEOPLE, SEED, out)
    return out


def _ndjson(folder: Path, rtype: str) -> list[dict[str, Any]]:
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _collided(region: Path) -> list[str]:
    """Patient ids both Trusts use, each for a different person."""
    home = {p["id"]: p for p in _ndjson(region / "trust-1", "Patient")}
    return sorted(p["id"] for p in _ndjson(region / "trust-2", "Patient") if p["id"] in home)


# -- the layout ---------------------------------------------------------------------------------
def _layout(conn: Any, tables: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in tables:
        columns = [tuple(r[1:6]) for r in conn.execute(f"PRAGMA table_xinfo({table})")]
        indexes = {}
        for _seq, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
            cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
            indexes[name if origin == "c" else origin] = (unique, partial, cols)
        out[table] = (columns, indexes)
    return out


def test_a_new_cache_has_the_layout_the_modules_describe(store: Store) -> None:
    """Migrations keep the DDL they were written with; the modules' SCHEMA texts say what a
    cache looks like now. They must agree (a copy of the index, e.g. the search benchmark's,
    is made from the modules')."""
    plain = sqlcipher3.connect(":memory:")
    for script in (
        _sources.SCHEMA_V3,
        _resources.SCHEMA,
        _resources.COUNT_SCHEMA,
        _patient_index.SCHEMA,
        _audit.SCHEMA,
        _outbox.SCHEMA,
        _sync_state.SCHEMA,
    ):
        for statement in script.split(";"):
            if statement.strip():
                plain.execute(statement)
    tables = (
        "source",
        "resource",
        "resource_lookup",
        "resource_count",
        "patient_index",
        "search_posting",
        "search_vocab",
        "flag_alert",
        "search_state",
        "audit",
        "outbox",
        "sync_state",
    )
    assert _layout(store.conn, tables) == _layout(plain, tables)
    # The counting triggers a new cache gets are the ones a bulk load's end starts again.
    _resources.recount(plain)
    triggers = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    assert [(n, " ".join(q.split())) for n, q in store.conn.execute(triggers)] == [
        (n, " ".join(q.replace("IF NOT EXISTS ", "").split())) for n, q in plain.execute(triggers)
    ]


# -- keyed by source ------------------------------------------------------------------------------
def test_the_same_id_from_two_sources_is_two_resources(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("p1", "Home"), _flag("f1", "p1", "Home flag")])
    store.put_resources(west, [_patient("p1", "West"), _flag("f1", "p1", "West flag")])
    assert store.get_resource(HOME_SOURCE, "Patient", "p1")["name"][0]["family"] == "Home"
    assert store.get_resource(west, "Patient", "p1")["name"][0]["family"] == "West"
    assert store.count_by_type("Patient") == {"Patient": 2}
    assert store.count_by_type(source=west) == {"Patient": 1, "Flag": 1}
    flags = store.resources_for_patient(west, "p1", ["Flag"])
    assert [f["code"]["text"] for f in flags] == ["West flag"]
    hits = PatientSearch(store).search("Ada", limit=10).hits
    assert sorted(h.display_name or "" for h in hits) == ["Ada Home", "Ada West"]
    rows = store.patient_index().patients(range(1, 10)).values()
    assert {(r.source, r.id, r.alerts[0][1]) for r in rows} == {
        (HOME_SOURCE, "p1", "Home flag"),
        (west, "p1", "West flag"),
    }
    store.delete_resources(west, "Patient", ["p1"])
    assert store.get_resource(HOME_SOURCE, "Patient", "p1") is not None
    assert [h.display_name for h in PatientSearch(store).search("Ada", limit=10).hits] == [
        "Ada Home"
    ]


def test_cursors_state_and_counts_are_per_source_behind_the_sync_port(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    home_port = StoreSyncPort(store, source=HOME_SOURCE)
    west_port = StoreSyncPort(store, source=west)
    home_port.apply_page("Patient", [_patient("p1")], "2026-11-01T10:00:00.000Z")
    west_port.apply_page("Patient", [_patient("p1"), _patient("p2")], "2026-11-05T10:00:00.000Z")
    west_port.set_state("sync.runs", "4")
    assert home_port.cursor("Patient") == "2026-11-01T10:00:00.000Z"
    assert west_port.cursor("Patient") == "2026-11-05T10:00:00.000Z"
    assert (home_port.get_state("sync.runs"), west_port.get_state("sync.runs")) == (None, "4")
    assert (home_port.count("Patient"), west_port.count("Patient")) == (1, 2)
    assert sorted(west_port.known_ids("Patient")) == ["p1", "p2"]
    assert list(home_port.held_versions("Patient", ["p1", "p2"])) == ["p1"]
    west_port.apply_page("Patient", [], None, ["p1"])
    assert store.get_resource(HOME_SOURCE, "Patient", "p1") is not None
    with pytest.raises(ValueError, match="not registered"):
        StoreSyncPort(store, source=99)


# -- one person per verified NHS number ---------------------------------------------------------
@pytest.mark.parametrize(
    ("nhs", "status", "key"),
    [
        ("9434765870", "01", "nhs:9434765870"),
        ("943 476 5870", "01", "src:{sid}:p1"),  # not an identifier's form: never merged
        ("9434765870", "02", "src:{sid}:p1"),  # present but not traced
        ("9434765870", None, "src:{sid}:p1"),  # no verification status
        ("9434765871", "01", "src:{sid}:p1"),  # verified, but the check digit is wrong
        (None, None, "src:{sid}:p1"),
    ],
)
def test_the_person_key_joins_only_a_valid_verified_nhs_number(
    store: Store, nhs: str | None, status: str | None, key: str
) -> None:
    west = store.ensure_source("west", "read-only")
    store.put_resources(west, [_patient("p1", nhs=nhs, status=status)])
    [row] = store.patient_index().patients([1]).values()
    assert row.person_key == key.format(sid=west)


def test_people_lists_every_sources_row_of_a_person(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("h7", nhs="9434765870")])
    store.put_resources(west, [_patient("w3", nhs="9434765870"), _patient("w4", nhs="4857773457")])
    store.put_resources(west, [_patient("w5", nhs="4857773457", status="02")])
    people = store.people(["nhs:9434765870", "nhs:4857773457", f"src:{west}:w5", "nhs:0"])
    assert [(m.source, m.id) for m in people["nhs:9434765870"]] == [
        (HOME_SOURCE, "h7"),
        (west, "w3"),
    ]
    assert [(m.source, m.id) for m in people["nhs:4857773457"]] == [(west, "w4")]
    assert [(m.source, m.id) for m in people[f"src:{west}:w5"]] == [(west, "w5")]
    assert "nhs:0" not in people


# -- generated Trusts: collisions, bulk and incremental paths -----------------------------------
def test_collided_ids_from_two_trusts_stay_two_people_with_their_own_records(
    session: Any, region: Path, tmp_path: Path
) -> None:
    store: Store = session.store
    west = store.ensure_source("trust-2", "read-only")
    import_ndjson(session, region / "trust-1")
    import_ndjson(session, region / "trust-2", source=west)
    collided = _collided(region)
    assert collided, "the generator's deliberate collisions"
    for rid in collided:
        home = store.get_resource(HOME_SOURCE, "Patient", rid)
        other = store.get_resource(west, "Patient", rid)
        assert home is not None and other is not None and home != other
        for source, folder in ((HOME_SOURCE, "trust-1"), (west, "trust-2")):
            want = {
                (r["resourceType"], r["id"])
                for rtype in ("Flag", "CarePlan")
                for r in _ndjson(region / folder, rtype)
                if r["subject"]["reference"] == f"Patient/{rid}"
            }
            held = store.resources_for_patient(source, rid, ["Flag", "CarePlan"])
            assert {(r["resourceType"], r["id"]) for r in held} == want
    # The record view of each reads that source only: it is what a cache holding that Trust
    # alone shows (alerts, plan and its author, contacts, medication...).
    rid = collided[0]
    reason = ACCESS_REASONS[0]
    alone = enrol(tmp_path / "alone", "pc102", TEST_PIN, kdf=TEST_KDF, lockout=TEST_LOCKOUT)
    try:
        import_ndjson(alone, region / "trust-2")
        expected = _view(open_record(alone, rid, reason))
    finally:
        alone.close()
    record = open_record(session, rid, reason, source=west)
    assert record.source == west and _view(record) == expected
    assert _view(open_record(session, rid, reason)) != expected
    entries = [e for e in store.audit_entries() if e.action == "open-record"]
    assert [(e.patient_id, e.source) for e in entries] == [(rid, west), (rid, HOME_SOURCE)]
    assert store.verify_audit_chain() is None


def _view(record: Any) -> tuple[Any, ...]:
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


def test_a_bulk_load_into_two_sources_builds_what_incremental_writes_build(
    session: Any, region: Path, tmp_path: Path
) -> None:
    west = session.store.ensure_source("trust-2", "read-only")
    import_ndjson(session, region / "trust-1")
    import_ndjson(session, region / "trust-2", source=west)
    with Store.create(tmp_path / "incremental.db", os.urandom(32)) as other:
        assert other.ensure_source("trust-2", "read-only") == west
        for source, folder in ((HOME_SOURCE, "trust-1"), (west, "trust-2")):
            for rtype in ("Organization", "Practitioner", "Patient", "Flag", "CarePlan"):
                batch = _ndjson(region / folder, rtype)
                for start in range(0, len(batch), 97):
                    other.put_resources(source, batch[start : start + 97])
        bulk, incremental = index_contents(session.store), index_contents(other)
    assert bulk["rows"] and bulk == incremental
    shared = {r[0] for r in bulk["rows"].values() if r[0].startswith("nhs:")}
    assert len(shared) < len(bulk["rows"])  # some people are known to both Trusts
    people = session.store.people(shared)
    assert any(len(members) == 2 for members in people.values())


# -- erasing a source -----------------------------------------------------------------------------
def _home_only(tmp_path: Path, region: Path) -> dict[str, Any]:
    with Store.create(tmp_path / "home-only.db", os.urandom(32)) as other:
        for rtype in ("Organization", "Practitioner", "Patient", "Flag", "CarePlan"):
            other.put_resources(HOME_SOURCE, _ndjson(region / "trust-1", rtype))
        return index_contents(other)


def test_erasing_a_source_leaves_exactly_what_the_others_brought(
    session: Any, region: Path, tmp_path: Path
) -> None:
    store: Store = session.store
    west = store.ensure_source("trust-2", "read-only")
    for rtype in ("Organization", "Practitioner", "Patient", "Flag", "CarePlan"):
        store.put_resources(HOME_SOURCE, _ndjson(region / "trust-1", rtype))
        store.put_resources(west, _ndjson(region / "trust-2", rtype))
    StoreSyncPort(store, source=west).apply_page("Patient", [], "2026-11-20T10:00:00.000Z")
    store.set_sync_state(west, "sync.runs", "2")
    store.set_sync_state(HOME_SOURCE, "sync.runs", "5")
    home_counts = store.count_by_type(source=HOME_SOURCE)
    erased = store.erase_source(west)
    assert erased == sum(
        len(_ndjson(region / "trust-2", t))
        for t in ("Organization", "Practitioner", "Patient", "Flag", "CarePlan")
    )
    assert store.count_by_type(source=west) == {}
    assert store.count_by_type() == home_counts
    assert store.cursor(west, "Patient") is None and store.get_sync_state(west, "sync.runs") is None
    assert store.get_sync_state(HOME_SOURCE, "sync.runs") == "5"
    assert index_contents(store) == _home_only(tmp_path, region)
    assert store.source_id("trust-2") == west  # still registered (a revocation), empty
    assert store.check_integrity()


def test_an_erased_source_leaves_no_trace_in_the_file_and_its_sid_is_never_reused(
    tmp_path: Path,
) -> None:
    """On a plaintext file (no key: the same Store code), so the bytes can be searched: what
    a source brought is not left in free pages or the write-ahead log after it is erased."""
    path = tmp_path / "plain.db"
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")  # as `_connection.connect` sets it
    store = Store(conn, path)
    store.migrate()
    west = store.ensure_source("west", "read-only")
    store.put_resources(HOME_SOURCE, [_patient("p1", "Homeperson")])
    store.put_resources(west, [_patient(f"w{i}", f"{CANARY}{i}") for i in range(40)])
    store.add_outbox(
        client_id="c1",
        kind="encounter",
        patient_id="w3",
        patient_source=west,
        user_id="pc101",
        payload=b"{}",
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert CANARY.encode() in path.read_bytes()  # the check below can see it
    store.erase_source(west, unregister=True)
    assert store.source_id("west") is None
    assert [r.patient_source for r in store.outbox_rows()] == [west]  # it still goes home
    assert store.ensure_source("east", "read-only") > west
    assert PatientSearch(store).search(CANARY, limit=10).hits == []
    store.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("plain.db")]
    assert all(CANARY.encode() not in p.read_bytes() for p in files)
    assert b"Homeperson" in path.read_bytes()


def test_the_home_source_is_erased_only_with_the_whole_cache(store: Store) -> None:
    store.put_resources(HOME_SOURCE, [_patient("p1")])
    with pytest.raises(InvalidInput, match="wiping the whole cache"):
        store.erase_source(HOME_SOURCE)
    with pytest.raises(InvalidInput, match="no such source"):
        store.erase_source(7)
    assert store.get_resource(HOME_SOURCE, "Patient", "p1") is not None


# -- look-ups give way to the cohort --------------------------------------------------------------
def test_a_looked_up_record_expires_unless_the_cohort_brings_it(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    until = "2026-11-20T22:00:00.000Z"
    store.put_resources(west, [_patient("p1"), _patient("p2")], lookup_expires_at=until)
    assert store.looked_up_until(west, "Patient", "p1") == until
    # The same version synced: the person joined the cohort, nothing to expire.
    store.apply_page(west, "Patient", [_patient("p1")], "2026-11-01T10:00:00.000Z")
    assert store.looked_up_until(west, "Patient", "p1") is None
    assert store.looked_up_until(west, "Patient", "p2") == until
    # Looking up what the cohort holds does not make it expire; a later look-up extends.
    store.put_resources(west, [_patient("p1", version="2")], lookup_expires_at=until)
    assert store.looked_up_until(west, "Patient", "p1") is None
    later = "2026-11-21T22:00:00.000Z"
    store.put_resources(west, [_patient("p2")], lookup_expires_at=later)
    assert store.looked_up_until(west, "Patient", "p2") == later
    store.delete_resources(west, "Patient", ["p2"])
    assert store.conn.execute("SELECT count(*) FROM resource_lookup").fetchone()[0] == 0


# -- the audit chain names the source -----------------------------------------------------------
def test_an_audit_entrys_source_is_under_its_hash(store: Store) -> None:
    west = store.ensure_source("west", "read-only")
    store.audit(
        user_id="pc101",
        action="open-record",
        patient_id="p1",
        source=west,
        reason="Street triage",
        event_id="e1",
    )
    store.audit(
        user_id="pc101", action="search", patient_id=None, source=None, reason="ada", event_id="e2"
    )
    assert store.audit_problems() == []
    assert [e.source for e in store.audit_entries()] == [west, None]
    store.conn.execute("UPDATE audit SET source = 1 WHERE seq = 1")
    assert store.audit_problems() == ["entry 1 was changed after it was written"]
    with pytest.raises(ValueError, match="names a source exactly when"):
        store.audit(
            user_id="pc101",
            action="open-record",
            patient_id="p1",
            source=None,
            reason="x",
            event_id="e3",
        )


def test_audit_entries_written_before_schema_5_still_verify_and_are_the_home_sources(
    tmp_path: Path,
) -> None:
    """Entries of chain version 1, hashed as releases up to schema 4 hashed them (no source),
    verify after the migration; it gives them source 1 when they name a patient, and that is
    held too."""
    key, path = os.urandom(32), tmp_path / "c.db"
    conn = connect(path, key)
    for version, step in enumerate(MIGRATIONS[:4], start=1):
        conn.execute("BEGIN IMMEDIATE")
        step(conn)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    prev = "0" * 64
    for seq, action, patient in ((1, "open-record", "p1"), (2, "search", None)):
        fields = {
            "at": f"2026-11-20T10:00:0{seq}.000Z",
            "user_id": "pc101",
            "action": action,
            "patient_id": patient,
            "reason": "Street triage",
            "event_id": f"e{seq}",
        }
        body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(prev.encode() + body).hexdigest()
        conn.execute(
            "INSERT INTO audit (at, user_id, action, patient_id, reason, event_id, prev_hash,"
            " hash) VALUES (:at, :user_id, :action, :patient_id, :reason, :event_id, :prev,"
            " :hash)",
            {**fields, "prev": prev, "hash": digest},
        )
        prev = digest
    conn.close()
    with Store.open(path, key) as store:
        assert store.audit_problems() == []
        assert [e.source for e in store.audit_entries()] == [HOME_SOURCE, None]
        west = store.ensure_source("west", "read-only")
        store.audit(
            user_id="pc101",
            action="open-record",
            patient_id="p1",
            source=west,
            reason="Street triage",
            event_id="e3",
        )
        assert store.audit_problems() == []
        store.conn.execute("UPDATE audit SET source = ? WHERE seq = 1", (west,))
        assert store.audit_problems() == ["entry 1 was changed after it was written"]


def test_an_unknown_resource_table_is_refused_not_edited(tmp_path: Path) -> None:
    """The in-place schema edit of version 5 runs only on the table versions 1-4 wrote."""
    key, path = os.urandom(32), tmp_path / "c.db"
    conn = connect(path, key)
    for version, step in enumerate(MIGRATIONS[:4], start=1):
        conn.execute("BEGIN IMMEDIATE")
        step(conn)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    conn.execute("ALTER TABLE resource ADD COLUMN note TEXT")  # someone else's change
    before = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master"))
    conn.close()
    with pytest.raises(StoreUnavailable, match="nothing was changed"):
        Store.open(path, key)
    conn = connect(path, key)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    assert sorted(conn.execute("SELECT type, name, sql FROM sqlite_master")) == before
    conn.close()

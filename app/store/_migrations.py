"""The cache's schema versions: one function per version, each run by `Store.migrate` in its own
transaction with the `user_version` bump (a crash or a kill leaves the version before it).

Each version keeps the DDL it was written with, here, so a new cache goes through exactly the
steps an old one did; the modules' `SCHEMA` texts describe the current layout (a test checks
that a new cache has it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.errors import StoreUnavailable
from app.fhir import verified_nhs_number
from app.store import _codec, _sources
from app.store._clock import utc_now
from app.store._connection import Connection, run_script
from app.store._patient_index import person_key

log = logging.getLogger("kerbside.store")

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE sync_cursor (type TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE draft (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    json BLOB NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE resource (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT,
    last_updated TEXT,
    patient_id TEXT,
    json BLOB NOT NULL,
    UNIQUE (type, id)
);
CREATE INDEX resource_by_patient ON resource (patient_id, type) WHERE patient_id IS NOT NULL;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user_id TEXT NOT NULL,
    action TEXT NOT NULL,
    patient_id TEXT,
    reason TEXT,
    event_id TEXT NOT NULL UNIQUE,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    uploaded_at TEXT
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    patient_id TEXT,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'rejected', 'discarded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    reason TEXT,
    response BLOB,
    sent_at TEXT,
    resolved_at TEXT,
    resolved_by TEXT
);
CREATE INDEX outbox_by_state ON outbox (state, seq);
CREATE INDEX outbox_by_patient ON outbox (patient_id) WHERE patient_id IS NOT NULL;
CREATE TABLE patient_index (
    pid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    display_name TEXT,
    known_as TEXT,
    birth_date TEXT,
    gender TEXT,
    nhs_number TEXT,
    postcode TEXT,
    postcode_key TEXT,
    address TEXT,
    alerts BLOB,
    names TEXT NOT NULL,
    terms BLOB NOT NULL
);
CREATE INDEX patient_index_nhs_number ON patient_index (nhs_number)
    WHERE nhs_number IS NOT NULL;
CREATE INDEX patient_index_birth_date ON patient_index (birth_date) WHERE birth_date IS NOT NULL;
CREATE INDEX patient_index_postcode ON patient_index (postcode_key)
    WHERE postcode_key IS NOT NULL;
CREATE TABLE search_posting (
    term TEXT NOT NULL,
    field INTEGER NOT NULL,
    pids BLOB NOT NULL,
    PRIMARY KEY (term, field)
) WITHOUT ROWID;
CREATE TABLE search_vocab (
    term TEXT PRIMARY KEY,
    n_name INTEGER NOT NULL,
    n_address INTEGER NOT NULL,
    metaphone TEXT NOT NULL,
    nysiis TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE flag_alert (
    flag_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    alert BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX flag_alert_by_patient ON flag_alert (patient_id);
CREATE TABLE search_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO search_state (key, value) VALUES ('vocab_generation', 0);
"""


def _v1(conn: Connection) -> None:
    run_script(conn, _V1)


def _v2(conn: Connection) -> None:
    # Who a record is about, as the officer saw them (hazard H8; `_outbox.py`).
    conn.execute("ALTER TABLE outbox ADD COLUMN subject BLOB")


def _v3(conn: Connection) -> None:
    """Sources (issue 14): the table, and the home source as sid 1."""
    run_script(conn, _sources.SCHEMA_V3)
    _sources.register_home(conn, utc_now())


# -- version 4: resources per type kept by triggers -------------------------------------------
_V4_COUNT = (
    "CREATE TABLE resource_count (type TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO resource_count (type, n) SELECT type, count(*) FROM resource GROUP BY type",
    "CREATE TRIGGER IF NOT EXISTS resource_counted AFTER INSERT ON resource"
    " BEGIN INSERT OR IGNORE INTO resource_count (type, n) VALUES (NEW.type, 0);"
    " UPDATE resource_count SET n = n + 1 WHERE type = NEW.type; END",
    "CREATE TRIGGER IF NOT EXISTS resource_uncounted AFTER DELETE"
    " ON resource BEGIN UPDATE resource_count SET n = n - 1 WHERE type = OLD.type; END",
)


def _v4(conn: Connection) -> None:
    """Resources per type, kept by triggers: the status summary written after every sync
    counted the whole (type, id) index (most of a no-change sync at 1,000,000 patients)."""
    for statement in _V4_COUNT:
        conn.execute(statement)


# -- version 5: the cache keyed by source ------------------------------------------------------
# The resource table is the cache's bulk (1.3 GB at 100,000 patients): it is changed in place,
# never copied. `source` is added with DEFAULT 1, so every row written before reads as the home
# source's without being rewritten (the default must stay while such rows exist). Its UNIQUE
# (type, id) constraint cannot be dropped by ALTER TABLE: the table's SQL is rewritten without
# it (`PRAGMA writable_schema`, the procedure of sqlite.org/lang_altertable.html section 7, in
# this transaction) and the index behind it, which has exactly a CREATE UNIQUE INDEX's format,
# is renamed to an ordinary index and dropped. One full scan builds the new unique key.
# `resource_by_patient` stays (patient_id, type): a patient id is nearly always one source's,
# and reads by patient filter the source on the row they read anyway. Which rows an online
# look-up brought is a side table, so no index over the whole resource table is needed to find
# them. The small keyed tables are rebuilt (create `x_v5`, copy with source 1, drop, rename).
_V5_RESOURCE_BEFORE = (
    "CREATE TABLE resource ( rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,"
    " version_id TEXT, last_updated TEXT, patient_id TEXT, json BLOB NOT NULL,"
    " source INTEGER NOT NULL DEFAULT 1, UNIQUE (type, id) )"
)
_V5_RESOURCE = """CREATE TABLE resource (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT,
    last_updated TEXT,
    patient_id TEXT,
    json BLOB NOT NULL,
    source INTEGER NOT NULL DEFAULT 1
)"""
_V5_OLD_KEY = "CREATE UNIQUE INDEX resource_v4_key ON resource (type, id)"
_V5_TABLES = """
CREATE UNIQUE INDEX resource_key ON resource (source, type, id);
CREATE TABLE resource_lookup (
    rid INTEGER PRIMARY KEY REFERENCES resource (rid) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
CREATE INDEX resource_lookup_expiry ON resource_lookup (expires_at);
CREATE TABLE sync_state (
    source INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE TABLE sync_cursor_v5 (
    source INTEGER NOT NULL,
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, type)
) WITHOUT ROWID;
CREATE TABLE patient_index_v5 (
    pid INTEGER PRIMARY KEY,
    source INTEGER NOT NULL,
    id TEXT NOT NULL,
    person_key TEXT NOT NULL,
    display_name TEXT,
    known_as TEXT,
    birth_date TEXT,
    gender TEXT,
    nhs_number TEXT,
    postcode TEXT,
    postcode_key TEXT,
    address TEXT,
    alerts BLOB,
    names TEXT NOT NULL,
    terms BLOB NOT NULL
);
CREATE TABLE flag_alert_v5 (
    source INTEGER NOT NULL,
    flag_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    alert BLOB NOT NULL,
    PRIMARY KEY (source, flag_id)
) WITHOUT ROWID;
CREATE TABLE resource_count_v5 (
    source INTEGER NOT NULL,
    type TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source, type)
) WITHOUT ROWID
"""
_V5_COPY = """
INSERT INTO sync_state (source, key, value)
    SELECT 1, key, value FROM meta WHERE substr(key, 1, 5) = 'sync.' AND value IS NOT NULL;
DELETE FROM meta WHERE substr(key, 1, 5) = 'sync.';
INSERT INTO sync_cursor_v5 (source, type, value, updated_at)
    SELECT 1, type, value, updated_at FROM sync_cursor;
INSERT INTO patient_index_v5 (pid, source, id, person_key, display_name, known_as, birth_date,
        gender, nhs_number, postcode, postcode_key, address, alerts, names, terms)
    SELECT pid, 1, id, 'src:1:' || id, display_name, known_as, birth_date, gender, nhs_number,
        postcode, postcode_key, address, alerts, names, terms FROM patient_index;
INSERT INTO flag_alert_v5 (source, flag_id, patient_id, alert)
    SELECT 1, flag_id, patient_id, alert FROM flag_alert;
INSERT INTO resource_count_v5 (source, type, n) SELECT 1, type, n FROM resource_count
"""
_V5_SWAP = ("sync_cursor", "patient_index", "flag_alert", "resource_count")
# The counting triggers of version 4, now per source (dropped while a bulk load runs:
# then they are left off, and the load's end counts and starts them).
_V5_COUNT_TRIGGERS = (
    "CREATE TRIGGER resource_counted AFTER INSERT ON resource"
    " BEGIN INSERT OR IGNORE INTO resource_count (source, type, n)"
    " VALUES (NEW.source, NEW.type, 0);"
    " UPDATE resource_count SET n = n + 1 WHERE source = NEW.source AND type = NEW.type; END",
    "CREATE TRIGGER resource_uncounted AFTER DELETE"
    " ON resource BEGIN UPDATE resource_count SET n = n - 1"
    " WHERE source = OLD.source AND type = OLD.type; END",
)
_V5_INDEXES = """
CREATE UNIQUE INDEX patient_index_key ON patient_index (source, id);
CREATE INDEX patient_index_person ON patient_index (person_key);
CREATE INDEX patient_index_nhs_number ON patient_index (nhs_number)
    WHERE nhs_number IS NOT NULL;
CREATE INDEX patient_index_birth_date ON patient_index (birth_date) WHERE birth_date IS NOT NULL;
CREATE INDEX patient_index_postcode ON patient_index (postcode_key)
    WHERE postcode_key IS NOT NULL;
CREATE INDEX flag_alert_by_patient ON flag_alert (source, patient_id);
ALTER TABLE outbox ADD COLUMN patient_source INTEGER;
UPDATE outbox SET patient_source = 1 WHERE patient_id IS NOT NULL;
ALTER TABLE audit ADD COLUMN source INTEGER;
ALTER TABLE audit ADD COLUMN chain INTEGER NOT NULL DEFAULT 1;
UPDATE audit SET source = 1 WHERE patient_id IS NOT NULL
"""


_V5_CACHE_KIB = -65536  # 64 MiB, as a bulk load takes
_DEFAULT_CACHE_KIB = -2000


def _v5(conn: Connection) -> None:
    """Storage keyed by source (issue 14, docs/design/multi-trust.md section 3): every row of
    central-record data says which source it came from, and what was cached becomes the home
    source's. One transaction, nothing downloaded again: the next sync carries on from the
    same cursors, now (1, type)."""
    started = time.perf_counter()
    conn.execute(f"PRAGMA cache_size = {_V5_CACHE_KIB}")  # the key's sort, the index probes
    try:
        counting = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'resource'"
            )
        }
        for name in counting:
            conn.execute(f"DROP TRIGGER {name}")
        _v5_resource_key(conn)
        run_script(conn, _V5_TABLES)
        run_script(conn, _V5_COPY)
        for table in _V5_SWAP:
            conn.execute(f"DROP TABLE {table}")
            conn.execute(f"ALTER TABLE {table}_v5 RENAME TO {table}")
        run_script(conn, _V5_INDEXES)
        if counting:
            for statement in _V5_COUNT_TRIGGERS:
                conn.execute(statement)
        _v5_person_keys(conn)
    finally:
        conn.execute(f"PRAGMA cache_size = {_DEFAULT_CACHE_KIB}")
    log.info("cache keyed by source in %.1f s", time.perf_counter() - started)


def _v5_resource_key(conn: Connection) -> None:
    """`resource` gains `source` and loses UNIQUE (type, id), in place (see above)."""
    conn.execute("ALTER TABLE resource ADD COLUMN source INTEGER NOT NULL DEFAULT 1")
    (table_sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'resource'"
    ).fetchone()
    old_key = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index'"
        " AND name = 'sqlite_autoindex_resource_1' AND tbl_name = 'resource'"
    ).fetchone()
    if " ".join(str(table_sql).split()) != _V5_RESOURCE_BEFORE or old_key != (None,):
        # Not the layout versions 1-4 wrote: refuse rather than edit a schema we do not know.
        raise StoreUnavailable(
            "this cache's layout is not one this version of Kerbside can upgrade; nothing was"
            " changed (wipe it and sync again)"
        )
    (cookie,) = conn.execute("PRAGMA schema_version").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'resource'",
            (_V5_RESOURCE,),
        )
        conn.execute(
            "UPDATE sqlite_master SET name = 'resource_v4_key', sql = ?"
            " WHERE type = 'index' AND name = 'sqlite_autoindex_resource_1'",
            (_V5_OLD_KEY,),
        )
        conn.execute(f"PRAGMA schema_version = {int(cookie) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    conn.execute("DROP INDEX resource_v4_key")


def _v5_person_keys(conn: Connection) -> None:
    """`nhs:<number>` for the indexed Patients whose NHS number is valid and verified (the
    copy gave every row `src:1:<id>`), read from each Patient as the indexer reads it.

    The Patients are read in rowid order, so their pages are read once each, in file order:
    joined from the index instead, each row costs a random read (37 s at 100,000 patients on
    the development box against 4 s)."""
    rids = sorted(
        rid
        for (rid,) in conn.execute("SELECT rid FROM resource WHERE source = 1 AND type = 'Patient'")
    )
    keys: list[tuple[str, str]] = []
    for start in range(0, len(rids), 500):
        chunk = rids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for rid, blob in conn.execute(
            f"SELECT id, json FROM resource WHERE rid IN ({marks}) ORDER BY rid", chunk
        ):
            number = verified_nhs_number(_codec.loads(blob))
            if number is not None:
                keys.append((person_key(1, rid, number), rid))
    keys.sort(key=lambda k: k[1])
    conn.executemany("UPDATE patient_index SET person_key = ? WHERE source = 1 AND id = ?", keys)


def _v6(conn: Connection) -> None:
    """Resource JSON packed from now on (`_codec`): nothing to rewrite (a row written before
    is read as it is, and packed when next written). The version moves so that a release
    before packing, put back on a tablet after this one wrote, refuses the cache with "update
    Kerbside" (`Store.migrate`) instead of failing on the first packed row it reads."""


# One function per schema version, each run in its own transaction with the version bump.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_v1, _v2, _v3, _v4, _v5, _v6)
SCHEMA_VERSION = len(MIGRATIONS)

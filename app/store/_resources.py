"""FHIR resources as the central record sent them, plus the hook that keeps derived tables in step.

The JSON is kept lossless (DESIGN.md section 3): every view and index can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import orjson

from app.errors import InvalidInput
from app.fhir import patient_ref_of
from app.store import _codec
from app.store._connection import Connection

# The current layout (schema version 5, `_migrations._v5`). `source` is the sid of the central
# record the row came from (`_sources.py`): an id is unique within its source only, and every
# reference inside a resource resolves within its own source. Rows written before version 5
# carry no `source` and read as 1 through the column's default, which must therefore stay.
# `resource_lookup` marks what an online look-up fetched (kept until `expires_at`); every
# other row is the cohort's, as sync keeps it. Deleting a resource deletes its mark (cascade).
SCHEMA = """
CREATE TABLE resource (
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version_id TEXT,
    last_updated TEXT,
    patient_id TEXT,
    json BLOB NOT NULL,
    source INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX resource_key ON resource (source, type, id);
CREATE INDEX resource_by_patient ON resource (patient_id, type) WHERE patient_id IS NOT NULL;
CREATE TABLE resource_lookup (
    rid INTEGER PRIMARY KEY REFERENCES resource (rid) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
CREATE INDEX resource_lookup_expiry ON resource_lookup (expires_at)
"""
# Secondary indexes of the resource table: a bulk load drops them and builds them at the end.
# Reads by patient name the source too, and filter it on the rows they read.
SECONDARY_INDEXES = {
    "resource_by_patient": "CREATE INDEX IF NOT EXISTS resource_by_patient"
    " ON resource (patient_id, type) WHERE patient_id IS NOT NULL",
}

# Resources per source and type. Triggers keep it while the cache is in use; a bulk load drops
# them (a trigger run per inserted row) and counts once at the end (`recount`).
COUNT_SCHEMA = """
CREATE TABLE resource_count (
    source INTEGER NOT NULL,
    type TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source, type)
) WITHOUT ROWID
"""
_COUNT_TRIGGERS = {
    "resource_counted": "CREATE TRIGGER IF NOT EXISTS resource_counted AFTER INSERT ON resource"
    " BEGIN INSERT OR IGNORE INTO resource_count (source, type, n)"
    " VALUES (NEW.source, NEW.type, 0);"
    " UPDATE resource_count SET n = n + 1 WHERE source = NEW.source AND type = NEW.type; END",
    "resource_uncounted": "CREATE TRIGGER IF NOT EXISTS resource_uncounted AFTER DELETE"
    " ON resource BEGIN UPDATE resource_count SET n = n - 1"
    " WHERE source = OLD.source AND type = OLD.type; END",
}


def recount(conn: Connection) -> None:
    """Count every source's types again and (re)start the triggers, in the caller's
    transaction."""
    conn.execute("DELETE FROM resource_count")
    conn.execute(
        "INSERT INTO resource_count (source, type, n)"
        " SELECT source, type, count(*) FROM resource GROUP BY source, type"
    )
    for sql in _COUNT_TRIGGERS.values():
        conn.execute(sql)


def stop_counting(conn: Connection) -> None:
    for name in _COUNT_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def counts(
    conn: Connection, types: Sequence[str], *, source: int | None, exact: bool
) -> dict[str, int]:
    """Resources per type, of one source or all (only `types` when given; a type with none
    is absent). `exact`: count the rows (a bulk load is running and the triggers are off)."""
    table = (
        "(SELECT source, type, count(*) AS n FROM resource GROUP BY source, type)"
        if exact
        else "resource_count"
    )
    where = ["n > 0"]
    args: list[Any] = []
    if source is not None:
        where.append("source = ?")
        args.append(source)
    if types:
        where.append(f"type IN ({','.join('?' * len(types))})")
        args.extend(types)
    found: dict[str, int] = {}
    for rtype, n in conn.execute(f"SELECT type, n FROM {table} WHERE {' AND '.join(where)}", args):
        found[rtype] = found.get(rtype, 0) + int(n)
    return found


class Indexer(Protocol):
    """Derived tables (search, views) that follow the resource table inside its transactions."""

    types: frozenset[str]

    def create_schema(self, conn: Connection) -> None: ...

    def index(self, conn: Connection, source: int, resources: Sequence[dict[str, Any]]) -> None:
        """Called after `resources` (all of one of `types`, from one source) were stored or
        replaced."""

    def remove(
        self,
        conn: Connection,
        source: int,
        rtype: str,
        ids: Sequence[str],
        patient_ids: Sequence[str],
    ) -> None:
        """Called after resources were deleted; `patient_ids` are the patients they were about."""

    def clear(self, conn: Connection) -> None:
        """Empty the derived tables (a bulk load begins; they are built at its end)."""

    def rebuild(self, conn: Connection) -> None:
        """Re-derive every row from the resource table (the end of a bulk load)."""

    def erase(self, conn: Connection, source: int) -> None:
        """Forget everything derived from one source (before its resources are deleted)."""


Row = tuple[str, str, str | None, str | None, str | None, bytes]
MAX_RESOURCE_BYTES = 1 << 20  # one resource as stored; a real Patient or Flag is a few KB


def row_of(res: dict[str, Any], raw: bytes | None = None) -> Row:
    """The `resource` row of one resource, its JSON packed (`_codec`); `raw` is its JSON as
    received (a bulk load keeps those bytes instead of serialising the parsed copy again)."""
    meta = res.get("meta") or {}
    # Plain orjson: the bytes are packed at once, so the right-sized copy `_json` makes for
    # JSON that is kept would be thrown away.
    blob = raw if raw is not None else orjson.dumps(res)
    if len(blob) > MAX_RESOURCE_BYTES:
        # A 10 MB name once made search peak at 477 MB (issue 12 finding 6): refuse the batch.
        raise InvalidInput(
            f"a {res.get('resourceType', 'resource')} from outside is larger than the "
            f"{MAX_RESOURCE_BYTES // 1024} KiB limit for one resource; nothing of it was stored",
            field="resource",
        )
    return (
        res["resourceType"],
        res["id"],
        meta.get("versionId"),
        meta.get("lastUpdated"),
        patient_ref_of(res),
        _codec.pack(blob),
    )


def upsert(
    conn: Connection,
    source: int,
    resources: Iterable[dict[str, Any]],
    *,
    lookup_expires_at: str | None = None,
) -> list[dict[str, Any]]:
    """Store resources from one source; returns those that were new or newer than what was held.

    A version already held (same id and versionId) is skipped, and so is one older than what is
    held: pages may overlap or arrive out of order, and an older copy must never win.
    `lookup_expires_at`: they come from an online look-up and are kept until then (see
    `upsert_rows` for how a look-up and the cohort meet).
    """
    incoming = list(resources)
    rows = [row_of(res) for res in incoming]
    fresh = upsert_rows(conn, source, rows, lookup_expires_at=lookup_expires_at)
    return [incoming[i] for i in fresh]


def upsert_rows(
    conn: Connection,
    source: int,
    rows: Sequence[Row],
    *,
    lookup_expires_at: str | None = None,
) -> list[int]:
    """`upsert` of prepared rows; returns the positions of those that were stored.

    The cohort wins over a look-up: a row sync writes loses its look-up mark even when the
    version was already held (the person joined the cohort, and the next sync will not bring
    that version again, so it must not expire), and a look-up never marks a row the cohort
    brought.
    """
    if not rows:
        return []
    held = _held_versions(conn, source, rows)
    fresh_rows = []
    fresh: list[int] = []
    for i, row in enumerate(rows):
        old = held.get((row[0], row[1]))
        if old is not None:
            old_version, old_updated = old
            if old_version == row[2] and old_version is not None:
                continue
            if old_updated and row[3] and _instant_key(row[3]) < _instant_key(old_updated):
                continue
        fresh_rows.append((source, *row))
        fresh.append(i)
    conn.executemany(
        "INSERT INTO resource (source, type, id, version_id, last_updated, patient_id, json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, type, id) DO UPDATE SET"
        " version_id = excluded.version_id, last_updated = excluded.last_updated,"
        " patient_id = excluded.patient_id, json = excluded.json",
        fresh_rows,
    )
    if lookup_expires_at is None:
        _keep_in_cohort(conn, source, rows)
    else:
        # New rows only: a row held before is the cohort's, or already marked (kept as it
        # was, or refreshed below).
        _mark_looked_up(
            conn, source, [r for r in rows if (r[0], r[1]) not in held], lookup_expires_at
        )
        _refresh_looked_up(
            conn, source, [r for r in rows if (r[0], r[1]) in held], lookup_expires_at
        )
    return fresh


def insert_rows(conn: Connection, source: int, rows: Sequence[Row]) -> int:
    """Plain inserts into a source that held none of these types (a first bulk load); returns
    how many were new."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO resource (source, type, id, version_id, last_updated,"
        " patient_id, json) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(source, *row) for row in rows],
    )
    added = conn.total_changes - before
    _keep_in_cohort(conn, source, rows)  # a look-up made while the load ran
    return added


def _keys(rows: Sequence[Row]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row[0], []).append(row[1])
    return by_type


def _keep_in_cohort(conn: Connection, source: int, rows: Sequence[Row]) -> None:
    """Sync wrote these: none of them expires as a look-up any more."""
    if not rows or conn.execute("SELECT 1 FROM resource_lookup LIMIT 1").fetchone() is None:
        return  # the common case: no look-ups held, nothing to read
    for rtype, ids in _keys(rows).items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            conn.execute(
                "DELETE FROM resource_lookup WHERE rid IN (SELECT rid FROM resource"
                f" WHERE source = ? AND type = ? AND id IN ({marks}))",
                (source, rtype, *chunk),
            )


def _mark_looked_up(conn: Connection, source: int, rows: Sequence[Row], until: str) -> None:
    for rtype, ids in _keys(rows).items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            conn.execute(
                "INSERT OR REPLACE INTO resource_lookup (rid, expires_at) SELECT rid, ?"
                f" FROM resource WHERE source = ? AND type = ? AND id IN ({marks})",
                (until, source, rtype, *chunk),
            )


def _refresh_looked_up(conn: Connection, source: int, rows: Sequence[Row], until: str) -> None:
    """Looked up again: a row already marked is kept until the later time."""
    for rtype, ids in _keys(rows).items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            conn.execute(
                "UPDATE resource_lookup SET expires_at = max(expires_at, ?) WHERE rid IN"
                f" (SELECT rid FROM resource WHERE source = ? AND type = ? AND id IN ({marks}))",
                (until, source, rtype, *chunk),
            )


def looked_up_until(conn: Connection, source: int, rtype: str, rid: str) -> str | None:
    """When a looked-up resource expires; None for the cohort's (or an absent one)."""
    row = conn.execute(
        "SELECT l.expires_at FROM resource r JOIN resource_lookup l ON l.rid = r.rid"
        " WHERE r.source = ? AND r.type = ? AND r.id = ?",
        (source, rtype, rid),
    ).fetchone()
    return str(row[0]) if row else None


def looked_up_rows(conn: Connection, until: str | None) -> list[tuple[int, str, str]]:
    """(source, type, id) of every looked-up resource that expires at `until` or earlier
    (None: every one)."""
    sql = "SELECT r.source, r.type, r.id FROM resource_lookup l JOIN resource r ON r.rid = l.rid"
    rows = (
        conn.execute(sql)
        if until is None
        else conn.execute(sql + " WHERE l.expires_at <= ?", (until,))
    )
    return [(int(s), str(t), str(i)) for s, t, i in rows]


def _instant_key(instant: str) -> str:
    """Sortable form of a FHIR instant: UTC 'Z' instants of mixed precision compare as text
    once the fraction is padded; other offsets are rare from servers and compared as given."""
    if instant.endswith("Z") and "." not in instant:
        return instant[:-1] + ".000000Z"
    if instant.endswith("Z"):
        head, frac = instant[:-1].split(".", 1)
        return f"{head}.{frac.ljust(6, '0')}Z"
    return instant


def _held_versions(
    conn: Connection, source: int, rows: Sequence[Row]
) -> dict[tuple[str, str], tuple[str, str]]:
    held: dict[tuple[str, str], tuple[str, str]] = {}
    for rtype, ids in _keys(rows).items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for rid, version, updated in conn.execute(
                "SELECT id, version_id, last_updated FROM resource"
                f" WHERE source = ? AND type = ? AND id IN ({marks})",
                (source, rtype, *chunk),
            ):
                held[(rtype, rid)] = (version, updated)
    return held


def delete(conn: Connection, source: int, rtype: str, ids: Sequence[str]) -> list[str]:
    """Delete one source's resources; returns the patient ids they were about (for derived
    tables)."""
    patients: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for (pid,) in conn.execute(
            f"SELECT patient_id FROM resource WHERE source = ? AND type = ? AND id IN ({marks})"
            " AND patient_id IS NOT NULL",
            (source, rtype, *chunk),
        ):
            patients.add(pid)
        conn.execute(
            f"DELETE FROM resource WHERE source = ? AND type = ? AND id IN ({marks})",
            (source, rtype, *chunk),
        )
    return sorted(patients)


def get(conn: Connection, source: int, rtype: str, rid: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT json FROM resource WHERE source = ? AND type = ? AND id = ?", (source, rtype, rid)
    ).fetchone()
    return _codec.loads(row[0]) if row else None


def for_patient(
    conn: Connection, source: int, patient_id: str, types: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Everything one source holds about one of its patients (the Patient included)."""
    if types is None:
        rows = conn.execute(
            "SELECT json FROM resource WHERE source = ? AND patient_id = ?", (source, patient_id)
        )
    else:
        wanted = list(types)
        marks = ",".join("?" * len(wanted))
        rows = conn.execute(
            f"SELECT json FROM resource WHERE source = ? AND patient_id = ? AND type IN ({marks})",
            (source, patient_id, *wanted),
        )
    return [_codec.loads(r[0]) for r in rows]

"""FHIR resources as the central record sent them, plus the hook that keeps derived tables in step.

The JSON is kept lossless (DESIGN.md section 3): every view and index can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import orjson

from app.errors import InvalidInput
from app.fhir import patient_ref_of
from app.store._connection import Connection

SCHEMA = """
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
"""
# Secondary indexes of the resource table: a bulk load drops them and builds them at the end.
SECONDARY_INDEXES = {
    "resource_by_patient": "CREATE INDEX IF NOT EXISTS resource_by_patient"
    " ON resource (patient_id, type) WHERE patient_id IS NOT NULL",
}

# Resources per type. Triggers keep it while the cache is in use; a bulk load drops them (a
# trigger run per inserted row) and counts once at the end (`recount`).
COUNT_SCHEMA = """
CREATE TABLE resource_count (type TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID
"""
_COUNT_TRIGGERS = {
    "resource_counted": "CREATE TRIGGER IF NOT EXISTS resource_counted AFTER INSERT ON resource"
    " BEGIN INSERT OR IGNORE INTO resource_count (type, n) VALUES (NEW.type, 0);"
    " UPDATE resource_count SET n = n + 1 WHERE type = NEW.type; END",
    "resource_uncounted": "CREATE TRIGGER IF NOT EXISTS resource_uncounted AFTER DELETE"
    " ON resource BEGIN UPDATE resource_count SET n = n - 1 WHERE type = OLD.type; END",
}


def recount(conn: Connection) -> None:
    """Count every type again and (re)start the triggers, in the caller's transaction."""
    conn.execute("DELETE FROM resource_count")
    conn.execute(
        "INSERT INTO resource_count (type, n) SELECT type, count(*) FROM resource GROUP BY type"
    )
    for sql in _COUNT_TRIGGERS.values():
        conn.execute(sql)


def stop_counting(conn: Connection) -> None:
    for name in _COUNT_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def counts(conn: Connection, types: Sequence[str], *, exact: bool) -> dict[str, int]:
    """Resources per type (only `types` when given; a type with none is absent). `exact`:
    count the rows (a bulk load is running and the triggers are off)."""
    source = (
        "(SELECT type, count(*) AS n FROM resource GROUP BY type)" if exact else "resource_count"
    )
    if not types:
        return dict(conn.execute(f"SELECT type, n FROM {source} WHERE n > 0"))
    marks = ",".join("?" * len(types))
    return dict(
        conn.execute(f"SELECT type, n FROM {source} WHERE n > 0 AND type IN ({marks})", types)
    )


class Indexer(Protocol):
    """Derived tables (search, views) that follow the resource table inside its transactions."""

    types: frozenset[str]

    def create_schema(self, conn: Connection) -> None: ...

    def index(self, conn: Connection, resources: Sequence[dict[str, Any]]) -> None:
        """Called after `resources` (all of one of `types`) were stored or replaced."""

    def remove(
        self, conn: Connection, rtype: str, ids: Sequence[str], patient_ids: Sequence[str]
    ) -> None:
        """Called after resources were deleted; `patient_ids` are the patients they were about."""

    def clear(self, conn: Connection) -> None:
        """Empty the derived tables (a bulk load begins; they are built at its end)."""

    def rebuild(self, conn: Connection) -> None:
        """Re-derive every row from the resource table (the end of a bulk load)."""


Row = tuple[str, str, str | None, str | None, str | None, bytes]
MAX_RESOURCE_BYTES = 1 << 20  # one resource as stored; a real Patient or Flag is a few KB


def row_of(res: dict[str, Any], raw: bytes | None = None) -> Row:
    """The `resource` row of one resource; `raw` is its JSON as received (a bulk load keeps
    those bytes instead of serialising the parsed copy again)."""
    meta = res.get("meta") or {}
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
        blob,
    )


def upsert(conn: Connection, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store resources; returns those that were new or newer than what was held.

    A version already held (same id and versionId) is skipped, and so is one older than what is
    held: pages may overlap or arrive out of order, and an older copy must never win.
    """
    incoming = list(resources)
    fresh = upsert_rows(conn, [row_of(res) for res in incoming])
    return [incoming[i] for i in fresh]


def upsert_rows(conn: Connection, rows: Sequence[Row]) -> list[int]:
    """`upsert` of prepared rows; returns the positions of those that were stored."""
    if not rows:
        return []
    held = _held_versions(conn, rows)
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
        fresh_rows.append(row)
        fresh.append(i)
    conn.executemany(
        "INSERT INTO resource (type, id, version_id, last_updated, patient_id, json)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (type, id) DO UPDATE SET"
        " version_id = excluded.version_id, last_updated = excluded.last_updated,"
        " patient_id = excluded.patient_id, json = excluded.json",
        fresh_rows,
    )
    return fresh


def _instant_key(instant: str) -> str:
    """Sortable form of a FHIR instant: UTC 'Z' instants of mixed precision compare as text
    once the fraction is padded; other offsets are rare from servers and compared as given."""
    if instant.endswith("Z") and "." not in instant:
        return instant[:-1] + ".000000Z"
    if instant.endswith("Z"):
        head, frac = instant[:-1].split(".", 1)
        return f"{head}.{frac.ljust(6, '0')}Z"
    return instant


def _held_versions(conn: Connection, rows: Sequence[Row]) -> dict[tuple[str, str], tuple[str, str]]:
    held: dict[tuple[str, str], tuple[str, str]] = {}
    by_type: dict[str, list[str]] = {}
    for row in rows:
        by_type.setdefault(row[0], []).append(row[1])
    for rtype, ids in by_type.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for rid, version, updated in conn.execute(
                "SELECT id, version_id, last_updated FROM resource"
                f" WHERE type = ? AND id IN ({marks})",
                (rtype, *chunk),
            ):
                held[(rtype, rid)] = (version, updated)
    return held


def delete(conn: Connection, rtype: str, ids: Sequence[str]) -> list[str]:
    """Delete resources; returns the patient ids they were about (for derived tables)."""
    patients: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for (pid,) in conn.execute(
            f"SELECT patient_id FROM resource WHERE type = ? AND id IN ({marks})"
            " AND patient_id IS NOT NULL",
            (rtype, *chunk),
        ):
            patients.add(pid)
        conn.execute(f"DELETE FROM resource WHERE type = ? AND id IN ({marks})", (rtype, *chunk))
    return sorted(patients)


def get(conn: Connection, rtype: str, rid: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT json FROM resource WHERE type = ? AND id = ?", (rtype, rid)
    ).fetchone()
    return orjson.loads(row[0]) if row else None


def for_patient(
    conn: Connection, patient_id: str, types: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    if types is None:
        rows = conn.execute("SELECT json FROM resource WHERE patient_id = ?", (patient_id,))
    else:
        wanted = list(types)
        marks = ",".join("?" * len(wanted))
        rows = conn.execute(
            f"SELECT json FROM resource WHERE patient_id = ? AND type IN ({marks})",
            (patient_id, *wanted),
        )
    return [orjson.loads(r[0]) for r in rows]

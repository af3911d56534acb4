"""The local audit chain: every opening of a record, tamper-evident.

Each row's hash covers the previous row's hash, so deleting or editing a row breaks every hash
after it (`verify`). Rows are uploaded to the central record as AuditEvent by sync, each with
its sequence number, the previous hash and its own hash, so the centre can check the chain
per device and see a gap (docs/security/audit-trail.md); the chain stays on the device until
the cache is purged.

What a hash covers depends on the entry's `chain` version: 1 (schema versions 1-4) the fields
below without `source`, 2 (schema version 5 on) with it, so whose record was opened (which
central record's Patient `patient_id` is) cannot be changed either. Entries written before
version 2 keep their hashes; the migration gave them `source` 1 for an entry about a patient
(every cached patient was the home source's) and NULL otherwise, and the check holds them to
exactly that.

`problems` is the full check the product runs (on unlock, before each upload, and in
`kerbside audit`): an edited row, a deleted row, rows re-hashed after an edit and rows cut off
the end (the session compares the head with the keyring's copy) each give a problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from app.store._connection import Connection
from app.store._sources import HOME_SOURCE
from app.times import iso_instant

SCHEMA = """
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
    uploaded_at TEXT,
    source INTEGER,
    chain INTEGER NOT NULL DEFAULT 1
);
"""
CHAIN_VERSION = 2  # what `append` writes

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: str
    user_id: str
    action: str
    patient_id: str | None
    reason: str | None
    event_id: str
    uploaded_at: str | None
    prev_hash: str = GENESIS
    hash: str = GENESIS
    source: int | None = None  # the sid whose Patient `patient_id` is (None: no patient)


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def append(
    conn: Connection,
    *,
    user_id: str,
    action: str,
    patient_id: str | None,
    reason: str | None,
    event_id: str,
    source: int | None,
    at: datetime | None = None,
) -> tuple[int, str]:
    """Append one entry; call inside a transaction so the chain head cannot race.
    `source`: the sid of the source whose Patient `patient_id` is (None without a patient)."""
    if (source is None) != (patient_id is None):
        raise ValueError("an audit entry names a source exactly when it names a patient")
    when = iso_instant(at or datetime.now(UTC), timespec="milliseconds")
    row = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    fields = {
        "at": when,
        "user_id": user_id,
        "action": action,
        "patient_id": patient_id,
        "reason": reason,
        "event_id": event_id,
        "source": source,
    }
    digest = _digest(prev, fields)
    cur = conn.execute(
        "INSERT INTO audit (at, user_id, action, patient_id, reason, event_id, prev_hash, hash,"
        " source, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (when, user_id, action, patient_id, reason, event_id, prev, digest, source, CHAIN_VERSION),
    )
    return int(cur.lastrowid or 0), digest


def _chain(conn: Connection) -> Iterator[tuple[int, str, str, dict[str, Any] | None]]:
    """(seq, prev_hash, hash, the hashed fields) of every entry, oldest first. The fields are
    None for an entry that cannot be what was written: an unknown chain version, or a version 1
    entry whose `source` is not what the migration gave it."""
    for row in conn.execute(
        "SELECT seq, at, user_id, action, patient_id, reason, event_id, prev_hash, hash, source,"
        " chain FROM audit ORDER BY seq"
    ):
        seq, at, user_id, action, patient_id, reason, event_id, prev_hash, digest = row[:9]
        source, chain = row[9], row[10]
        fields: dict[str, Any] | None = {
            "at": at,
            "user_id": user_id,
            "action": action,
            "patient_id": patient_id,
            "reason": reason,
            "event_id": event_id,
        }
        if chain == CHAIN_VERSION:
            fields["source"] = source  # type: ignore[index]
        elif chain != 1 or source != (None if patient_id is None else HOME_SOURCE):
            fields = None
        yield int(seq), prev_hash, digest, fields


def _holds(prev_hash: str, fields: dict[str, Any] | None, digest: str) -> bool:
    return fields is not None and _digest(prev_hash, fields) == digest


def verify(conn: Connection) -> int | None:
    """The seq of the first entry whose hash does not hold, or None if the chain is intact."""
    prev = GENESIS
    for seq, prev_hash, digest, fields in _chain(conn):
        if prev_hash != prev or not _holds(prev, fields, digest):
            return int(seq)
        prev = digest
    return None


def problems(conn: Connection, *, expected_head: tuple[int, str] | None = None) -> list[str]:
    """Every way the chain fails, oldest first; [] when it holds.

    Texts name sequence numbers only (never a patient or a user). `expected_head` is the
    highest sequence number known to have been written (kept outside the cache): a chain that
    ends before it has lost its newest entries, and one whose entry at that number has another
    hash was rewritten (edited, then every later hash recomputed).
    """
    found: list[str] = []
    prev = GENESIS
    last_seq = 0
    anchor_hash: str | None = None
    for seq, prev_hash, digest, fields in _chain(conn):
        if seq != last_seq + 1:
            found.append(f"entries {last_seq + 1}-{seq - 1} are missing")
        elif prev_hash != prev:
            found.append(f"entry {seq} does not follow entry {last_seq} (a row was replaced)")
        if not _holds(prev_hash, fields, digest):
            found.append(f"entry {seq} was changed after it was written")
        if expected_head is not None and seq == expected_head[0]:
            anchor_hash = digest
        prev = digest
        last_seq = int(seq)
    if expected_head is not None:
        anchor_seq, expected_hash = expected_head
        if last_seq < anchor_seq:
            found.append(f"entries {last_seq + 1}-{anchor_seq} were cut off the end")
        elif anchor_hash is not None and anchor_hash != expected_hash:
            found.append(f"entries up to {anchor_seq} were rewritten and their hashes recomputed")
    return found


def head(conn: Connection) -> int:
    row = conn.execute("SELECT max(seq) FROM audit").fetchone()
    return int(row[0] or 0)


def entries(
    conn: Connection,
    *,
    only_not_uploaded: bool = False,
    limit: int = 1000,
    source: int | None = None,
    after_seq: int = 0,
) -> list[AuditEntry]:
    """Entries in chain order. `source`: only openings of that source's records, after
    `after_seq` (what a read-only source is sent: `uploaded_at` is the home source's mark)."""
    params: tuple[int, ...]
    if source is not None:
        where, params = "WHERE source = ? AND seq > ?", (source, after_seq, limit)
    elif only_not_uploaded:
        where, params = "WHERE uploaded_at IS NULL", (limit,)
    else:
        where, params = "", (limit,)
    return [
        AuditEntry(*row)
        for row in conn.execute(
            "SELECT seq, at, user_id, action, patient_id, reason, event_id, uploaded_at,"
            f" prev_hash, hash, source FROM audit {where} ORDER BY seq LIMIT ?",
            params,
        )
    ]


def entry(conn: Connection, seq: int) -> AuditEntry | None:
    row = conn.execute(
        "SELECT seq, at, user_id, action, patient_id, reason, event_id, uploaded_at,"
        " prev_hash, hash, source FROM audit WHERE seq = ?",
        (seq,),
    ).fetchone()
    return AuditEntry(*row) if row else None


def mark_uploaded(conn: Connection, event_ids: list[str], at: str) -> None:
    conn.executemany(
        "UPDATE audit SET uploaded_at = ? WHERE event_id = ?", [(at, e) for e in event_ids]
    )

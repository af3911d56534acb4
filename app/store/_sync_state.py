"""SQL behind the sync port (`sync.SyncStore`): held versions, per-source sync state, outbox
transitions, merges.

Kept apart from `_outbox.py` (how records are queued and resolved by people) because these are
the transitions only sync makes: attempt, sent, rejected, re-pointed after a Patient merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.store._connection import Connection

_CHUNK = 500


# Sync's own small state (deletion cursors, pass markers, run counter), per source: the sync
# engine names the keys (`sync.runs`, `sync.pull-origin.<type>`...), the port adds the source.
SCHEMA = """
CREATE TABLE sync_state (
    source INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID
"""


def held_versions(
    conn: Connection, source: int, rtype: str, ids: Sequence[str]
) -> dict[str, tuple[str | None, str | None]]:
    held: dict[str, tuple[str | None, str | None]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        marks = ",".join("?" * len(chunk))
        for rid, version, updated in conn.execute(
            "SELECT id, version_id, last_updated FROM resource"
            f" WHERE source = ? AND type = ? AND id IN ({marks})",
            (source, rtype, *chunk),
        ):
            held[rid] = (version, updated)
    return held


def get_state(conn: Connection, source: int, key: str) -> str | None:
    row = conn.execute(
        "SELECT value FROM sync_state WHERE source = ? AND key = ?", (source, key)
    ).fetchone()
    return str(row[0]) if row else None


def set_state(conn: Connection, source: int, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM sync_state WHERE source = ? AND key = ?", (source, key))
    else:
        conn.execute(
            "INSERT OR REPLACE INTO sync_state (source, key, value) VALUES (?, ?, ?)",
            (source, key, value),
        )


def pending(conn: Connection, limit: int) -> list[tuple[int, str, str, str | None, bytes, int]]:
    """(seq, client_id, kind, patient_id, payload, attempts) of pending rows, oldest first."""
    return [
        (int(seq), client_id, kind, patient_id, bytes(payload), int(attempts))
        for seq, client_id, kind, patient_id, payload, attempts in conn.execute(
            "SELECT seq, client_id, kind, patient_id, payload, attempts FROM outbox"
            " WHERE state = 'pending' ORDER BY seq LIMIT ?",
            (limit,),
        )
    ]


def record_attempt(conn: Connection, seq: int, at: str) -> None:
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_attempt_at = ? WHERE seq = ?", (at, seq)
    )


def mark_sent(conn: Connection, seq: int, response: bytes, at: str) -> None:
    conn.execute(
        "UPDATE outbox SET state = 'sent', response = ?, sent_at = ?, reason = NULL"
        " WHERE seq = ? AND state = 'pending'",
        (response, at, seq),
    )


def mark_rejected(conn: Connection, seq: int, reason: str, response: bytes | None, at: str) -> None:
    conn.execute(
        "UPDATE outbox SET state = 'rejected', reason = ?, response = ?, last_attempt_at = ?"
        " WHERE seq = ? AND state = 'pending'",
        (reason, response, at, seq),
    )


def repoint_patient(conn: Connection, source: int, old_id: str, new_id: str, home: int) -> int:
    """A merge at `source`: the pending records about its Patient `old_id` are about `new_id`.

    Payloads go to the home source, so their `Patient/<id>` references are home ids: they are
    rewritten only for a merge at home. Records about another source's person carry no
    reference to it (they identify the person by NHS number), only their `patient_id`.
    """
    old_ref, new_ref = f"Patient/{old_id}", f"Patient/{new_id}"
    changed = 0
    if source == home:
        found = conn.execute(
            "SELECT seq, payload FROM outbox WHERE state = 'pending'"
            " AND ((patient_id = ? AND patient_source = ?) OR instr(payload, ?) > 0)",
            (old_id, source, old_ref.encode()),
        ).fetchall()
    else:
        found = conn.execute(
            "SELECT seq, NULL FROM outbox WHERE state = 'pending'"
            " AND patient_id = ? AND patient_source = ?",
            (old_id, source),
        ).fetchall()
    for seq, payload in found:
        rewritten = (
            payload
            if payload is None
            else orjson.dumps(_rewrite(orjson.loads(payload), old_ref, new_ref))
        )
        conn.execute(
            "UPDATE outbox SET payload = coalesce(?, payload), patient_id = CASE WHEN"
            " patient_id = ? AND patient_source = ? THEN ? ELSE patient_id END WHERE seq = ?",
            (rewritten, old_id, source, new_id, seq),
        )
        changed += 1
    return changed


def _rewrite(value: Any, old_ref: str, new_ref: str) -> Any:
    """Copy of a JSON value with references to the old Patient pointing at the survivor.

    Only whole references (`Patient/<id>`, optionally absolute or versioned) are touched, so
    an identifier or a narrative that happens to contain the id stays as written.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                out[key] = _rewrite_reference(item, old_ref, new_ref)
            else:
                out[key] = _rewrite(item, old_ref, new_ref)
        return out
    if isinstance(value, list):
        return [_rewrite(item, old_ref, new_ref) for item in value]
    return value


def _rewrite_reference(ref: str, old_ref: str, new_ref: str) -> str:
    if ref == old_ref:
        return new_ref
    if ref.endswith("/" + old_ref):
        return ref[: -len(old_ref)] + new_ref
    if ref.startswith(old_ref + "/_history/"):
        return new_ref
    return ref

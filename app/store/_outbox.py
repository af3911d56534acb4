"""The outbox: field records waiting to reach the central record.

A row is written in the same transaction as the record it carries (SECURITY.md 17); it is done
only when the server's answer has been committed here. Rows are never deleted by sync: a
rejected row stays, with the server's reason, until a person resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.store._connection import Connection

# The current layout (`_migrations`: version 1, `subject` from 2, `patient_source` from 5).
SCHEMA = """
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
    resolved_by TEXT,
    subject BLOB,
    patient_source INTEGER
);
CREATE INDEX outbox_by_state ON outbox (state, seq);
CREATE INDEX outbox_by_patient ON outbox (patient_id) WHERE patient_id IS NOT NULL;
"""
# `subject`: who a record is about, as the officer saw them when it was saved (name, date of
# birth, NHS number; JSON). Kept with the row, not looked up: a person merged or removed
# centrally leaves the cache, and a refused record that then said only "person no longer in the
# cache" could not be acted on (hazard H8, docs/clinical-safety/hazard-log.md).
# `patient_source`: the sid whose Patient `patient_id` is. The record itself always goes to the
# home source; the row outlives the source's data (`Store.erase_source` keeps it).

# `discarded`: a person reviewed a rejection and decided the record is not to be sent (e.g. a
# duplicate). The row, its payload and the server's reason stay; only sync ignores it.
STATES = ("pending", "sent", "rejected", "discarded")
_COLUMNS = (
    "seq, client_id, kind, patient_id, user_id, created_at, payload, state, attempts,"
    " last_attempt_at, reason, sent_at, resolved_at, resolved_by, subject, patient_source,"
    " response"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    client_id: str
    kind: str
    patient_id: str | None
    user_id: str
    created_at: str
    payload: bytes
    state: str
    attempts: int
    last_attempt_at: str | None
    reason: str | None
    sent_at: str | None
    resolved_at: str | None
    resolved_by: str | None
    subject: bytes | None = None  # JSON snapshot: name, birth_date, nhs_number
    patient_source: int | None = None  # the sid whose Patient `patient_id` is
    response: bytes | None = None  # the central record's answer (JSON), once sent or refused


def add(
    conn: Connection,
    *,
    client_id: str,
    kind: str,
    patient_id: str | None,
    patient_source: int | None,
    user_id: str,
    created_at: str,
    payload: bytes,
    subject: bytes | None = None,
) -> int:
    """Queue one record; the caller's transaction also holds whatever the record replaces."""
    if (patient_source is None) != (patient_id is None):
        raise ValueError("an outbox row names the patient's source exactly when it names one")
    cur = conn.execute(
        "INSERT INTO outbox (client_id, kind, patient_id, patient_source, user_id, created_at,"
        " payload, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (client_id, kind, patient_id, patient_source, user_id, created_at, payload, subject),
    )
    return int(cur.lastrowid or 0)


def rows(
    conn: Connection,
    *,
    kind: str | None = None,
    patient_id: str | None = None,
    patient_source: int | None = None,
    since: str | None = None,
    states: tuple[str, ...] | None = None,
) -> list[OutboxRow]:
    """Rows matching every given filter, oldest first; `since` compares `created_at`."""
    where: list[str] = []
    args: list[object] = []
    if kind is not None:
        where.append("kind = ?")
        args.append(kind)
    if patient_id is not None:
        where.append("patient_id = ?")
        args.append(patient_id)
    if patient_source is not None:
        where.append("patient_source = ?")
        args.append(patient_source)
    if since is not None:
        where.append("created_at >= ?")
        args.append(since)
    if states is not None:
        where.append(f"state IN ({','.join('?' * len(states))})")
        args.extend(states)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return [
        OutboxRow(*row)
        for row in conn.execute(f"SELECT {_COLUMNS} FROM outbox{clause} ORDER BY seq", args)
    ]


def get(conn: Connection, client_id: str) -> OutboxRow | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE client_id = ?", (client_id,)
    ).fetchone()
    return OutboxRow(*row) if row else None


def requeue(
    conn: Connection,
    client_id: str,
    *,
    payload: bytes | None,
    patient_id: str | None,
    patient_source: int | None = None,
    subject: bytes | None = None,
) -> bool:
    """Rejected -> pending; False if the row is not rejected.

    With a corrected `payload` the row's `patient_id` is replaced too (a correction may change
    the person). The server's last reason stays until its next answer replaces it.
    """
    if payload is None:
        cur = conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0"
            " WHERE client_id = ? AND state = 'rejected'",
            (client_id,),
        )
    else:
        if (patient_source is None) != (patient_id is None):
            raise ValueError("an outbox row names the patient's source exactly when it names one")
        cur = conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, payload = ?, patient_id = ?,"
            " patient_source = ?, subject = ? WHERE client_id = ? AND state = 'rejected'",
            (payload, patient_id, patient_source, subject, client_id),
        )
    return cur.rowcount == 1


def discard(conn: Connection, client_id: str, *, by: str, at: str) -> bool:
    """Rejected -> discarded, keeping the row; False if the row is not rejected."""
    cur = conn.execute(
        "UPDATE outbox SET state = 'discarded', resolved_at = ?, resolved_by = ?"
        " WHERE client_id = ? AND state = 'rejected'",
        (at, by, client_id),
    )
    return cur.rowcount == 1

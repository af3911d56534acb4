"""The outbox: field records waiting to reach the central record.

A row is written in the same transaction as the record it carries (SECURITY.md 17); it is done
only when the server's answer has been committed here. Rows are never deleted by sync: a
rejected row stays, with the server's reason, until a person resolves it.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    patient_id TEXT,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    reason TEXT,
    response BLOB,
    sent_at TEXT
);
CREATE INDEX outbox_by_state ON outbox (state, seq);
"""

"""Derived per-patient rows for search results and lists (rebuilt from the resource table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.store._connection import Connection, run_script

SCHEMA = """
CREATE TABLE patient_index (
    pid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    display_name TEXT,
    birth_date TEXT,
    gender TEXT,
    nhs_number TEXT,
    postcode TEXT
);
"""


class PatientIndexer:
    types = frozenset({"Patient", "Flag"})

    def create_schema(self, conn: Connection) -> None:
        run_script(conn, SCHEMA)

    def index(self, conn: Connection, resources: Sequence[dict[str, Any]]) -> None:
        pass

    def remove(self, conn: Connection, rtype: str, ids: Sequence[str],
               patient_ids: Sequence[str]) -> None:
        pass

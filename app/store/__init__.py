"""The encrypted cache (SQLCipher): resources as received, keyed by the source (central record)
they came from, derived indexes, outbox, audit chain, sync cursors, drafts and schema
migrations. Imports nothing from services, ui or sync."""

from app.store._audit import AuditEntry
from app.store._bulk import BuiltIndex, BulkPreparer, LineParser, Prepared
from app.store._connection import Connection, sqlcipher_version
from app.store._outbox import OutboxRow
from app.store._patient_index import (
    Field,
    IndexedPatient,
    Member,
    PatientIndexer,
    PatientIndexReader,
    one_per_source,
)
from app.store._resources import Indexer, Row, row_of
from app.store._sources import HOME_SOURCE, Source
from app.store._store import SCHEMA_VERSION, Store, utc_now

__all__ = [
    "HOME_SOURCE",
    "SCHEMA_VERSION",
    "AuditEntry",
    "BuiltIndex",
    "BulkPreparer",
    "Connection",
    "Field",
    "IndexedPatient",
    "Indexer",
    "LineParser",
    "Member",
    "OutboxRow",
    "PatientIndexReader",
    "PatientIndexer",
    "Prepared",
    "Row",
    "Source",
    "Store",
    "one_per_source",
    "row_of",
    "sqlcipher_version",
    "utc_now",
]

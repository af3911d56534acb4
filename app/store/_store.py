"""Store: an open, keyed cache and its schema. One Store per thread (SQLite connections are
not shared); a worker opens its own with the same key, and WAL lets readers and one writer
work side by side."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from app.errors import InvalidInput, SchemaTooNew, StoreUnavailable
from app.store import _audit, _codec, _outbox, _patient_index, _resources, _sources, _sync_state
from app.store._bulk import BuiltIndex, BulkPreparer, Prepared
from app.store._clock import utc_now
from app.store._connection import (
    Connection,
    TransactionManager,
    connect,
    translate_error,
)
from app.store._migrations import MIGRATIONS, SCHEMA_VERSION
from app.store._patient_index import Member, PatientIndexer, PatientIndexReader
from app.store._resources import Indexer
from app.store._sources import HOME_SOURCE

log = logging.getLogger("kerbside.store")

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Store", "utc_now"]


def _indexers() -> tuple[Indexer, ...]:
    return (PatientIndexer(),)


_BULK_CACHE_KIB = -65536  # 64 MiB while a bulk load runs
_DEFAULT_CACHE_KIB = -2000  # SQLite's default
_BULK_CHECKPOINT_PAGES = 16384
_DEFAULT_CHECKPOINT_PAGES = 1000  # SQLite's default


_DERIVED_TYPES = frozenset({"Patient", "Flag"})  # what the search tables are derived from


@dataclass
class _BulkRun:
    """A bulk load on this connection: whether its own postings can still be used."""

    data_version: int
    armed: bool = True
    patients: int = 0  # patient_index rows written by put_prepared
    # A load beside records that are already searchable (a neighbour Trust's first load, an
    # import into a cache in use): no mark, nothing cleared, every batch indexed as it is
    # written, so search keeps answering for what was there (hazard H13).
    beside: bool = False


def _bulk_loading(conn: Connection) -> bool:
    row = conn.execute("SELECT value FROM search_state WHERE key = 'bulk-load'").fetchone()
    return row is not None


class Store:
    """An unlocked cache. Use `Store.open` (existing) or `Store.create` (new)."""

    def __init__(self, conn: Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._transactions = TransactionManager(conn)
        self.transaction: Callable[[], AbstractContextManager[Connection]] = self._transactions
        self.indexers = _indexers()
        # Called with (seq, hash) once an audit entry is committed: the session keeps the head
        # outside the cache (OS keyring), so entries cut off the end are noticed.
        self.audit_committed: Callable[[int, str], None] | None = None
        self._bulk: _BulkRun | None = None  # a bulk load running on this connection

    @classmethod
    def create(cls, path: Path, key: bytes) -> Store:
        if path.exists():
            raise StoreUnavailable("a cache already exists here")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Owner-only from the first byte: create the file ourselves before SQLite does.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        store = cls(connect(path, key), path)
        store.migrate()
        return store

    @classmethod
    def open(cls, path: Path, key: bytes) -> Store:
        if not path.exists():
            raise StoreUnavailable("no cache file in this profile")
        store = cls(connect(path, key), path)
        store.migrate()
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"this cache was written by a newer Kerbside (schema {current}, "
                f"this version reads up to {SCHEMA_VERSION}); update Kerbside"
            )
        for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.transaction() as conn:
                step(conn)
                conn.execute(f"PRAGMA user_version = {int(version)}")
            log.info("cache schema migrated to version %d", version)

    def check_integrity(self) -> bool:
        """SQLCipher's page HMACs and SQLite's structure (SECURITY.md 6)."""
        try:
            bad_pages = self.conn.execute("PRAGMA cipher_integrity_check").fetchall()
            result = self.conn.execute("PRAGMA integrity_check").fetchone()
        except Exception as exc:
            log.warning("integrity check failed: %s", type(translate_error(exc)).__name__)
            return False
        return not bad_pages and bool(result) and result[0] == "ok"

    # -- resources ---------------------------------------------------------------------------
    # Every resource belongs to one source (the sid of the central record it came from), and
    # an id means something only within its source: the same id at two servers is two
    # resources, and a reference inside a resource resolves within the resource's own source.
    # So every read and write of central-record data names the source; services pass
    # HOME_SOURCE until several sources sync (docs/design/multi-trust.md section 3).
    def put_resources(
        self,
        source: int,
        resources: Iterable[dict[str, Any]],
        *,
        lookup_expires_at: str | None = None,
    ) -> int:
        """Store one source's resources (any types) in one transaction; returns how many were
        new or newer. `lookup_expires_at`: fetched by an online look-up, kept until then
        (unless the cohort brings them too: `_resources.upsert_rows`)."""
        with self.transaction() as conn:
            return self._put(conn, source, resources, lookup_expires_at=lookup_expires_at)

    def _put(
        self,
        conn: Connection,
        source: int,
        resources: Iterable[dict[str, Any]],
        *,
        lookup_expires_at: str | None = None,
    ) -> int:
        fresh = _resources.upsert(conn, source, resources, lookup_expires_at=lookup_expires_at)
        if _bulk_loading(conn):
            if self._bulk is not None and any(r["resourceType"] in _DERIVED_TYPES for r in fresh):
                self._bulk.armed = False  # not in the load's own postings
            return len(fresh)  # the load's index build derives them
        by_type: dict[str, list[dict[str, Any]]] = {}
        for res in fresh:
            by_type.setdefault(res["resourceType"], []).append(res)
        for rtype, group in by_type.items():
            self._index(conn, source, rtype, group)
        return len(fresh)

    def _index(
        self, conn: Connection, source: int, rtype: str, resources: list[dict[str, Any]]
    ) -> None:
        """Index resources of one type just written, in the caller's transaction."""
        for indexer in self.indexers:
            if rtype in indexer.types:
                indexer.index(conn, source, resources)

    def delete_resources(self, source: int, rtype: str, ids: Sequence[str]) -> None:
        with self.transaction() as conn:
            self._delete(conn, source, rtype, ids)

    def _delete(self, conn: Connection, source: int, rtype: str, ids: Sequence[str]) -> None:
        patient_ids = _resources.delete(conn, source, rtype, ids)
        if _bulk_loading(conn):
            if self._bulk is not None and rtype in _DERIVED_TYPES:
                self._bulk.armed = False
            return
        for indexer in self.indexers:
            if rtype in indexer.types:
                indexer.remove(conn, source, rtype, ids, patient_ids)

    def get_resource(self, source: int, rtype: str, rid: str) -> dict[str, Any] | None:
        return _resources.get(self.conn, source, rtype, rid)

    def resources_for_patient(
        self, source: int, patient_id: str, types: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """What `source` holds about its Patient `patient_id` (the Patient included)."""
        return _resources.for_patient(self.conn, source, patient_id, types)

    def patient_ids_with_nhs_number(self, source: int, digits: str) -> list[str]:
        """`source`'s cached Patients carrying this NHS number (ten digits), via the index."""
        rows = self.conn.execute(
            "SELECT id FROM patient_index WHERE nhs_number = ? AND source = ?", (digits, source)
        )
        return [rid for (rid,) in rows]

    def people(self, person_keys: Iterable[str]) -> dict[str, list[Member]]:
        """Every source's row of each person, by `person_key` (`nhs:<verified number>`
        joins sources; `src:<sid>:<id>` is one row): for merging search results and records."""
        return self.patient_index().people(person_keys)

    def merged_people(self) -> int:
        """How many people more than one source knows (rows joined by a verified NHS number:
        a `nhs:` person key in several sources); a count for the demo and doctor, no data."""
        row = self.conn.execute(
            "SELECT count(*) FROM (SELECT person_key FROM patient_index"
            " WHERE person_key LIKE 'nhs:%' GROUP BY person_key"
            " HAVING count(DISTINCT source) > 1)"
        ).fetchone()
        return int(row[0])

    def resource_ids(self, source: int, rtype: str) -> Iterator[str]:
        for (rid,) in self.conn.execute(
            "SELECT id FROM resource WHERE source = ? AND type = ?", (source, rtype)
        ):
            yield rid

    def count_by_type(self, *types: str, source: int | None = None) -> dict[str, int]:
        """Resources held per type, over every source unless `source` is given; only `types`
        when given (a type with none is absent). Read from the counts the triggers keep,
        without scanning the resources; during a bulk load (the triggers are off) the rows
        are counted."""
        return _resources.counts(self.conn, types, source=source, exact=_bulk_loading(self.conn))

    def looked_up_until(self, source: int, rtype: str, rid: str) -> str | None:
        """When a resource an online look-up fetched expires; None for the cohort's (what
        sync keeps) and for one the cache does not hold."""
        return _resources.looked_up_until(self.conn, source, rtype, rid)

    def expire_lookups(self, now: str, *, every: bool = False) -> int:
        """Erase what online look-ups fetched and kept until `now` or earlier (a FHIR
        instant in whole seconds, as `put_resources` was given its `lookup_expires_at`), or
        `every` look-up row whatever its time. A row sync has brought since is the cohort's
        and has no look-up mark (`_resources.upsert_rows`), so it stays. One transaction;
        the search index follows, deleted rows and freed pages are overwritten with zeros
        (`secure_delete`, on for every connection) and the write-ahead log is checkpointed,
        as when a source is erased. Returns how many resources went."""
        with self.transaction() as conn:
            due = _resources.looked_up_rows(conn, None if every else now)
            by_kind: dict[tuple[int, str], list[str]] = {}
            for source, rtype, rid in due:
                by_kind.setdefault((source, rtype), []).append(rid)
            for (source, rtype), ids in by_kind.items():
                self._delete(conn, source, rtype, ids)
        if due:
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy and busy[0]:
                log.warning("write-ahead log not truncated after expiring look-ups")
            log.info("expired %d looked-up resources", len(due))
        return len(due)

    def lookup_expiry(self) -> str | None:
        """The earliest time a held look-up expires; None when none is held."""
        row = self.conn.execute("SELECT min(expires_at) FROM resource_lookup").fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows per state (pending, rejected, sent, discarded): counts only."""
        return dict(self.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state"))

    def audit_not_uploaded(self) -> int:
        """Access-log entries not yet acknowledged by the centre."""
        row = self.conn.execute("SELECT count(*) FROM audit WHERE uploaded_at IS NULL").fetchone()
        return int(row[0])

    def patient_index(self) -> PatientIndexReader:
        """The search index's reads, on this store's connection (use from its thread)."""
        return PatientIndexReader(self.conn)

    # -- bulk load: resources first, every index once at the end -----------------------------
    # Sync's first load (FHIR Bulk Data) and `kerbside import` both go through here. While the
    # `bulk-load` mark is in search_state, writes skip the derived tables and the resource
    # table's secondary index, and search refuses to answer (IndexIncomplete) rather than
    # answer from half an index. The mark is cleared in the same transaction that finishes
    # the build, so a crash at any point leaves it set: the next load or sync resumes and
    # builds again (`finish_bulk_load` is idempotent).
    def bulk_load_pending(self) -> bool:
        return _bulk_loading(self.conn)

    def begin_bulk_load(self) -> None:
        """Into a cache with nothing to search (a new tablet, a rebuild, a load that broke):
        the mark, no index work until `finish_bulk_load`. Beside records that are already
        searchable: no mark, and each batch indexed as it is written (`_BulkRun.beside`),
        because taking every Trust's people out of search for a neighbour's load (minutes at
        a regional cohort) is the hazard H13 describes."""
        # A bigger page cache for the load and the index build (sorting 1M rows); the
        # default 2 MB makes SQLCipher decrypt the same pages again and again.
        self.conn.execute(f"PRAGMA cache_size = {_BULK_CACHE_KIB}")
        # NORMAL while the load runs: WAL syncs at checkpoints, not at every commit. The
        # database stays consistent through a power cut; what can be lost is the last few
        # batches of copies of the central record, which the resumed load (the mark is set
        # first, with a sync; or, beside, the cursors not yet moved) fetches again. No
        # clinical write shares this connection while it loads, and `finish_bulk_load` (or
        # `abandon_bulk_load`) puts FULL back.
        holds = self.holds_search_data()
        searchable = holds and not self.bulk_load_pending()
        if not searchable:
            with self.transaction() as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO search_state (key, value) VALUES ('bulk-load', 1)"
                )
                for name in _resources.SECONDARY_INDEXES:
                    conn.execute(f"DROP INDEX IF EXISTS {name}")
                _resources.stop_counting(conn)
                for indexer in self.indexers:
                    indexer.clear(conn)
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint every 64 MB of log instead of 4 MB: a page written by several commits
        # (the random-id index pages) is copied into the database once, not once per commit.
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {_BULK_CHECKPOINT_PAGES}")
        # The load's own postings can stand for the whole index only if the cache held no
        # Patient or Flag of any source (`clear` above took every source's rows).
        self._bulk = _BulkRun(data_version=self._data_version(), armed=not holds, beside=searchable)

    def put_rows(
        self, source: int, rows: Sequence[_resources.Row], *, into_empty: bool = False
    ) -> int:
        """Store one source's prepared resource rows (see `_resources.row_of`) in one
        transaction, without index work; only during a bulk load. Returns how many were new
        or newer.

        `into_empty`: the source held none of these types when the load began, so there is
        nothing to compare versions with (the common first load: plain inserts). A load that
        resumes after a crash passes False and skips the versions already held.
        """
        rtype = rows[0][0] if rows else ""
        return self.put_prepared(
            source, [Prepared(rtype, source, list(rows))], into_empty=into_empty
        )

    def put_prepared(
        self, source: int, batches: Sequence[Prepared], *, into_empty: bool = False
    ) -> int:
        """Store `source`'s batches from `BulkPreparer` (each of one type) in one transaction;
        returns how many resources were new or newer. A Patient batch also writes its
        patient_index rows and a Flag batch its flag_alert rows, as long as everything this
        load wrote went through here into a cache that held no Patient or Flag of any source
        (then `finish_bulk_load` can use the postings the preparer collected); otherwise the
        index build re-derives everything, every source's."""
        run = self._bulk
        beside = run is not None and run.beside
        stored = 0
        with self.transaction() as conn:
            if not beside and not _bulk_loading(conn):
                raise RuntimeError("put_prepared is for a bulk load (begin_bulk_load first)")
            for batch in batches:
                if batch.source != source:
                    raise ValueError("a batch prepared for another source")
                if not batch.rows:
                    continue
                if beside:
                    stored += self._put_rows_indexed(conn, source, batch)
                    continue
                if into_empty:
                    count = _resources.insert_rows(conn, source, batch.rows)
                else:
                    count = len(_resources.upsert_rows(conn, source, batch.rows))
                stored += count
                if run is None or not run.armed or batch.rtype not in _DERIVED_TYPES:
                    continue
                if not into_empty or count != len(batch.rows):
                    run.armed = False  # held versions or a repeated id: rebuild at the end
                elif batch.rtype == "Patient":
                    if len(batch.patients) != count:
                        run.armed = False
                        continue
                    conn.executemany(_patient_index.INSERT_ROW, batch.patients)
                    run.patients += count
                else:
                    _patient_index.put_flag_rows(conn, batch.flags)
        return stored

    def _put_rows_indexed(self, conn: Connection, source: int, batch: Prepared) -> int:
        """A batch of a load beside searchable records: its resources upserted and, when
        search reads them, indexed in the same transaction (as a page of an incremental
        sync is)."""
        fresh = _resources.upsert_rows(conn, source, batch.rows)
        if fresh and batch.rtype in _DERIVED_TYPES:
            resources = [_codec.loads(batch.rows[i][-1]) for i in fresh]
            self._index(conn, source, batch.rtype, resources)
        return len(fresh)

    def abandon_bulk_load(self) -> None:
        """The load stopped (an error, a cancel): the mark stays, so the next load or sync
        builds the indexes; this connection goes back to its usual settings."""
        self._bulk = None
        try:
            self._usual_settings()
        except Exception as exc:  # the load's own error is the one to report
            log.warning("cache settings not restored after a stopped load: %s", type(exc).__name__)

    def finish_bulk_load(self, built: BuiltIndex | None = None) -> None:
        """Build the secondary indexes and every derived table, and clear the mark, in one
        transaction. `built`: the postings and vocabulary the load's preparer collected, used
        when every Patient and Flag of the cache came through `put_prepared` of this load on
        this connection with nobody else writing (else every row is derived again from the
        resource table)."""
        run, self._bulk = self._bulk, None
        if run is not None and run.beside:
            self._usual_settings()  # indexed as it went: nothing to build
            return
        try:
            with self.transaction() as conn:
                for sql in _resources.SECONDARY_INDEXES.values():
                    conn.execute(sql)
                _resources.recount(conn)
                if (
                    built is not None
                    and run is not None
                    and run.armed
                    and run.patients == built.patients
                    and run.data_version == self._data_version()
                ):
                    _patient_index.write_built(conn, built.postings, built.vocab)
                    log.info("bulk load: index from the load's own postings")
                else:
                    for indexer in self.indexers:
                        indexer.rebuild(conn)
                conn.execute("DELETE FROM search_state WHERE key = 'bulk-load'")
        finally:
            self._usual_settings()

    def bulk_preparer(self, source: int) -> Callable[[], BulkPreparer]:
        """What a bulk load of `source` runs in its worker (see `app.store._bulk`): picklable
        by reference."""
        return partial(BulkPreparer, source)

    def _usual_settings(self) -> None:
        self.conn.execute(f"PRAGMA cache_size = {_DEFAULT_CACHE_KIB}")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {_DEFAULT_CHECKPOINT_PAGES}")

    def holds_search_data(self) -> bool:
        """Any source's Patient or Flag is cached: what search reads, and what a bulk load
        would take out of search until its index build."""
        marks = ",".join("?" * len(_DERIVED_TYPES))
        return (
            self.conn.execute(
                "SELECT 1 FROM source s WHERE EXISTS (SELECT 1 FROM resource r WHERE"
                f" r.source = s.sid AND r.type IN ({marks}))",
                tuple(_DERIVED_TYPES),
            ).fetchone()
            is not None
        )

    def _data_version(self) -> int:
        """Changes whenever another connection commits to this cache (SQLite's data_version)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- sources (the central records the cache holds data from) ------------------------------
    def ensure_source(self, name: str, role: str) -> int:
        """The sid of source `name` (a profile's source name), registering it when new.
        `role` is "home" (always sid 1; a new name renames it) or "read-only"."""
        with self.transaction() as conn:
            return _sources.ensure(conn, name, role, utc_now())

    def sources(self) -> list[_sources.Source]:
        """Every registered source, home (sid 1) first."""
        return _sources.all_sources(self.conn)

    def source_id(self, name: str) -> int | None:
        return _sources.sid_of(self.conn, name)

    # -- small key-value state ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self.transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- sync cursors and state, per source (the SyncStore port of sync/ builds on these) ----
    def cursor(self, source: int, rtype: str) -> str | None:
        row = self.conn.execute(
            "SELECT value FROM sync_cursor WHERE source = ? AND type = ?", (source, rtype)
        ).fetchone()
        return row[0] if row else None

    def apply_page(
        self,
        source: int,
        rtype: str,
        resources: Sequence[dict[str, Any]],
        cursor: str | None,
        deleted_ids: Sequence[str] = (),
    ) -> int:
        """Store a page pulled from `source`, its deletions and its cursor in one transaction.

        A crash then re-pulls the page (harmless) instead of skipping it.
        """
        with self.transaction() as conn:
            count = self._put(conn, source, resources)
            if deleted_ids:
                self._delete(conn, source, rtype, deleted_ids)
            if cursor is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO sync_cursor (source, type, value, updated_at)"
                    " VALUES (?, ?, ?, ?)",
                    (source, rtype, cursor, utc_now()),
                )
            return count

    def get_sync_state(self, source: int, key: str) -> str | None:
        """Sync's small state for one source (deletion cursors, pass markers, run counter)."""
        return _sync_state.get_state(self.conn, source, key)

    def set_sync_state(self, source: int, key: str, value: str | None) -> None:
        with self.transaction() as conn:
            _sync_state.set_state(conn, source, key, value)

    # -- erasing a source ------------------------------------------------------------------------
    def erase_source(self, source: int, *, unregister: bool = False) -> int:
        """Erase everything `source` brought, in one transaction: its resources, its search
        index rows (and its patients' places in the postings and vocabulary), its alerts,
        cursors and sync state. Returns how many resources went.

        Kept: the outbox (records about its people still go home; each row's `subject` says
        who they were about, hazard H8) and the audit chain (it is never edited). Deleted
        rows and freed pages are overwritten with zeros (`secure_delete`, on for every
        connection) and the write-ahead log is checkpointed and truncated, so the erased
        rows do not linger in the file for anyone holding the key.

        `unregister`: the source is removed from the profile, so its sid is forgotten too
        (never reused); without it (a read-only source revoked the device) it stays
        registered, empty. The home source's data goes only with a wipe of the whole cache.
        """
        if source == HOME_SOURCE:
            raise InvalidInput(
                "the home source's data is erased only by wiping the whole cache", field="source"
            )
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM source WHERE sid = ?", (source,)).fetchone() is None:
                raise InvalidInput("no such source in this cache", field="source")
            for indexer in self.indexers:
                indexer.erase(conn, source)
            erased = conn.execute("DELETE FROM resource WHERE source = ?", (source,)).rowcount
            conn.execute("DELETE FROM sync_cursor WHERE source = ?", (source,))
            conn.execute("DELETE FROM sync_state WHERE source = ?", (source,))
            if unregister:
                conn.execute("DELETE FROM source WHERE sid = ?", (source,))
        busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy and busy[0]:
            log.warning("write-ahead log not truncated after erasing a source: a reader is open")
        log.info("erased source %d: %d resources", source, erased)
        return int(erased)

    # -- audit -------------------------------------------------------------------------------
    def audit(
        self,
        *,
        user_id: str,
        action: str,
        patient_id: str | None,
        source: int | None,
        reason: str | None,
        event_id: str,
        at: datetime | None = None,
    ) -> int:
        """Append to the audit chain. `source`: the sid whose Patient `patient_id` is (None
        exactly when there is no patient); `at`: when (default now)."""
        with self.transaction() as conn:
            seq, digest = _audit.append(
                conn,
                user_id=user_id,
                action=action,
                patient_id=patient_id,
                source=source,
                reason=reason,
                event_id=event_id,
                at=at,
            )
        committed = self.audit_committed
        if committed is not None:
            # Inside an outer transaction (several openings audited at once) the entry is
            # not committed yet: its head is recorded when the outer transaction commits.
            self._transactions.after_commit(lambda: committed(seq, digest))
        return seq

    def audit_entries(
        self,
        *,
        only_not_uploaded: bool = False,
        limit: int = 1000,
        source: int | None = None,
        after_seq: int = 0,
    ) -> list[_audit.AuditEntry]:
        """Audit entries in chain order; `source`: only openings of that source's records
        with a sequence number above `after_seq` (a read-only source's upload mark)."""
        return _audit.entries(
            self.conn,
            only_not_uploaded=only_not_uploaded,
            limit=limit,
            source=source,
            after_seq=after_seq,
        )

    def audit_entry(self, seq: int) -> _audit.AuditEntry | None:
        """One entry of the chain by its sequence number."""
        return _audit.entry(self.conn, seq)

    def verify_audit_chain(self) -> int | None:
        return _audit.verify(self.conn)

    def audit_problems(self, expected_head: tuple[int, str] | None = None) -> list[str]:
        return _audit.problems(self.conn, expected_head=expected_head)

    def audit_head(self) -> int:
        return _audit.head(self.conn)

    # -- drafts (autosaved forms) ------------------------------------------------------------
    def save_draft(self, draft_id: str, kind: str, user_id: str, body: bytes) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO draft (id, kind, user_id, json, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (draft_id, kind, user_id, body, utc_now()),
            )

    def drafts(self, user_id: str | None = None) -> list[tuple[str, str, str, bytes, str]]:
        if user_id is None:
            rows = self.conn.execute("SELECT id, kind, user_id, json, updated_at FROM draft")
        else:
            rows = self.conn.execute(
                "SELECT id, kind, user_id, json, updated_at FROM draft WHERE user_id = ?",
                (user_id,),
            )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def delete_draft(self, draft_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM draft WHERE id = ?", (draft_id,))

    # -- outbox (field records waiting for the central record) --------------------------------
    def add_outbox(
        self,
        *,
        client_id: str,
        kind: str,
        patient_id: str | None,
        patient_source: int | None,
        user_id: str,
        payload: bytes,
        created_at: str | None = None,
        subject: bytes | None = None,
    ) -> int:
        """Queue a record; joins the caller's transaction when there is one (SECURITY.md 17).
        `patient_source`: the sid whose Patient `patient_id` is (the record itself always goes
        home). `subject`: who it is about as the officer saw them (`_outbox.py`)."""
        with self.transaction() as conn:
            return _outbox.add(
                conn,
                client_id=client_id,
                kind=kind,
                patient_id=patient_id,
                patient_source=patient_source,
                user_id=user_id,
                created_at=created_at or utc_now(),
                payload=payload,
                subject=subject,
            )

    def outbox_rows(
        self,
        *,
        kind: str | None = None,
        patient_id: str | None = None,
        patient_source: int | None = None,
        since: str | None = None,
        states: tuple[str, ...] | None = None,
    ) -> list[_outbox.OutboxRow]:
        return _outbox.rows(
            self.conn,
            kind=kind,
            patient_id=patient_id,
            patient_source=patient_source,
            since=since,
            states=states,
        )

    def outbox_row(self, client_id: str) -> _outbox.OutboxRow | None:
        return _outbox.get(self.conn, client_id)

    def requeue_outbox(
        self,
        client_id: str,
        *,
        payload: bytes | None = None,
        patient_id: str | None = None,
        patient_source: int | None = None,
        subject: bytes | None = None,
    ) -> bool:
        """Rejected -> pending; with a corrected `payload`, its person (`patient_id` of
        `patient_source`) and `subject` replace the row's."""
        with self.transaction() as conn:
            return _outbox.requeue(
                conn,
                client_id,
                payload=payload,
                patient_id=patient_id,
                patient_source=patient_source,
                subject=subject,
            )

    def discard_outbox(self, client_id: str, *, by: str) -> bool:
        with self.transaction() as conn:
            return _outbox.discard(conn, client_id, by=by, at=utc_now())

    # -- sync transitions (the SyncStore port in app/services/syncing.py builds on these) ----
    def held_versions(
        self, source: int, rtype: str, ids: Sequence[str]
    ) -> dict[str, tuple[str | None, str | None]]:
        """id -> (versionId, lastUpdated) for the ids `source`'s part of the cache holds."""
        return _sync_state.held_versions(self.conn, source, rtype, ids)

    def unsent_outbox(self) -> list[tuple[str, str, str | None, bytes]]:
        """(client_id, kind, patient_id, payload) of every record the centre has not accepted
        and nobody discarded: pending and rejected (what a sealed copy must exist for)."""
        return [
            (str(r[0]), str(r[1]), r[2], bytes(r[3]))
            for r in self.conn.execute(
                "SELECT client_id, kind, patient_id, payload FROM outbox"
                " WHERE state IN ('pending', 'rejected') ORDER BY seq"
            )
        ]

    def pending_outbox(self, limit: int) -> list[tuple[int, str, str, str | None, bytes, int]]:
        return _sync_state.pending(self.conn, limit)

    def record_outbox_attempt(self, seq: int, at: str) -> None:
        with self.transaction() as conn:
            _sync_state.record_attempt(conn, seq, at)

    def mark_outbox_sent(
        self, seq: int, response: bytes, resources: Iterable[dict[str, Any]], at: str
    ) -> None:
        """Sent + the server's answer + its copies of the resources, in one transaction.
        Records always go to the home source, so its copies are the home source's."""
        with self.transaction() as conn:
            self._put(conn, HOME_SOURCE, resources)
            _sync_state.mark_sent(conn, seq, response, at)

    def mark_outbox_rejected(self, seq: int, reason: str, response: bytes | None, at: str) -> None:
        with self.transaction() as conn:
            _sync_state.mark_rejected(conn, seq, reason, response, at)

    def repoint_patient(self, source: int, old_id: str, new_id: str) -> int:
        """`source` merged its Patient `old_id` into `new_id`: pending records follow."""
        with self.transaction() as conn:
            return _sync_state.repoint_patient(conn, source, old_id, new_id, HOME_SOURCE)

    def mark_audit_uploaded(self, event_ids: Sequence[str], at: str) -> None:
        with self.transaction() as conn:
            _audit.mark_uploaded(conn, list(event_ids), at)

"""The central record on disk: one SQLite file (WAL) holding every version of every resource.

Each version's JSON is stored exactly as served (meta stamped), so a search page is built by
concatenating stored bytes, never by re-serialising. `current` points at each resource's
latest version; `search_token` and `search_ref` index the current version only (rows are
replaced on every write), which keeps identifier and patient searches exact.

Only the server's event-loop thread uses the connection: writes are serialised, so a
transaction sees no concurrent writer and `lastUpdated` never goes backwards.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ._model import (
    DATE_PARAMS,
    ID_RE,
    PRECISION_US,
    STRING_PARAMS,
    SUPPORTED_TYPES,
    Clock,
    FhirError,
    Precision,
    dumps,
    index_dates,
    index_references,
    index_strings,
    index_tokens,
    instant_at,
    stamp,
    wall_clock_us,
)
from ._search import DateCondition, Query

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 3: string and date search keys (2: `lu` in microseconds; 1: ms)
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS version (
    seq INTEGER PRIMARY KEY,            -- global write order
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    vid INTEGER NOT NULL,
    lu INTEGER NOT NULL,                -- meta.lastUpdated, µs since the epoch, UTC
    method TEXT NOT NULL,               -- POST (create), PUT (update), DELETE
    body BLOB,                          -- the resource as served; NULL for a deletion
    current INTEGER NOT NULL            -- 1 for the latest version of its resource
);
-- Search keys of one version; rows of superseded versions stay and are filtered out by
-- joining on version.current, so a write never has to delete index rows.
CREATE TABLE IF NOT EXISTS search_token (
    rtype TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL, system TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (rtype, param, value, system, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS search_ref (
    rtype TEXT NOT NULL, path TEXT NOT NULL, target_id TEXT NOT NULL, target_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (rtype, path, target_id, target_type, seq)
) WITHOUT ROWID;
-- String search keys (normalised: case and accents folded) and date search keys (the value's
-- range at its written precision, in µs), as `search_token` holds tokens.
CREATE TABLE IF NOT EXISTS search_string (
    rtype TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (rtype, param, value, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS search_date (
    rtype TEXT NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (rtype, param, lo, hi, seq)
) WITHOUT ROWID;
-- Purposes of use declared by AuditEvents (v3-ActReason codes), and record reads checked
-- against them (sync/reference/_access.py): the "audited at the source" report.
CREATE TABLE IF NOT EXISTS purpose_of_use (
    n INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    patient_id TEXT,
    codes TEXT NOT NULL,                -- space-separated
    event_id TEXT NOT NULL,             -- the AuditEvent's id
    at INTEGER NOT NULL                 -- the event's lastUpdated, µs
);
CREATE INDEX IF NOT EXISTS purpose_by_client ON purpose_of_use (client_id, kind, patient_id, at);
CREATE TABLE IF NOT EXISTS record_read (
    n INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rtype TEXT NOT NULL,
    patient_id TEXT,
    at INTEGER NOT NULL,
    audited INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS client (
    client_id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('tablet', 'admin')),
    salt BLOB NOT NULL,
    secret_hash BLOB NOT NULL,
    revoked_at INTEGER,
    policy BLOB NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
"""
# Built after a bulk seed into an empty store (sorting once beats inserting 800k times).
_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS version_by_id ON version (rtype, rid, vid)",
    "CREATE INDEX IF NOT EXISTS version_by_time ON version (rtype, lu, seq)",
    "CREATE INDEX IF NOT EXISTS live_by_time ON version (rtype, lu, rid)"
    " WHERE current = 1 AND body IS NOT NULL",
)
_LIVE = "v.current = 1 AND v.body IS NOT NULL"  # must match live_by_time's WHERE exactly
_SEED_CHUNK = 2000
_KeyRows = list[tuple[Any, ...]]
_Rows = tuple[_KeyRows, ...]  # version, token, reference, string, date rows
_KEY_INSERTS = (
    "INSERT OR IGNORE INTO search_token VALUES (?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO search_ref VALUES (?, ?, ?, ?, ?)",
    "INSERT OR IGNORE INTO search_string VALUES (?, ?, ?, ?)",
    "INSERT OR IGNORE INTO search_date VALUES (?, ?, ?, ?, ?)",
)
# Beyond U+10FFFF: every string starting with a prefix sorts below prefix + this.
_PAST_ALL = "\U0010ffff"


def search_keys(
    rtype: str, resource: dict[str, Any], seq: int
) -> tuple[list[tuple[Any, ...]], ...]:
    """The rows of each `search_*` table (in `_KEY_INSERTS` order) for one version."""
    return (
        [(rtype, p, value, system, seq) for p, system, value in index_tokens(rtype, resource)],
        [(rtype, path, tid, ttype, seq) for path, ttype, tid in index_references(rtype, resource)],
        [(rtype, p, value, seq) for p, value in index_strings(rtype, resource)],
        [(rtype, p, lo, hi, seq) for p, lo, hi in index_dates(rtype, resource)],
    )


@dataclass(frozen=True)
class Current:
    rtype: str
    rid: str
    vid: int
    lu: int
    deleted: bool
    body: bytes | None


@dataclass(frozen=True)
class Version:
    seq: int
    rtype: str
    rid: str
    vid: int
    lu: int
    method: str
    body: bytes | None


@dataclass(frozen=True)
class Written:
    rtype: str
    rid: str
    vid: int
    lu: int
    body: bytes | None
    created: bool


@dataclass(frozen=True)
class ClientRow:
    client_id: str
    role: str
    salt: bytes
    secret_hash: bytes
    revoked_at: int | None
    policy: dict[str, Any]
    created_at: int


class Store:
    def __init__(
        self, data_dir: Path, precision: Precision = "us", clock: Clock = wall_clock_us
    ) -> None:
        self.clock = clock  # µs since the epoch: stamps and the `Date` header read it
        if precision not in PRECISION_US:
            raise ValueError(f"timestamp precision must be one of {', '.join(PRECISION_US)}")
        self.precision: Precision = precision
        self._unit_us = PRECISION_US[precision]
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "central-record.sqlite3"
        # Only the event-loop thread uses the connection, but that is not always the thread
        # that opened it (the test runner starts servers from another thread).
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives a killed process (only a power cut can lose the last
        # commits): enough for a stand-in central record, and a write costs no fsync.
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA cache_size = -131072")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        self.conn.executescript(_TABLES)
        self._empty = self.conn.execute("SELECT 1 FROM version LIMIT 1").fetchone() is None
        if not self._empty:
            self._create_indexes()
        self._upgrade()
        self._last_us = int(self._meta("last_us") or b"0")
        key = self._meta("page_key")
        if key is None:
            key = secrets.token_bytes(32)
            self.conn.execute("INSERT INTO meta VALUES ('page_key', ?)", (key,))
        self.page_key: bytes = key
        row = self.conn.execute("SELECT max(seq) FROM version").fetchone()
        self._next_seq = int(row[0] or 0) + 1

    def _upgrade(self) -> None:
        """Schema 1 stored `lu` in milliseconds: scale it (stored bodies keep their text).
        Schema 2 had no string or date search keys: index the live resources that have some."""
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if version == 1:
            last_ms = int(self._meta("last_ms") or b"0")
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("UPDATE version SET lu = lu * 1000")
            self.conn.execute("DELETE FROM meta WHERE key = 'last_ms'")
            self.conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_us', ?)", (str(last_ms * 1000),)
            )
            self.conn.execute("PRAGMA user_version = 2")
            self.conn.execute("COMMIT")
            version = 2
        if version == 2:
            self.conn.execute("BEGIN IMMEDIATE")
            types = sorted(set(STRING_PARAMS) | set(DATE_PARAMS))
            rows = self.conn.execute(
                f"SELECT v.seq, v.rtype, v.body FROM version v WHERE {_LIVE}"
                f" AND v.rtype IN ({','.join('?' * len(types))})",
                types,
            ).fetchall()
            for seq, rtype, body in rows:
                _, _, strings, dates = search_keys(rtype, orjson.loads(body), seq)
                self.conn.executemany(_KEY_INSERTS[2], strings)
                self.conn.executemany(_KEY_INSERTS[3], dates)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.execute("COMMIT")

    def _create_indexes(self) -> None:
        for sql in _INDEXES:
            self.conn.execute(sql)

    def close(self) -> None:
        self.conn.close()

    def _meta(self, key: str) -> bytes | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = row[0]
        return bytes(value) if isinstance(value, bytes) else str(value).encode()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT, or ROLLBACK on any exception (all-or-nothing writes)."""
        if self._empty:  # the first write to a new store: indexes are needed from now on
            self._create_indexes()
            self._empty = False
        self.conn.execute("BEGIN IMMEDIATE")
        next_seq, last_us = self._next_seq, self._last_us
        try:
            yield self.conn
            self.conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_us', ?)", (str(self._last_us),)
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._next_seq, self._last_us = next_seq, last_us
            raise

    # -- time ------------------------------------------------------------------------------

    def next_instant(self) -> int:
        """Now in µs, strictly after the last instant handed out (the wall clock may step
        back, and two quick writes may read the same clock tick).

        Every write (and every seeded resource) gets its own instant, as on HAPI and the
        cloud servers; only the entries of one transaction share theirs.
        """
        self._last_us = max(self.clock(), self._last_us + 1)
        return self._last_us

    def instant_text(self, us: int) -> str:
        """`meta.lastUpdated` text of a stored (truncated) instant, at the store's precision."""
        return instant_at(us, self.precision)

    def coarse(self, us: int) -> int:
        """`us` truncated to the stamping precision: what a coarse server stores and serves
        (the clock behind `next_instant` stays fine-grained, so order is kept)."""
        return us - us % self._unit_us

    # -- reads -----------------------------------------------------------------------------

    def read(self, rtype: str, rid: str) -> Current | None:
        row = self.conn.execute(
            "SELECT vid, lu, body FROM version WHERE rtype = ? AND rid = ?"
            " ORDER BY vid DESC LIMIT 1",
            (rtype, rid),
        ).fetchone()
        if row is None:
            return None
        return Current(rtype, rid, row[0], row[1], row[2] is None, row[2])

    def vread(self, rtype: str, rid: str, vid: int) -> Version | None:
        row = self.conn.execute(
            "SELECT seq, lu, method, body FROM version WHERE rtype = ? AND rid = ? AND vid = ?",
            (rtype, rid, vid),
        ).fetchone()
        return None if row is None else Version(row[0], rtype, rid, vid, row[1], row[2], row[3])

    def existing_ids(self, rtype: str, ids: set[str]) -> set[str]:
        """Which of `ids` are live (not deleted) resources of `rtype`."""
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT rid FROM version v WHERE rtype = ? AND rid IN ({marks}) AND {_LIVE}",
            (rtype, *ids),
        )
        return {r[0] for r in rows}

    def _where(self, q: Query) -> tuple[str, str, list[Any]]:
        """FROM, WHERE and arguments for a search.

        Identifier and reference filters are selective, so the first one drives the query
        through a CROSS JOIN (SQLite keeps that join order); otherwise the planner would
        walk the whole type in sort order and test each row.
        """
        clauses = ["v.rtype = ?", _LIVE]
        args: list[Any] = [q.rtype]
        for ors in q.dates:
            parts = []
            for d in ors:
                if d.prefix == "ge":
                    parts.append("v.lu >= ?")
                    args.append(d.lo_us)
                elif d.prefix == "gt":
                    parts.append("v.lu >= ?")
                    args.append(d.hi_us)
                elif d.prefix == "lt":
                    parts.append("v.lu < ?")
                    args.append(d.lo_us)
                elif d.prefix == "le":
                    parts.append("v.lu < ?")
                    args.append(d.hi_us)
                elif d.prefix == "eq":
                    parts.append("(v.lu >= ? AND v.lu < ?)")
                    args += [d.lo_us, d.hi_us]
                else:  # ne
                    parts.append("(v.lu < ? OR v.lu >= ?)")
                    args += [d.lo_us, d.hi_us]
            clauses.append("(" + " OR ".join(parts) + ")")
        for ids in q.ids:
            clauses.append(f"v.rid IN ({','.join('?' * len(ids))})")
            args += ids
        subqueries: list[tuple[str, list[Any]]] = []
        for param, tokens in q.tokens:
            parts, targs = [], []
            for system, value in tokens:
                cond = []
                if value is not None:
                    cond.append("value = ?")
                    targs.append(value)
                if system is not None:
                    cond.append("system = ?")
                    targs.append(system)
                parts.append("(" + " AND ".join(cond or ["1"]) + ")")
            subqueries.append(
                (
                    "SELECT seq FROM search_token WHERE rtype = ? AND param = ? AND ("
                    + " OR ".join(parts)
                    + ")",
                    [q.rtype, param, *targs],
                )
            )
        for param, prefixes in q.strings:
            parts = ["(value >= ? AND value < ?)"] * len(prefixes)
            subqueries.append(
                (
                    "SELECT seq FROM search_string WHERE rtype = ? AND param = ? AND ("
                    + " OR ".join(parts)
                    + ")",
                    [q.rtype, param, *(x for p in prefixes for x in (p, p + _PAST_ALL))],
                )
            )
        for param, conditions in q.ranges:
            parts, dargs = [], []
            for d in conditions:
                sql, values = _range_condition(d)
                parts.append(sql)
                dargs += values
            subqueries.append(
                (
                    "SELECT seq FROM search_date WHERE rtype = ? AND param = ? AND ("
                    + " OR ".join(parts)
                    + ")",
                    [q.rtype, param, *dargs],
                )
            )
        for paths, target, refs in q.refs:
            parts, rargs = [], []
            for rtype, rid in refs:
                rtype = rtype or target
                if rtype:
                    parts.append("(target_id = ? AND target_type = ?)")
                    rargs += [rid, rtype]
                else:
                    parts.append("target_id = ?")
                    rargs.append(rid)
            subqueries.append(
                (
                    "SELECT seq FROM search_ref WHERE rtype = ? AND path IN "
                    f"({','.join('?' * len(paths))}) AND ({' OR '.join(parts)})",
                    [q.rtype, *paths, *rargs],
                )
            )
        if not subqueries:
            return "version v", " AND ".join(clauses), args
        (drive_sql, drive_args), rest = subqueries[0], subqueries[1:]
        for sql, sargs in rest:
            clauses.append(f"v.seq IN ({sql})")
            args += sargs
        from_sql = f"(SELECT DISTINCT seq FROM ({drive_sql})) AS m CROSS JOIN version v"
        return from_sql, "v.seq = m.seq AND " + " AND ".join(clauses), [*drive_args, *args]

    def search(
        self, q: Query, *, after: tuple[int, str] | None, offset: int, limit: int
    ) -> list[tuple[str, int, bytes]]:
        """One page of (id, lastUpdated ms, body), by keyset `after` or by `offset`."""
        from_sql, where, args = self._where(q)
        cmp, direction = ("<", "DESC") if q.descending else (">", "ASC")
        if q.sort == "lu":
            order = f"v.lu {direction}, v.rid {direction}"
            if after is not None:
                where += f" AND (v.lu, v.rid) {cmp} (?, ?)"
                args += [after[0], after[1]]
        else:
            order = f"v.rid {direction}"
            if after is not None:
                where += f" AND v.rid {cmp} ?"
                args.append(after[1])
        sql = (
            f"SELECT v.rid, v.lu, v.body FROM {from_sql} WHERE {where} ORDER BY {order}"
            " LIMIT ? OFFSET ?"
        )
        return self.conn.execute(sql, (*args, limit, offset)).fetchall()

    def count(self, q: Query) -> int:
        from_sql, where, args = self._where(q)
        sql = f"SELECT count(*) FROM {from_sql} WHERE {where}"
        return int(self.conn.execute(sql, args).fetchone()[0])

    def match_ids(self, q: Query, limit: int) -> list[tuple[str, int, int]]:
        """(id, versionId, lastUpdated) of up to `limit` matches (conditional create)."""
        from_sql, where, args = self._where(q)
        sql = f"SELECT v.rid, v.vid, v.lu FROM {from_sql} WHERE {where} LIMIT ?"
        return self.conn.execute(sql, (*args, limit)).fetchall()

    def history(
        self,
        rtype: str,
        since: int | None,
        *,
        newest_first: bool,
        after: tuple[int, int] | None,
        offset: int,
        limit: int,
    ) -> list[Version]:
        where: list[str] = ["rtype = ?"]
        args: list[Any] = [rtype]
        if since is not None:
            where.append("lu >= ?")
            args.append(since)
        cmp, direction = ("<", "DESC") if newest_first else (">", "ASC")
        if after is not None:
            where.append(f"(lu, seq) {cmp} (?, ?)")
            args += [after[0], after[1]]
        rows = self.conn.execute(
            f"SELECT seq, rid, vid, lu, method, body FROM version WHERE {' AND '.join(where)}"
            f" ORDER BY lu {direction}, seq {direction} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [Version(r[0], rtype, r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def history_count(self, rtype: str, since: int | None) -> int:
        sql = "SELECT count(*) FROM version WHERE rtype = ?"
        args: list[Any] = [rtype]
        if since is not None:
            sql += " AND lu >= ?"
            args.append(since)
        return int(self.conn.execute(sql, args).fetchone()[0])

    def live_bodies(self, rtype: str) -> Iterator[bytes]:
        """The current body of every live resource of one type (audit checks, small types)."""
        for (body,) in self.conn.execute(
            f"SELECT v.body FROM version v WHERE v.rtype = ? AND {_LIVE}", (rtype,)
        ):
            yield bytes(body)

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            f"SELECT rtype, count(*) FROM version v WHERE {_LIVE} GROUP BY rtype"
        )
        return {r[0]: r[1] for r in rows}

    # -- writes (inside transaction()) ------------------------------------------------------

    def write(
        self, rtype: str, rid: str, resource: dict[str, Any] | None, lu: int, *, method: str
    ) -> Written:
        """Add a version (a deletion when `resource` is None) and index its search keys.

        `lu` is truncated to the store's precision here, so every writer stamps alike."""
        lu = self.coarse(lu)
        row = self.conn.execute(
            "SELECT seq, vid, body IS NULL FROM version WHERE rtype = ? AND rid = ?"
            " ORDER BY vid DESC LIMIT 1",
            (rtype, rid),
        ).fetchone()
        vid = 1 if row is None else row[1] + 1
        created = row is None or bool(row[2])
        if row is not None:
            self.conn.execute("UPDATE version SET current = 0 WHERE seq = ?", (row[0],))
        body = None if resource is None else dumps(stamp(resource, rid, vid, self.instant_text(lu)))
        seq = self._next_seq
        self._next_seq += 1
        self.conn.execute(
            "INSERT INTO version VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            (seq, rtype, rid, vid, lu, method, body),
        )
        if resource is not None:
            for sql, rows in zip(_KEY_INSERTS, search_keys(rtype, resource, seq), strict=True):
                self.conn.executemany(sql, rows)
        return Written(rtype, rid, vid, lu, body, created)

    # -- seeding ---------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT 1 FROM version LIMIT 1").fetchone() is None

    def seed_ndjson(self, seed_dir: Path) -> dict[str, int]:
        """Load `*.ndjson` (one resource a line, FHIR Bulk Data style) in one transaction.

        Ids are kept (or minted when absent); versionId is 1 and lastUpdated is the server
        time at which each resource is loaded (one microsecond apart at least), as after a
        real bulk import.
        """
        files = sorted(seed_dir.glob("*.ndjson"))
        if not files:
            raise FhirError(400, "invalid", f"no .ndjson files in {seed_dir}")
        counts: dict[str, int] = {}
        bulk = self._empty  # indexes not built yet: load first, sort them in once at the end
        self._empty = False
        self.conn.execute("BEGIN IMMEDIATE")
        # Parsing runs one chunk ahead in a worker thread: sqlite3 releases the GIL while it
        # steps, so JSON work and inserts overlap on a 2-core machine (about a third faster).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seed") as pool:
            try:
                pending: Future[_Rows] | None = None
                for chunk, name in _chunks(files):
                    ready = pool.submit(self._parse_chunk, chunk, name, counts)
                    if pending is not None:
                        self._insert_chunk(pending.result())
                    pending = ready
                if pending is not None:
                    self._insert_chunk(pending.result())
                if bulk:
                    try:
                        self._create_indexes()
                    except sqlite3.IntegrityError:
                        raise FhirError(400, "duplicate", "the same id appears twice") from None
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('last_us', ?)", (str(self._last_us),)
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._empty = bulk
                self._next_seq = 1 + int(
                    self.conn.execute("SELECT max(seq) FROM version").fetchone()[0] or 0
                )
                raise
        return counts

    def _parse_chunk(self, lines: list[bytes], name: str, counts: dict[str, int]) -> _Rows:
        versions: list[tuple[Any, ...]] = []
        keys: tuple[list[tuple[Any, ...]], ...] = tuple([] for _ in _KEY_INSERTS)
        for line in lines:
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise FhirError(400, "invalid", f"{name}: a line is not JSON") from None
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            if rtype not in SUPPORTED_TYPES:
                raise FhirError(400, "not-supported", f"{name}: unsupported resourceType")
            rid = resource.get("id") or str(uuid.uuid4())
            if not isinstance(rid, str) or not ID_RE.match(rid):
                raise FhirError(400, "invalid", f"{name}: a resource has an invalid id")
            seq = self._next_seq
            self._next_seq += 1
            lu = self.coarse(self.next_instant())
            body = dumps(stamp(resource, rid, 1, self.instant_text(lu)))
            versions.append((seq, rtype, rid, 1, lu, "POST", body))
            for into, rows in zip(keys, search_keys(rtype, resource, seq), strict=True):
                into += rows
            counts[rtype] = counts.get(rtype, 0) + 1
        return (versions, *keys)

    def _insert_chunk(self, rows: _Rows) -> None:
        versions, *keys = rows
        try:
            self.conn.executemany("INSERT INTO version VALUES (?, ?, ?, ?, ?, ?, ?, 1)", versions)
        except sqlite3.IntegrityError:
            raise FhirError(400, "duplicate", "the same id appears twice") from None
        for sql, key_rows in zip(_KEY_INSERTS, keys, strict=True):
            self.conn.executemany(sql, key_rows)

    # -- purpose of use and record reads (_access.py) ----------------------------------------

    def add_purpose(
        self,
        client_id: str,
        kind: str,
        patient_id: str | None,
        codes: tuple[str, ...],
        event_id: str,
        at_us: int,
    ) -> None:
        self.conn.execute(
            "INSERT INTO purpose_of_use (client_id, kind, patient_id, codes, event_id, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (client_id, kind, patient_id, " ".join(codes), event_id, at_us),
        )

    def has_purpose(self, client_id: str, kind: str, patient_id: str | None, since: int) -> bool:
        """A purpose of use of `kind` from `client_id` at or after `since` (for `patient_id`,
        when given)."""
        sql = "SELECT 1 FROM purpose_of_use WHERE client_id = ? AND kind = ? AND at >= ?"
        args: list[Any] = [client_id, kind, since]
        if patient_id is not None:
            sql += " AND patient_id = ?"
            args.append(patient_id)
        return self.conn.execute(sql + " LIMIT 1", args).fetchone() is not None

    def add_read(
        self,
        client_id: str,
        kind: str,
        rtype: str,
        patient_id: str | None,
        at_us: int,
        audited: bool,
    ) -> None:
        self.conn.execute(
            "INSERT INTO record_read (client_id, kind, rtype, patient_id, at, audited)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (client_id, kind, rtype, patient_id, at_us, int(audited)),
        )

    def access_report(self) -> dict[str, Any]:
        """Purposes of use recorded, how many record reads were audited, and the ones that
        were not (oldest first)."""
        purposes = [
            {
                "client_id": r[0],
                "kind": r[1],
                "patient_id": r[2],
                "codes": r[3].split(),
                "event": f"AuditEvent/{r[4]}",
                "at": self.instant_text(r[5]),
            }
            for r in self.conn.execute(
                "SELECT client_id, kind, patient_id, codes, event_id, at FROM purpose_of_use"
                " ORDER BY n"
            )
        ]
        counts = dict.fromkeys(("audited", "unaudited"), 0)
        for audited, count in self.conn.execute(
            "SELECT audited, count(*) FROM record_read GROUP BY audited"
        ):
            counts["audited" if audited else "unaudited"] = count
        unaudited = [
            {
                "client_id": r[0],
                "kind": r[1],
                "type": r[2],
                "patient_id": r[3],
                "at": self.instant_text(r[4]),
            }
            for r in self.conn.execute(
                "SELECT client_id, kind, rtype, patient_id, at FROM record_read"
                " WHERE audited = 0 ORDER BY n"
            )
        ]
        return {"purposes": purposes, "reads": counts, "unaudited": unaudited}

    # -- clients (device registry) ---------------------------------------------------------

    def client(self, client_id: str) -> ClientRow | None:
        row = self.conn.execute(
            "SELECT client_id, role, salt, secret_hash, revoked_at, policy, created_at"
            " FROM client WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        return None if row is None else _client_row(row)

    def clients(self) -> list[ClientRow]:
        rows = self.conn.execute(
            "SELECT client_id, role, salt, secret_hash, revoked_at, policy, created_at"
            " FROM client ORDER BY client_id"
        )
        return [_client_row(r) for r in rows]

    def delete_client(self, client_id: str) -> bool:
        cur = self.conn.execute("DELETE FROM client WHERE client_id = ?", (client_id,))
        return cur.rowcount > 0

    def put_client(self, row: ClientRow) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO client VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                row.client_id,
                row.role,
                row.salt,
                row.secret_hash,
                row.revoked_at,
                dumps(row.policy),
                row.created_at,
            ),
        )


def _range_condition(d: DateCondition) -> tuple[str, list[int]]:
    """A date search value against an indexed range [lo, hi) (R4 search.html#prefix): `eq`
    the search range contains it, `gt`/`lt` it reaches past the search range's end/start,
    `ge`/`le` either of those, `ne` not `eq`."""
    contains = "(lo >= ? AND hi <= ?)"
    if d.prefix == "eq":
        return contains, [d.lo_us, d.hi_us]
    if d.prefix == "ne":
        return f"NOT {contains}", [d.lo_us, d.hi_us]
    if d.prefix == "gt":
        return "hi > ?", [d.hi_us]
    if d.prefix == "lt":
        return "lo < ?", [d.lo_us]
    if d.prefix == "ge":
        return f"(hi > ? OR {contains})", [d.hi_us, d.lo_us, d.hi_us]
    return f"(lo < ? OR {contains})", [d.lo_us, d.lo_us, d.hi_us]  # le


def _chunks(files: list[Path]) -> Iterator[tuple[list[bytes], str]]:
    for path in files:
        with path.open("rb") as fh:
            chunk: list[bytes] = []
            for line in fh:
                if line.strip():
                    chunk.append(line)
                if len(chunk) >= _SEED_CHUNK:
                    yield chunk, path.name
                    chunk = []
            if chunk:
                yield chunk, path.name


def _client_row(row: tuple[Any, ...]) -> ClientRow:
    return ClientRow(
        row[0], row[1], bytes(row[2]), bytes(row[3]), row[4], orjson.loads(row[5]), row[6]
    )

"""The one place a SQLCipher connection is opened, keyed and configured.

Rules from SECURITY.md items 1-6 and 9: the raw 256-bit key is the very first statement, the
library must prove it is SQLCipher (`cipher_version`), SQLCipher 4 defaults are pinned so a
cache written with other settings fails to open instead of being misread, temp data stays in
memory, extension loading stays off.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlcipher3

from app.errors import StoreUnavailable, UnlockFailed

log = logging.getLogger("kerbside.store")

_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")

# Primary SQLite result codes (low byte of the extended code) that mean "the environment",
# not a bug of ours. Text is what an officer sees: no paths, no values.
_KNOWN_CODES = {
    3: "the cache file is not accessible (permission denied)",
    5: "the cache is busy in another process; try again",
    6: "the cache is locked; try again",
    8: "the cache is read-only",
    10: "a disk I/O error stopped the cache; nothing was saved",
    11: "the cache file is damaged",
    13: "the disk is full; nothing was saved",
    14: "the cache file cannot be opened",
    26: "the cache cannot be read with this key",
}

if TYPE_CHECKING:  # sqlcipher3 mirrors the sqlite3 DB-API and ships no type stubs
    from sqlite3 import Connection, DatabaseError
else:
    Connection = sqlcipher3.dbapi2.Connection
    DatabaseError = sqlcipher3.dbapi2.DatabaseError


def translate_error(exc: BaseException) -> BaseException:
    """Map a sqlcipher3 error to a known error when it is the environment's fault."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return exc
    primary = code & 0xFF
    if primary == 26:
        return UnlockFailed("the cache could not be unlocked with this key")
    if primary in _KNOWN_CODES:
        return StoreUnavailable(_KNOWN_CODES[primary])
    return exc


def sqlcipher_version() -> str | None:
    """The SQLCipher version the cache library reports (None: it is not SQLCipher)."""
    conn = sqlcipher3.connect(":memory:")
    try:
        row = conn.execute("PRAGMA cipher_version").fetchone()
    finally:
        conn.close()
    return str(row[0]) if row and row[0] else None


def connect(path: Path, key: bytes) -> Connection:
    """Open and key a connection; raises UnlockFailed on a wrong key, StoreUnavailable on I/O."""
    hex_key = key.hex()
    if len(key) != 32 or not _HEX_KEY.match(hex_key):
        raise ValueError("the data key must be 32 bytes")
    try:
        conn = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=True)
    except sqlcipher3.dbapi2.Error as exc:
        raise translate_error(exc) from exc
    try:
        # A wrong key makes SQLCipher print decryption errors on stderr; we report it ourselves.
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"x'{hex_key}'\"")
        row = conn.execute("PRAGMA cipher_version").fetchone()
        if not row or not row[0]:
            raise StoreUnavailable("the database library is not SQLCipher; refusing to run")
        conn.execute("PRAGMA cipher_compatibility = 4")
        conn.execute("PRAGMA cipher_plaintext_header_size = 0")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA temp_store = MEMORY")
        if conn.execute("PRAGMA temp_store").fetchone()[0] != 2:
            raise StoreUnavailable("temporary storage could not be kept in memory")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreUnavailable("the cache could not switch to write-ahead logging")
        # FULL: a clinical record acknowledged as saved must survive power loss (SECURITY 17).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA trusted_schema = OFF")
        # Deleted rows and freed pages are overwritten with zeros, so what is erased (a
        # source that is removed, a person deleted centrally) is not left in free space for
        # anyone holding the key; on from a cache's first write, or stale copies from B-tree
        # rebalancing survive the delete (tests/unit/test_cache_by_source.py).
        conn.execute("PRAGMA secure_delete = ON")
        if conn.execute("PRAGMA secure_delete").fetchone()[0] != 1:
            raise StoreUnavailable("deleted data could not be set to be overwritten")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlcipher3.dbapi2.Error):
            raise translate_error(exc) from exc
        raise
    return conn


class TransactionManager:
    """BEGIN IMMEDIATE ... COMMIT around a block; nested blocks join the outer transaction.

    IMMEDIATE takes the write lock up front, so a writer never fails half-way with SQLITE_BUSY
    after it has read; `isolation_level=None` keeps the driver from opening transactions itself.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._depth = 0
        self._owner = threading.get_ident()
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run `action` once the outermost transaction open now has committed (dropped if it
        rolls back); at once when none is open. For what must follow a commit, never
        precede it (the audit chain's head kept outside the cache)."""
        if self._depth:
            self._after_commit.append(action)
        else:
            action()

    @contextmanager
    def __call__(self) -> Iterator[Connection]:
        if threading.get_ident() != self._owner:
            raise RuntimeError("a Store connection is used from the thread that opened it only")
        if self._depth:
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlcipher3.dbapi2.Error as exc:
            raise translate_error(exc) from exc
        self._depth = 1
        try:
            yield self._conn
        except BaseException as exc:
            self._depth = 0
            self._after_commit.clear()
            try:
                self._conn.execute("ROLLBACK")
            except sqlcipher3.dbapi2.Error:  # the transaction may already be gone (I/O error)
                log.warning("rollback failed after an error")
            if isinstance(exc, sqlcipher3.dbapi2.Error | sqlite3.Error):
                raise translate_error(exc) from exc
            raise
        else:
            self._depth = 0
            actions, self._after_commit = self._after_commit, []
            try:
                self._conn.execute("COMMIT")
            except sqlcipher3.dbapi2.Error as exc:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlcipher3.dbapi2.Error:
                    pass
                raise translate_error(exc) from exc
            for action in actions:
                action()


def run_script(conn: Connection, script: str) -> None:
    """Run `;`-separated DDL inside the caller's transaction.

    `executescript` would COMMIT first and run outside our transaction, so a failed migration
    could leave half a schema behind. Our DDL holds no `;` inside literals.
    """
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)

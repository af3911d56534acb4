"""SIGKILL inside the cache migration to schema 5 (the cache keyed by source): the schema edit
and every copy are in one transaction, so a kill at any point leaves the cache as the version
before wrote it, whole, and the next start migrates it from the beginning."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.store import SCHEMA_VERSION, Store
from app.store._connection import connect
from tests.support.releases import cache_contents, raw_cache_contents, release_key

# Killed from inside: after the resource table's schema is rewritten and its old key dropped
# (the riskiest state), and after all of version 5's work, just before its COMMIT.
CHILD = """
import os, signal, sys
from pathlib import Path
from app.store import Store, _migrations
target = getattr(_migrations, sys.argv[3])
def killed(conn):
    target(conn)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(_migrations, sys.argv[3], killed)
Store.open(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
"""


def _schema(conn: Any) -> dict[str, Any]:
    return {
        "version": conn.execute("PRAGMA user_version").fetchone()[0],
        "master": sorted(conn.execute("SELECT type, name, sql FROM sqlite_master")),
        "integrity": conn.execute("PRAGMA integrity_check").fetchall(),
    }


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("point", ["_v5_resource_key", "_v5_person_keys"])
def test_a_kill_inside_the_migration_leaves_the_old_schema_whole(
    release_8e74f4c: Path, point: str
) -> None:
    before = raw_cache_contents(release_8e74f4c)
    profile, key = release_key(release_8e74f4c)
    # Versions 3 and 4 (the source table, the counts) are their own, earlier transactions:
    # run them first, as the release before this one left caches, so what the kill must
    # preserve is version 4.
    conn = connect(profile.cache_path, key)
    try:
        from app.store._migrations import MIGRATIONS

        conn.execute("BEGIN IMMEDIATE")
        for version in (3, 4):
            MIGRATIONS[version - 1](conn)
        conn.execute("PRAGMA user_version = 4")
        conn.execute("COMMIT")
        old = _schema(conn)
    finally:
        conn.close()
    assert old["version"] == 4 and old["integrity"] == [("ok",)]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(profile.cache_path), key.hex(), point],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    conn = connect(profile.cache_path, key)
    try:
        assert _schema(conn) == old  # the version, every table and index as they were
        assert cache_contents(conn, source_column=False) == before
    finally:
        conn.close()
    with Store.open(profile.cache_path, key) as store:  # the next start migrates it whole
        assert store.schema_version == SCHEMA_VERSION
        assert cache_contents(store.conn, source_column=True) == before
        assert store.check_integrity()

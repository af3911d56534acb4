"""The writer's floor: what storing a cohort's resource rows costs with nothing else to do.

    .venv/bin/python tests/bench/bench_write_floor.py [--patients 100000]

The cohort's NDJSON (bench_sync's, generated when missing) is parsed and turned into
`resource` rows (`row_of`: the line's bytes kept, packed by `_codec`) beforehand, all in
memory; then the rows alone are inserted, 20,000 a commit, into an empty cache with the bulk
load's settings (`Store.begin_bulk_load`: no search index, no secondary index, no count
triggers), the same rows with their JSON unpacked (as the cache kept it before packing), into
the cache without its `(source, type, id)` key, and into plain SQLite with the key. No
parsing, no preparation, no index build, no network: the least any design that keeps one
row per resource can take, to hold against issue 13's "at least 0.6x the download-and-parse
limit" (bench_sync.py's `bulk_limit_s`).

Last line: one JSON object (rows, parse_s, and seconds and microseconds a row per arm).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from app.store import Store  # noqa: E402
from app.store._codec import unpack  # noqa: E402
from app.store._resources import SCHEMA, row_of  # noqa: E402
from tests.bench import bench_sync  # noqa: E402

INSERT = (
    "INSERT OR IGNORE INTO resource (source, type, id, version_id, last_updated, patient_id,"
    " json) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
COMMIT_ROWS = 20_000


def load_rows(cohort: Path) -> list[tuple[Any, ...]]:
    """The rows as the store writes them: JSON packed (`_codec.pack`, inside `row_of`)."""
    rows = []
    for path in sorted(cohort.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if line.strip():
                rows.append((1, *row_of(orjson.loads(line), line)))
    return rows


def unpacked(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The same rows with their JSON as received, as the store kept it before packing."""
    return [(*row[:-1], unpack(row[-1])) for row in rows]


def insert_all(conn: Any, rows: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), COMMIT_ROWS):
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows[start : start + COMMIT_ROWS])
        conn.execute("COMMIT")
    return time.perf_counter() - started


def sqlcipher_arm(directory: Path, rows: list[tuple[Any, ...]], *, keyed: bool) -> float:
    with Store.create(directory / "cache.db", os.urandom(32)) as store:
        store.begin_bulk_load()
        if not keyed:
            store.conn.execute("DROP INDEX resource_key")
        return insert_all(store.conn, rows)


def plain_arm(directory: Path, rows: list[tuple[Any, ...]]) -> float:
    conn = sqlite3.connect(directory / "plain.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -65536")
        conn.executescript(SCHEMA)
        conn.execute("DROP INDEX resource_by_patient")  # as a bulk load drops it
        return insert_all(conn, rows)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cohort = bench_sync.cohort(args.patients, args.seed)
    started = time.perf_counter()
    rows = load_rows(cohort)
    parse_s = time.perf_counter() - started
    plain_rows = unpacked(rows)
    json_mb = sum(len(r[-1]) for r in plain_rows) / 1e6
    packed_mb = sum(len(r[-1]) for r in rows) / 1e6
    print(
        f"{len(rows)} rows parsed, built and packed in {parse_s:.2f} s"
        f" ({json_mb:.0f} MB of JSON packed to {packed_mb:.0f} MB)"
    )
    figures: dict[str, Any] = {"patients": args.patients, "rows": len(rows)}
    figures["parse_s"] = round(parse_s, 2)
    figures["json_mb"] = round(json_mb)
    figures["packed_mb"] = round(packed_mb)
    arms = (
        ("sqlcipher", lambda d: sqlcipher_arm(d, rows, keyed=True)),
        ("sqlcipher_unpacked", lambda d: sqlcipher_arm(d, plain_rows, keyed=True)),
        ("sqlcipher_no_key", lambda d: sqlcipher_arm(d, rows, keyed=False)),
        ("plain_sqlite", lambda d: plain_arm(d, rows)),
    )
    for name, arm in arms:
        with tempfile.TemporaryDirectory(dir=ROOT / "bench-data") as tmp:
            seconds = arm(Path(tmp))
        per_row = seconds / len(rows) * 1e6
        print(f"{name}: {seconds:.2f} s ({per_row:.1f} us a row)")
        figures[f"{name}_s"] = round(seconds, 2)
        figures[f"{name}_us_per_row"] = round(per_row, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

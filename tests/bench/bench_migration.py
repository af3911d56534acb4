"""How long the first unlock's schema migration takes on a large cache made by an earlier release.

1. Make the cache with that release's code first on the path (its own store API):

       git archive <release> | tar -x -C /tmp/rel
       PYTHONPATH=/tmp/rel .venv/bin/python tests/bench/bench_migration.py --make DIR \\
           --patients 100000

   (a cohort generated under DIR, loaded through that release's bulk-load path, with sync
   cursors, sync state, 50 audit entries and one waiting record, as a synced tablet has).
2. Time it with this code: `.venv/bin/python tests/bench/bench_migration.py DIR`. A copy of
   DIR's cache is opened with `Store.open` (every pending migration, one transaction each);
   then the counts, cursors, audit chain and `PRAGMA integrity_check` are checked.

Prints figures, then ONE JSON line: patients, resources, from_schema, to_schema,
migrate_wall_s, migrate_cpu_s, rss_mb, size_before_mb, size_after_mb, audit_ok, integrity_ok.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))


def make(directory: Path, patients: int, seed: int) -> None:
    """With an earlier release's code: a cache through its bulk-load path (its API: no
    source argument), plus what a synced tablet holds."""
    import orjson

    from app.fhir import CACHED_TYPES
    from app.store import Store, row_of
    from app.synthetic import generate_cohort

    cohort = directory / f"cohort-{patients}-{seed}"
    if not (cohort / "Patient.ndjson").exists():
        generate_cohort(patients, seed, cohort)
    for stale in directory.glob("cache.db*"):
        stale.unlink()
    key = os.urandom(32)
    store: Any = Store.create(directory / "cache.db", key)
    (directory / "key.bin").write_bytes(key)
    store.begin_bulk_load()
    for rtype in CACHED_TYPES:
        path = cohort / f"{rtype}.ndjson"
        if not path.exists():
            continue
        batch = []
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    batch.append(row_of(orjson.loads(line), line.strip()))
                if len(batch) >= 5000:
                    store.put_rows(batch, into_empty=True)
                    batch = []
        if batch:
            store.put_rows(batch, into_empty=True)
    store.finish_bulk_load()
    for rtype in ("Patient", "Flag", "CarePlan"):
        store.apply_page(rtype, [], "2026-11-20T10:00:00.123456Z")
    store.set_meta("sync.runs", "3")
    patient = next(store.resource_ids("Patient"))
    for _ in range(50):
        store.audit(
            user_id="pc101",
            action="open-record",
            patient_id=patient,
            reason="Street triage",
            event_id=str(uuid.uuid4()),
        )
    store.add_outbox(
        client_id=str(uuid.uuid4()),
        kind="encounter",
        patient_id=patient,
        user_id="pc101",
        payload=b"{}",
    )
    print("made", directory / "cache.db", "schema", store.schema_version)
    store.close()


def measure(directory: Path) -> dict[str, Any]:
    from app.store import SCHEMA_VERSION, Store
    from app.store._connection import connect

    work = directory / "migrated"
    work.mkdir(exist_ok=True)
    for stale in work.glob("cache.db*"):
        stale.unlink()
    shutil.copy(directory / "cache.db", work / "cache.db")
    key = (directory / "key.bin").read_bytes()
    conn = connect(work / "cache.db", key)
    from_schema = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.close()
    before = (work / "cache.db").stat().st_size
    wall, cpu = time.perf_counter(), time.process_time()
    store = Store.open(work / "cache.db", key)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = store.count_by_type()
    figures = {
        "patients": counts.get("Patient", 0),
        "resources": sum(counts.values()),
        "from_schema": from_schema,
        "to_schema": SCHEMA_VERSION,
        "migrate_wall_s": round(wall, 1),
        "migrate_cpu_s": round(cpu, 1),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "cursors": [tuple(r) for r in store.conn.execute("SELECT source, type FROM sync_cursor")],
        "audit_ok": store.audit_problems() == [],
    }
    figures["integrity_ok"] = store.check_integrity()
    store.close()
    figures["size_before_mb"] = before // 10**6
    figures["size_after_mb"] = (work / "cache.db").stat().st_size // 10**6
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--make", action="store_true", help="make the cache (earlier release)")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261120)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    if args.make:
        make(args.directory, args.patients, args.seed)
        return
    figures = measure(args.directory)
    print(json.dumps({k: v for k, v in figures.items() if k != "cursors"}))


if __name__ == "__main__":
    main()

"""What a neighbouring Trust's first bulk load costs once home is in the cache (issue 14
slice 3; docs/design/multi-trust.md section 3, "Left for slice 3").

A read-only source's first load goes through the store's bulk path like home's, and the
bulk-load mark is global: search refuses for the whole load (hazard H13), and because the
cache already holds home's Patients the load cannot use the postings its preparer collected,
so `finish_bulk_load` re-derives every source's search index from the resource table, home's
included. This times, on an encrypted cache:

1. home's first load (trust-1, into an empty cache: the index from the load's own postings);
2. the neighbour's first load (trust-2, into its own source), and the part of it spent in
   `finish_bulk_load` (secondary indexes, counts, every source's search index);
3. rebuilding the search index alone over both sources, and over home alone (a cache holding
   trust-1 only), so the share of (2) that a per-source build would save is home's part.

    .venv/bin/python tests/bench/bench_neighbour_load.py --people 20000

Prints one JSON object. No patient data is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.services.importer import import_ndjson
from app.store import HOME_SOURCE, Store
from app.synthetic import generate_trusts

OVERLAP = 0.2


class _Importing:
    """What `import_ndjson` asks of a session, for a bench that has only the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def mark_refreshed(self, *, synced: bool) -> None:
        pass

    def write_status(self) -> None:
        pass


def _timed_load(store: Store, folder: Path, source: int) -> dict[str, float]:
    """Import `folder` into `source`, timing the whole load and its `finish_bulk_load`."""
    finish = store.finish_bulk_load
    spent: list[float] = []

    def timed_finish(built: Any = None) -> None:
        t = time.perf_counter()
        finish(built)
        spent.append(time.perf_counter() - t)

    store.finish_bulk_load = timed_finish  # type: ignore[method-assign]
    try:
        t = time.perf_counter()
        import_ndjson(_Importing(store), folder, source=source)  # type: ignore[arg-type]
        total = time.perf_counter() - t
    finally:
        store.finish_bulk_load = finish  # type: ignore[method-assign]
    return {"load_s": round(total, 2), "finish_s": round(sum(spent), 2)}


def _rebuild_s(store: Store) -> float:
    """Every source's search index derived again from the resource table (what a load into
    a cache holding Patients ends with), in one transaction."""
    t = time.perf_counter()
    with store.transaction() as conn:
        for indexer in store.indexers:
            indexer.rebuild(conn)
    return round(time.perf_counter() - t, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=20_000, help="people in the region")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="where region and caches go")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kerbside-neighbour-"))
    region = work / "region"
    if not (region / "trust-2" / "Patient.ndjson").exists():
        generate_trusts(2, OVERLAP, args.people, args.seed, region)
    key = os.urandom(32)
    for stale in work.glob("cache*.db*"):
        stale.unlink()
    store = Store.create(work / "cache.db", key)
    home = _timed_load(store, region / "trust-1", HOME_SOURCE)
    home_patients = store.count_by_type("Patient")["Patient"]
    rebuild_home_only = _rebuild_s(store)
    west = store.ensure_source("trust-2", "read-only")
    neighbour = _timed_load(store, region / "trust-2", west)
    rebuild_both = _rebuild_s(store)
    all_patients = store.count_by_type("Patient")["Patient"]
    store.close()
    print(
        json.dumps(
            {
                "people": args.people,
                "home_patients": home_patients,
                "neighbour_patients": all_patients - home_patients,
                "home_first_load": home,
                "neighbour_first_load": neighbour,
                "search_index_rebuild_s": {"home_only": rebuild_home_only, "both": rebuild_both},
                "load_average": [round(x, 1) for x in os.getloadavg()],
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()

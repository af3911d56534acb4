"""Load FHIR NDJSON (the Bulk Data file convention) into the cache: bulk provisioning and the
`kerbside import` command. Sync is the normal way in; this is for seeding and benchmarks."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from app.errors import InvalidInput
from app.fhir import CACHED_TYPES
from app.services.session import Session
from app.store import HOME_SOURCE, Prepared, Store
from sync import BulkWorker

log = logging.getLogger("kerbside.services")

BATCH_BYTES = 8 << 20  # lines read per batch (about 6,000 resources)
COMMIT_LINES = 30_000  # resources per transaction
DEPTH = 7  # batches in flight: a commit's worth and two, so the worker never waits on a write
PROCESS_MIN_BYTES = 4 << 20  # smaller imports prepare on the reading thread (no process start)
Progress = Callable[[str, int], None]


def parse_line(line: bytes, number: int, *, rtype: str, name: str) -> dict[str, Any] | None:
    """One line of `name`, parsed and checked (runs in the bulk worker); None when blank."""
    if not line.strip():
        return None
    try:
        res = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{name} line {number}: not valid JSON") from None
    if not isinstance(res, dict) or res.get("resourceType") != rtype:
        raise InvalidInput(f"{name} line {number}: expected a {rtype} resource")
    problem = _shape_problem(res)
    if problem:
        raise InvalidInput(f"{name} line {number}: {problem}")
    return res


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _shape_problem(res: dict[str, Any]) -> str | None:
    """What the store relies on: a FHIR id, and a `meta` object with string version fields."""
    rid = res.get("id")
    if not isinstance(rid, str) or not _FHIR_ID.fullmatch(rid):
        return "the resource has no valid FHIR id"
    meta = res.get("meta", {})
    if not isinstance(meta, dict):
        return "meta is not an object"
    for name in ("versionId", "lastUpdated"):
        if name in meta and not isinstance(meta[name], str):
            return f"meta.{name} is not a string"
    return None


def ndjson_files(directory: Path) -> list[tuple[str, Path]]:
    """Files to load, referenced types before the types that point at them."""
    if not directory.is_dir():
        raise InvalidInput("the import directory does not exist")
    found = {p.stem: p for p in directory.glob("*.ndjson")}
    if not found:
        raise InvalidInput("no .ndjson files in the import directory")
    ordered = [t for t in CACHED_TYPES if t in found]
    ordered += sorted(t for t in found if t not in CACHED_TYPES)
    return [(t, found[t]) for t in ordered]


def _line_batches(path: Path) -> Iterator[list[bytes]]:
    with path.open("rb") as fh:
        while lines := fh.readlines(BATCH_BYTES):
            yield lines


def import_ndjson(
    session: Session,
    directory: Path,
    progress: Progress | None = None,
    *,
    source: int = HOME_SOURCE,
) -> dict[str, int]:
    """Load every file through the store's bulk-load path, as sync's bulk first load does:
    files are read on a worker thread, parsed, checked and prepared (rows, search terms) in a
    worker process, and written here, `COMMIT_LINES` at a time; the indexes are built once at
    the end.

    A bad line stops the import with InvalidInput: the batches before it stay, no half batch
    is written, and the indexes are still built over what was loaded, so search answers for
    exactly what the cache holds. A crash leaves the store's bulk-load mark set: search
    refuses until the next import or sync finishes the load.

    `source`: the sid the files come from (a registered source; `kerbside import` loads the
    home source's). Only a home import counts as the cache matching its central record.
    """
    files = ndjson_files(directory)
    store = session.store
    counts: dict[str, int] = {}
    if source not in {s.sid for s in store.sources()}:
        raise InvalidInput("no such source in this cache", field="source")
    held = store.count_by_type(*(t for t, _path in files), source=source)
    empty = {t for t, _path in files if not held.get(t)}
    size = sum(path.stat().st_size for _t, path in files)
    built = None
    store.begin_bulk_load()
    try:
        with BulkWorker(
            store.bulk_preparer(source), process=size >= PROCESS_MIN_BYTES, depth=DEPTH
        ) as worker:
            for rtype, path in files:
                parse = partial(parse_line, rtype=rtype, name=path.name)
                pending: list[Prepared] = []
                lines = 0
                for prepared, _size in worker.map(rtype, _line_batches(path), parse):
                    pending.append(prepared)
                    lines += len(prepared.rows)
                    if lines >= COMMIT_LINES:
                        _write(store, source, pending, rtype in empty, counts, progress)
                        pending, lines = [], 0
                _write(store, source, pending, rtype in empty, counts, progress, rtype=rtype)
                log.info("imported %d %s", counts.get(rtype, 0), rtype)
            built = worker.finish()
    finally:
        if progress:
            progress("indexes", 0)
        store.finish_bulk_load(built)
    if source == HOME_SOURCE:
        session.mark_refreshed(synced=False)
    session.write_status()
    return counts


def _write(
    store: Store,
    source: int,
    pending: list[Prepared],
    into_empty: bool,
    counts: dict[str, int],
    progress: Progress | None,
    rtype: str | None = None,
) -> None:
    if pending:
        store.put_prepared(source, pending, into_empty=into_empty)
        rtype = pending[0].rtype
    if rtype is None:
        return
    counts[rtype] = counts.get(rtype, 0) + sum(len(p.rows) for p in pending)
    if progress:
        progress(rtype, counts[rtype])

"""Load FHIR NDJSON (the Bulk Data file convention) into the cache: bulk provisioning and the
`kerbside import` command. Sync is the normal way in; this is for seeding and benchmarks."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from app.errors import InvalidInput
from app.fhir import CACHED_TYPES
from app.services.session import Session
from app.store import Row, row_of
from sync import in_background

log = logging.getLogger("kerbside.services")

BATCH = 6000
Progress = Callable[[str, int], None]


def _read_ndjson(path: Path, rtype: str) -> Iterator[tuple[dict[str, Any], bytes]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise InvalidInput(f"{path.name} line {number}: not valid JSON") from None
            if not isinstance(res, dict) or res.get("resourceType") != rtype:
                raise InvalidInput(f"{path.name} line {number}: expected a {rtype} resource")
            problem = _shape_problem(res)
            if problem:
                raise InvalidInput(f"{path.name} line {number}: {problem}")
            yield res, line.strip()


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


def _row_batches(files: list[tuple[str, Path]]) -> Iterator[tuple[str, list[Row]]]:
    for rtype, path in files:
        batch: list[Row] = []
        for res, raw in _read_ndjson(path, rtype):
            batch.append(row_of(res, raw))
            if len(batch) >= BATCH:
                yield rtype, batch
                batch = []
        yield rtype, batch  # possibly empty: marks the end of this type


def import_ndjson(
    session: Session, directory: Path, progress: Progress | None = None
) -> dict[str, int]:
    """Load every file through the store's bulk-load path: resources first (each batch one
    transaction), every index once at the end. Files are read and parsed on a worker thread
    while this one writes (SQLCipher releases the GIL while it encrypts and writes).

    A bad line stops the import with InvalidInput: the batches before it stay, no half batch
    is written, and the indexes are still built over what was loaded, so search answers for
    exactly what the cache holds. A crash leaves the store's bulk-load mark set: search
    refuses until the next import or sync finishes the load.
    """
    files = ndjson_files(directory)
    store = session.store
    counts: dict[str, int] = {}
    held = store.count_by_type(*(t for t, _path in files))
    empty = {t for t, _path in files if not held.get(t)}
    store.begin_bulk_load()
    try:
        for rtype, batch in in_background(_row_batches(files)):
            if batch:
                store.put_rows(batch, into_empty=rtype in empty)
            counts[rtype] = counts.get(rtype, 0) + len(batch)
            if progress:
                progress(rtype, counts[rtype])
            if not batch:
                log.info("imported %d %s", counts[rtype], rtype)
    finally:
        if progress:
            progress("indexes", 0)
        store.finish_bulk_load()
    session.mark_refreshed(synced=False)
    session.write_status()
    return counts

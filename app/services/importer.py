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

log = logging.getLogger("kerbside.services")

BATCH = 5000
Progress = Callable[[str, int], None]


def _read_ndjson(path: Path, rtype: str) -> Iterator[dict[str, Any]]:
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
            yield res


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


def import_ndjson(
    session: Session, directory: Path, progress: Progress | None = None
) -> dict[str, int]:
    """Load every file; each batch is one transaction, so an error keeps earlier batches and
    leaves no half-written batch. Resources are validated before anything is written."""
    files = ndjson_files(directory)
    counts: dict[str, int] = {}
    for rtype, path in files:
        batch: list[dict[str, Any]] = []
        total = 0
        for res in _read_ndjson(path, rtype):
            batch.append(res)
            if len(batch) >= BATCH:
                session.store.put_resources(batch)
                total += len(batch)
                batch = []
                if progress:
                    progress(rtype, total)
        if batch:
            session.store.put_resources(batch)
            total += len(batch)
        if progress:
            progress(rtype, total)
        counts[rtype] = total
        log.info("imported %d %s", total, rtype)
    session.mark_refreshed(synced=False)
    session.write_status()
    return counts

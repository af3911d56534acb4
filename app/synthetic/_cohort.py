"""Iterate a cohort's resources, or write them as FHIR Bulk Data NDJSON files.

Every patient's records come from an RNG keyed by (seed, patient index), so chunks of patients
can be rendered in any process, in any order, and concatenated into the same bytes. Writing a
large cohort therefore uses both cores; the output does not depend on how many.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from app.errors import InvalidInput
from app.fhir import CACHED_TYPES
from app.synthetic._common import DEFAULT_AS_OF
from app.synthetic._people import MAX_PATIENTS
from app.synthetic._records import CohortBuilder

# File order: the pull order (referenced before referrer); the tablet caches exactly these.
RESOURCE_TYPES: tuple[str, ...] = CACHED_TYPES
_WRITE_BUFFER = 1 << 20
_CHUNK = 2000  # patients per unit of work: ~16 MB of NDJSON
_PARALLEL_FROM = 5000  # below this, starting processes costs more than it saves


def _check(patients: int, as_of: datetime) -> None:
    if not 0 <= patients <= MAX_PATIENTS:
        raise InvalidInput(f"patients must be between 0 and {MAX_PATIENTS}", field="patients")
    if as_of.tzinfo is None:
        raise InvalidInput("as_of must be timezone-aware", field="as_of")


def iter_cohort(
    patients: int, seed: int, *, as_of: datetime = DEFAULT_AS_OF
) -> Iterator[dict[str, Any]]:
    """Every resource of the cohort as a dict: the directory (Organization, Practitioner)
    first, then each patient's records with the Patient before what refers to it.

    Deterministic for (patients, seed, as_of). Patient i's records do not depend on how many
    patients there are, so a cohort of 1,000 is the first 1,000 people of one of 100,000.
    Each resource is a fresh dict tree; mutate freely.
    """
    _check(patients, as_of)
    builder = CohortBuilder(seed, as_of)
    yield from builder.directory.resources
    for index in range(patients):
        yield from builder.patient_records(index)


def iter_patient_records(
    patients: int, seed: int, *, as_of: datetime = DEFAULT_AS_OF
) -> Iterator[list[dict[str, Any]]]:
    """The same cohort grouped: first the directory as one list, then one list per patient
    (Patient first). Handy for seeding a server in per-patient transactions."""
    _check(patients, as_of)
    builder = CohortBuilder(seed, as_of)
    yield list(builder.directory.resources)
    for index in range(patients):
        yield builder.patient_records(index)


@lru_cache(maxsize=2)
def _builder(seed: int, as_of: datetime) -> CohortBuilder:
    """One builder per worker process (the directory takes a few tens of milliseconds)."""
    return CohortBuilder(seed, as_of)


def encode(resources: Iterable[dict[str, Any]]) -> tuple[dict[str, bytes], dict[str, int]]:
    """NDJSON bytes (one compact resource per line) and counts, per resource type."""
    buffers: dict[str, list[bytes]] = {t: [] for t in RESOURCE_TYPES}
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    for resource in resources:
        buffers[resource["resourceType"]].append(dumps(resource, option=newline))
    return (
        {t: b"".join(lines) for t, lines in buffers.items()},
        {t: len(lines) for t, lines in buffers.items()},
    )


def _render(job: tuple[int, datetime, int, int]) -> tuple[dict[str, bytes], dict[str, int]]:
    """NDJSON bytes and counts per type for patients [start, stop). Runs in any process."""
    seed, as_of, start, stop = job
    builder = _builder(seed, as_of)
    return encode(
        resource for index in range(start, stop) for resource in builder.patient_records(index)
    )


def _render_directory(seed: int, as_of: datetime) -> tuple[dict[str, bytes], dict[str, int]]:
    return encode(_builder(seed, as_of).directory.resources)


def write_ndjson(
    out_dir: Path, chunks: Iterator[tuple[dict[str, bytes], dict[str, int]]]
) -> dict[str, int]:
    """Write `encode` chunks, in order, as `<Type>.ndjson` files and return counts per type.

    Files are written as `.part` and renamed at the end, so a crash never leaves a cohort
    that looks complete. Every type gets a file, empty or not: the Bulk Data folder shape
    `serve-reference --seed` and `import` expect.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(RESOURCE_TYPES, 0)
    parts = {t: out_dir / f"{t}.ndjson.part" for t in RESOURCE_TYPES}
    with contextlib.ExitStack() as stack:
        files: dict[str, BinaryIO] = {
            t: stack.enter_context(open(path, "wb", buffering=_WRITE_BUFFER))
            for t, path in parts.items()
        }
        try:
            for data, chunk_counts in chunks:
                for rtype, blob in data.items():
                    files[rtype].write(blob)
                    counts[rtype] += chunk_counts[rtype]
        except BaseException:
            stack.close()
            for path in parts.values():
                path.unlink(missing_ok=True)
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator holding a process pool releases it now
    for t, path in parts.items():
        os.replace(path, out_dir / f"{t}.ndjson")
    return counts


def _default_workers(patients: int) -> int:
    if patients < _PARALLEL_FROM:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 4)


def generate_cohort(
    patients: int,
    seed: int,
    out_dir: Path,
    *,
    as_of: datetime = DEFAULT_AS_OF,
    workers: int | None = None,
) -> dict[str, int]:
    """Write `<Type>.ndjson` files (one compact resource per line) and return counts per type.

    Byte-identical for the same (patients, seed, as_of) whatever `workers` is (default: one
    per core for large cohorts). Files are written as `.part` and renamed at the end, so a
    crash never leaves a cohort that looks complete.
    """
    _check(patients, as_of)
    workers = _default_workers(patients) if workers is None else max(1, workers)
    jobs = [
        (seed, as_of, start, min(start + _CHUNK, patients)) for start in range(0, patients, _CHUNK)
    ]

    def chunks() -> Iterator[tuple[dict[str, bytes], dict[str, int]]]:
        yield _render_directory(seed, as_of)
        if workers == 1 or len(jobs) < 2:
            yield from map(_render, jobs)
            return
        # forkserver: never fork a parent that may hold threads (Qt, loggers, pytest).
        context = multiprocessing.get_context("forkserver")
        with context.Pool(min(workers, len(jobs))) as pool:
            yield from pool.imap(_render, jobs)

    return write_ndjson(out_dir, chunks())

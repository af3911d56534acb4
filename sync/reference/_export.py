"""FHIR Bulk Data Access (IG v2) `$export`: system level and group level, asynchronous.

https://hl7.org/fhir/uv/bulkdata/export.html, followed as a client of HAPI, Azure, Google or
Medplum would meet it:

    GET [base]/$export, GET [base]/Group/[id]/$export     kick-off
        Accept: application/fhir+json, Prefer: respond-async (both required)
        _outputFormat (ndjson forms only), _type, _since; anything else is 400 unless
        `Prefer: handling=lenient` (then ignored)
        -> 202 Accepted, Content-Location: the status URL
    GET    [status URL]   202 + X-Progress + Retry-After while running; 200 + the manifest
                          (transactionTime, request, requiresAccessToken, output, error);
                          4xx/5xx + OperationOutcome when the job failed
    DELETE [status URL]   202: the job is cancelled and its files removed
    GET    [file URL]     application/fhir+ndjson, bearer token required, `Range: bytes=N-`
                          answered with 206 (unless ranges are switched off for a test)

The job reads a snapshot: a second SQLite connection opens a read transaction on the event
loop thread (where every write happens, so none is half done) and a worker thread writes the
files from it while the server keeps serving writes. `transactionTime` is an instant taken at
that moment: every exported version is at or before it and every later write is after it (or,
on a server stamping whole seconds, in the same second), so `_lastUpdated=ge<transactionTime>`
afterwards misses nothing.

Group level: the Patients the Group's `member.entity` references, the resources of the types
asked for that reference one of them through a `patient`/`subject` search parameter, and
(as the IG allows, "supporting" resources) every resource of the types that belong to no
patient compartment, such as Organization and Practitioner.

Paths are distinct so the fault machinery can aim at each step: kick-off under `$export`,
status under `_bulk/status/`, files under `_bulk/files/`.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from ._model import REFERENCE_PARAMS, SUPPORTED_TYPES, FhirError, operation_outcome
from ._search import since_us
from ._storage import Store

log = logging.getLogger(__name__)

EXPORT_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
GROUP_EXPORT_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
BULK_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
STATUS_PATH = "_bulk/status"
FILES_PATH = "_bulk/files"
# What a deliberately broken export does (admin setting `export_fault`): the job fails as a
# whole, or completes with an OperationOutcome in the manifest's `error` files.
ExportFault = Literal["none", "fail", "error-file"]
EXPORT_FAULTS: tuple[str, ...] = ("none", "fail", "error-file")
_WRITE_BUFFER = 1 << 20
_FETCH = 2000
# Types whose resources belong to a patient compartment through a reference parameter.
_PATIENT_PARAMS = ("patient", "subject")
_COMPARTMENT_TYPES = frozenset(
    t for t, params in REFERENCE_PARAMS.items() if any(p in params for p in _PATIENT_PARAMS)
)


@dataclass
class ExportFile:
    rtype: str
    name: str
    count: int


@dataclass
class ExportJob:
    id: str
    client_id: str
    request_url: str
    types: tuple[str, ...]
    since: int | None
    group_members: list[str] | None
    transaction_time: str
    directory: Path
    fault: str
    state: Literal["in-progress", "complete", "failed", "cancelled"] = "in-progress"
    files: list[ExportFile] = field(default_factory=list)
    errors: list[ExportFile] = field(default_factory=list)
    types_done: int = 0
    failure: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class ExportJobs:
    """The running and finished export jobs of one server (in memory: a restart forgets them,
    as a real server's job store may expire them; a client then starts a new export)."""

    def __init__(self, store: Store, data_dir: Path) -> None:
        self.store = store
        self.root = data_dir / "exports"
        self.jobs: dict[str, ExportJob] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")

    def close(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        self._pool.shutdown(wait=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- kick-off ----------------------------------------------------------------------------
    def start(
        self,
        *,
        client_id: str,
        request_url: str,
        types: tuple[str, ...],
        since: int | None,
        group_id: str | None,
        fault: str,
    ) -> ExportJob:
        """Open the snapshot and queue the job (call on the event-loop thread)."""
        conn = sqlite3.connect(self.store.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM meta").fetchone()  # the snapshot starts here
            members = None if group_id is None else _group_members(conn, group_id)
        except BaseException:
            conn.close()
            raise
        # An instant of its own: later writes are stamped after it (next_instant is strictly
        # increasing), exported versions before it.
        transaction_time = self.store.instant_text(self.store.coarse(self.store.next_instant()))
        job_id = uuid.uuid4().hex
        job = ExportJob(
            id=job_id,
            client_id=client_id,
            request_url=request_url,
            types=types,
            since=since,
            group_members=members,
            transaction_time=transaction_time,
            directory=self.root / job_id,
            fault=fault,
        )
        self.jobs[job_id] = job
        self._pool.submit(self._run, job, conn)
        return job

    def get(self, job_id: str, client_id: str) -> ExportJob:
        job = self.jobs.get(job_id)
        if job is None or job.client_id != client_id or job.state == "cancelled":
            raise FhirError(404, "not-found", "no such export job")
        return job

    def cancel(self, job_id: str, client_id: str) -> None:
        job = self.get(job_id, client_id)
        job.cancel.set()
        job.state = "cancelled"
        shutil.rmtree(job.directory, ignore_errors=True)

    def file_path(self, job_id: str, client_id: str, name: str) -> Path:
        job = self.get(job_id, client_id)
        if job.state != "complete":
            raise FhirError(404, "not-found", "no such file")
        for f in (*job.files, *job.errors):
            if f.name == name:
                return job.directory / name
        raise FhirError(404, "not-found", "no such file")

    # -- the job -----------------------------------------------------------------------------
    def _run(self, job: ExportJob, conn: sqlite3.Connection) -> None:
        try:
            job.directory.mkdir(parents=True, exist_ok=True)
            if job.fault == "fail":
                raise _JobFailed("the export could not be completed (injected failure)")
            if job.group_members is not None:
                conn.execute("CREATE TEMP TABLE export_member (id TEXT PRIMARY KEY)")
                conn.executemany(
                    "INSERT OR IGNORE INTO export_member VALUES (?)",
                    [(m,) for m in job.group_members],
                )
            for number, rtype in enumerate(job.types, start=1):
                if job.cancel.is_set():
                    return
                name = f"{number}.{rtype}.ndjson"
                count = self._write_type(job, conn, rtype, job.directory / name)
                if count:
                    job.files.append(ExportFile(rtype, name, count))
                job.types_done = number
            if job.fault == "error-file":
                name = "error.OperationOutcome.ndjson"
                outcome = operation_outcome(
                    "processing", "a resource could not be exported (injected error)"
                )
                (job.directory / name).write_bytes(orjson.dumps(outcome) + b"\n")
                job.errors.append(ExportFile("OperationOutcome", name, 1))
            if not job.cancel.is_set():
                job.state = "complete"
        except _JobFailed as exc:
            job.failure = str(exc)
            job.state = "failed"
        except Exception as exc:  # a job must end in a state the client can read
            if job.cancel.is_set():
                # DELETE removed the job's folder under the writer: the job was cancelled,
                # not failed (it would otherwise answer 500 where the client expects 404).
                return
            log.error("export job failed: %s", type(exc).__name__)
            job.failure = "the export failed on the server"
            job.state = "failed"
        finally:
            job.finished.set()
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            conn.close()

    def _write_type(self, job: ExportJob, conn: sqlite3.Connection, rtype: str, path: Path) -> int:
        where = ["v.rtype = ?", "v.current = 1", "v.body IS NOT NULL"]
        args: list[Any] = [rtype]
        if job.since is not None:
            # Inclusive: a server stamping whole seconds may stamp later writes with the
            # `_since` second itself; the client skips versions it already holds.
            where.append("v.lu >= ?")
            args.append(job.since)
        if job.group_members is not None:
            if rtype == "Patient":
                where.append("v.rid IN (SELECT id FROM export_member)")
            elif rtype in _COMPARTMENT_TYPES:
                where.append(
                    "v.seq IN (SELECT r.seq FROM search_ref r JOIN export_member m"
                    " ON r.target_id = m.id WHERE r.rtype = ? AND r.target_type = 'Patient')"
                )
                args.append(rtype)
        cursor = conn.execute(
            f"SELECT v.body FROM version v WHERE {' AND '.join(where)} ORDER BY v.lu, v.rid", args
        )
        count = 0
        with path.open("wb", buffering=_WRITE_BUFFER) as out:
            while rows := cursor.fetchmany(_FETCH):
                if job.cancel.is_set():
                    break
                out.write(b"\n".join(r[0] for r in rows))
                out.write(b"\n")
                count += len(rows)
        if not count:
            path.unlink(missing_ok=True)
        return count


class _JobFailed(Exception):
    pass


def _group_members(conn: sqlite3.Connection, group_id: str) -> list[str]:
    row = conn.execute(
        "SELECT body FROM version WHERE rtype = 'Group' AND rid = ? AND current = 1",
        (group_id,),
    ).fetchone()
    if row is None or row[0] is None:
        raise FhirError(404, "not-found", "no Group with this id")
    group = orjson.loads(row[0])
    members = []
    for member in group.get("member") or ():
        entity = member.get("entity") if isinstance(member, dict) else None
        ref = entity.get("reference") if isinstance(entity, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/") and not member.get("inactive"):
            members.append(ref.split("/", 1)[1])
    return members


def parse_kickoff(
    params: list[tuple[str, str]], *, lenient: bool, group: bool
) -> tuple[tuple[str, ...] | None, int | None]:
    """`_type` (None: every type) and `_since` (µs) from the kick-off query; 400 on anything
    this server does not do, unless the client asked for lenient handling."""
    types: list[str] | None = None
    since: int | None = None
    for name, value in params:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise FhirError(400, "not-supported", "only NDJSON output is offered")
        elif name == "_type":
            for rtype in (t.strip() for t in value.split(",")):
                if rtype not in SUPPORTED_TYPES:
                    if lenient:
                        continue
                    raise FhirError(400, "not-supported", "a _type is not served here")
                types = types or []
                if rtype not in types:
                    types.append(rtype)
        elif name == "_since":
            since = since_us(value)
        elif name in ("_format", "_pretty"):
            continue
        elif not lenient:
            raise FhirError(400, "not-supported", f"$export does not support {name!r}")
    if types is None and group:
        return None, since
    return (tuple(types) if types is not None else None), since


def manifest(job: ExportJob, files_base: str) -> dict[str, Any]:
    return {
        "transactionTime": job.transaction_time,
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": f.rtype, "url": f"{files_base}/{job.id}/{f.name}", "count": f.count}
            for f in job.files
        ],
        "error": [
            {"type": "OperationOutcome", "url": f"{files_base}/{job.id}/{f.name}"}
            for f in job.errors
        ],
    }


def parse_range(header: str | None, size: int) -> int | None:
    """The start of a `bytes=N-` (or `bytes=N-M`, served to the end) range, or None."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[len("bytes=") :].split(",")[0].strip()
    start, _, _end = spec.partition("-")
    if not start.isdigit():
        return None
    offset = int(start)
    if offset >= size:
        raise FhirError(416, "invalid", "the range starts beyond the end of the file")
    return offset


async def read_file(path: Path, offset: int, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(offset)
        while data := fh.read(chunk):
            yield data

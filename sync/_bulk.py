"""The first load through FHIR Bulk Data Access (IG v2 `$export`), when the server offers it.

https://hl7.org/fhir/uv/bulkdata/export.html, as a client:

1. Kick-off: `GET [base]/$export` (or `Group/[id]/$export` for a cohort Group) with
   `Accept: application/fhir+json`, `Prefer: respond-async`, `_type` (the cached types the
   server declares) and `_outputFormat=application/fhir+ndjson`. 202 + Content-Location is
   the status URL. A 4xx here means "not offered after all": the run falls back to paging.
2. Poll the status URL, waiting what `Retry-After` says (a growing back-off when it says
   nothing), until 200 and the manifest. A 4xx/5xx with a fatal OperationOutcome is a failed
   export: reported with the server's reason, before anything touched the cache.
3. A manifest whose `error` files hold an error or fatal issue is refused the same way (the
   output would be incomplete). `transactionTime` must be an instant.
4. Download each output file (the bearer token only when `requiresAccessToken`, and only to
   our own origin) as a stream: a worker thread reads and parses lines while this thread
   writes batches through the store's bulk-load path (resources first, indexes at the end).
   A download that breaks part-way resumes with `Range: bytes=<offset>-` when the server
   answered with `Accept-Ranges: bytes` (and a matching `Content-Range`), else re-reads the
   file and skips the lines already used. Memory holds a few batches, never a file.
5. Every cached type's cursor moves to `transactionTime` (and the history/reconcile state
   with it), then the index build runs. The paged pull that follows in the same run asks
   `_lastUpdated=ge<transactionTime>`, so a write that landed during the export is picked up
   and the next incremental sync carries on without a gap.

A crash anywhere leaves the store's bulk-load mark set and no cursors: the next run exports
again, the store skips the versions it already holds, and the index build runs once at the
end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import requests
import urllib3

from sync._bundles import check_resource, instant_key
from sync._capabilities import Capabilities
from sync._client import FHIR_JSON
from sync._exceptions import (
    BadResponse,
    ConnectionLost,
    ServerRejected,
    SyncError,
    TransientError,
)
from sync._pipeline import BulkWorker
from sync._pull import DELETIONS_KEY, ORIGIN_KEY, RECONCILED_KEY
from sync._report import SyncOptions
from sync._run import RunPart

log = logging.getLogger("kerbside.sync")

NDJSON = "application/fhir+ndjson"
_CHUNK = 1 << 20
_POLL_START_S = 1.0
_POLL_CAP_S = 30.0
_POLL_FLOOR_S = 0.05  # `Retry-After: 0` must not become a busy loop
_QUEUE_DEPTH = 2  # batches in flight beyond those of one commit


class BulkExportFailed(ServerRejected):
    """The central record's export failed or came back incomplete; the cache is untouched."""


@dataclass(frozen=True)
class OutputFile:
    rtype: str
    url: str
    count: int | None


@dataclass(frozen=True)
class Manifest:
    transaction_time: str
    requires_token: bool
    output: list[OutputFile]
    errors: list[str]


def offers_bulk(caps: Capabilities, options: SyncOptions) -> bool:
    if not options.bulk:
        return False
    return caps.group_export if options.bulk_group else caps.bulk_export


class BulkLoad(RunPart):
    # -- the whole load ----------------------------------------------------------------------
    def run(self, types: Sequence[str]) -> bool:
        """Load `types` through `$export`; False when the server turned the kick-off down
        (the caller pages instead). Raises BulkExportFailed for a failed export."""
        wanted = [t for t in types if t in self.caps.interactions]
        if not wanted:
            return False
        status_url = self._kick_off(wanted)
        if status_url is None:
            return False
        manifest = self._poll(status_url)
        self._check_errors(manifest)
        held = {t for t in wanted if self.store.count(t) > 0}
        self.store.begin_bulk_load()
        files = self._ordered(manifest.output, wanted)
        counts = [item.count for item in files]
        process = self.options.bulk_process and (
            None in counts or sum(c or 0 for c in counts) >= self.options.bulk_process_min
        )
        try:
            with BulkWorker(
                self.store.bulk_preparer(),
                process=process,
                # Enough batches in flight to cover a commit: the worker prepares the next
                # commit's batches while this thread writes one (else they take turns).
                depth=-(-self.options.bulk_commit // self.options.write_batch) + _QUEUE_DEPTH,
            ) as worker:
                for item in files:
                    self._load_file(
                        worker, item, manifest.requires_token, into_empty=item.rtype not in held
                    )
                built = worker.finish()
        except BaseException:
            self.store.abandon_bulk_load()
            raise
        self._move_cursors(wanted, manifest.transaction_time)
        self.progress("index", 0, None)
        self.store.finish_bulk_load(built)
        self.report.bulk_export = True
        self._release(status_url)
        log.info("bulk load: %d resources from $export", self.report.pulled)
        return True

    # -- kick-off and status -----------------------------------------------------------------
    def _kick_off(self, types: list[str]) -> str | None:
        path = f"Group/{self.options.bulk_group}/$export" if self.options.bulk_group else "$export"
        params = {"_type": ",".join(types), "_outputFormat": NDJSON}
        self.progress("export", 0, None)
        try:
            answer = self.client.request(
                "GET",
                self.client.url(path),
                params=params,
                label="bulk export kick-off",
                accept=FHIR_JSON,
                headers={"Prefer": "respond-async"},
            )
        except ServerRejected as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403):
                self.report.warnings.append(
                    f"the central record declined the bulk export ({exc.status}); paging instead"
                )
                return None
            raise
        location = answer.headers.get("Content-Location")
        if answer.status != 202 or not location:
            raise BadResponse(
                "bulk export kick-off: the server did not answer 202 with a status URL"
            )
        return self.client.resolve(location)

    def _poll(self, status_url: str) -> Manifest:
        waited = 0.0
        backoff = _POLL_START_S
        while True:
            answer = self.client.request(
                "GET",
                status_url,
                label="bulk export status",
                accept="application/json",
                fatal_is_final=True,
            )
            if answer.status == 200:
                return read_manifest(answer.body)
            if answer.status != 202:
                raise BadResponse(f"bulk export status: unexpected HTTP {answer.status}")
            progress = answer.headers.get("X-Progress") or ""
            self.progress("export", 0, None)
            log.info("bulk export running (%s)", progress[:40] if progress.isprintable() else "")
            retry_after = _seconds(answer.headers.get("Retry-After"))
            if retry_after is None:
                delay, backoff = backoff, min(_POLL_CAP_S, backoff * 1.5)
            else:
                delay = max(_POLL_FLOOR_S, min(retry_after, self.options.bulk_max_wait_s))
            waited += delay
            if waited > self.options.bulk_max_wait_s:
                self._release(status_url)
                raise BulkExportFailed(
                    "the central record's bulk export did not finish in time; nothing was changed",
                    status=None,
                )
            self.client.pause(delay)

    def _check_errors(self, manifest: Manifest) -> None:
        """Refuse an export whose error files report an error or fatal issue."""
        for url in manifest.errors:
            for line in self._lines(url, manifest.requires_token, "bulk export errors"):
                outcome = _json_line(line, "bulk export errors")
                issues = outcome.get("issue") if isinstance(outcome, dict) else None
                for issue in issues if isinstance(issues, list) else ():
                    if isinstance(issue, dict) and issue.get("severity") in ("error", "fatal"):
                        text = _issue_text(issue)
                        raise BulkExportFailed(
                            "the central record's bulk export was incomplete"
                            + (f": {text}" if text else "")
                            + "; nothing was changed",
                            status=None,
                            outcome=outcome,
                        )
                    if isinstance(issue, dict):
                        self.report.warnings.append(
                            "bulk export: " + (_issue_text(issue) or "a warning")
                        )

    def _release(self, status_url: str) -> None:
        """`DELETE` the status URL: the IG's way to tell the server its files may go."""
        try:
            self.client.request(
                "DELETE", status_url, label="bulk export clean-up", accept=FHIR_JSON
            )
        except SyncError as exc:
            log.info("bulk export clean-up not accepted (%s)", type(exc).__name__)

    # -- files -------------------------------------------------------------------------------
    @staticmethod
    def _ordered(output: list[OutputFile], types: list[str]) -> list[OutputFile]:
        order = {t: i for i, t in enumerate(types)}
        return sorted((o for o in output if o.rtype in order), key=lambda o: order[o.rtype])

    def _load_file(
        self, worker: BulkWorker, item: OutputFile, requires_token: bool, *, into_empty: bool
    ) -> None:
        """Blocks of whole lines are read on a download thread, split, parsed, checked and
        prepared (rows, search terms) by the worker, and written here: each commit holds
        `bulk_commit` resources."""
        rtype = item.rtype
        label = f"bulk {rtype}"
        phase = f"bulk {rtype}"
        batch_size = self.options.write_batch
        done = self.report.pulled_by_type.get(rtype, 0)

        def batches() -> Iterator[bytes]:
            """About `batch_size` lines at a time, as one bytes object (the worker splits)."""
            blocks: list[bytes] = []
            lines = 0
            for block in self._blocks(item.url, requires_token, label):
                blocks.append(block)
                lines += block.count(b"\n")
                if lines >= batch_size:
                    yield b"".join(blocks)
                    blocks, lines = [], 0
            if blocks:
                yield b"".join(blocks)

        received = 0
        parse = partial(parse_line, rtype=rtype, label=label)
        pending: list[Any] = []
        pending_lines = 0

        def write() -> None:
            nonlocal received, done, pending, pending_lines
            stored = self.store.put_bulk(pending, into_empty=into_empty)
            received += pending_lines
            done += stored
            self.report.received += pending_lines
            self.report.pulled += stored
            self.report.pulled_by_type[rtype] = done
            pending, pending_lines = [], 0
            self.progress(phase, received, item.count)

        prepared_batches = worker.map(rtype, batches(), parse)
        try:
            for prepared, size in prepared_batches:
                pending.append(prepared)
                pending_lines += size
                if pending_lines >= self.options.bulk_commit:
                    write()
        finally:
            prepared_batches.close()
        if pending:
            write()

    def _lines(self, url: str, requires_token: bool, label: str) -> Iterator[bytes]:
        """The non-empty lines of one file, resuming a broken download where it broke."""
        for block in self._blocks(url, requires_token, label):
            for part in block.split(b"\n"):
                line = part.strip()
                if line:
                    yield line

    def _blocks(self, url: str, requires_token: bool, label: str) -> Iterator[bytes]:
        """One file as blocks of whole lines (as they arrive, each cut after its last
        newline; the file's last line may lack one), resuming a broken download where it
        broke. Blocks, not lines: the worker process splits them, so the download thread
        does no Python per line (it shares the GIL with the writer) and a batch crosses to
        the worker as one bytes object, not ten thousand."""
        client = self.client
        offset = 0  # bytes of the file handed over as whole lines
        used = 0  # lines (newlines) handed over
        ranges = False  # the server said `Accept-Ranges: bytes`
        retry = 0
        while True:
            asked = offset if offset and ranges else 0
            headers = {"Range": f"bytes={asked}-"} if asked else None
            try:
                resp = client.open_stream(
                    url, label=label, with_token=requires_token, headers=headers
                )
            except TransientError as exc:
                retry = client.wait_before_retry(retry, label, exc)
                continue
            try:
                skip = 0
                content_range = resp.headers.get("Content-Range", "")
                if (
                    asked
                    and resp.status_code == 206
                    and content_range.startswith(f"bytes {asked}-")
                ):
                    pass  # the rest of the file
                elif resp.status_code == 200:
                    # From the start (first try, or a server without ranges): lines already
                    # used are skipped.
                    offset, skip = 0, used
                else:
                    raise BadResponse(
                        f"{label}: the server answered a resumed download with "
                        "a part we did not ask for"
                    )
                ranges = "bytes" in resp.headers.get("Accept-Ranges", "").lower()
                tail = b""
                for chunk in _chunks(resp):
                    client.check_cancel()
                    client.bytes_received += len(chunk)
                    data = tail + chunk if tail else chunk
                    cut = data.rfind(b"\n") + 1
                    if not cut:
                        tail = data
                        continue
                    block, tail = data[:cut], data[cut:]
                    offset += cut
                    if skip:
                        block, skip = _skip_lines(block, skip)
                    if block:
                        used += block.count(b"\n")
                        retry = 0
                        yield block
                if tail and not skip:
                    yield tail
                return
            except TransientError as exc:
                retry = client.wait_before_retry(retry, label, exc)
            except Exception as exc:
                if not _is_stream_break(exc):
                    raise
                retry = client.wait_before_retry(retry, label, _broken(label, exc))
            finally:
                resp.close()

    # -- cursors -----------------------------------------------------------------------------
    def _move_cursors(self, types: list[str], transaction_time: str) -> None:
        for rtype in types:
            if self.caps.has_history(rtype):
                self.store.set_state(DELETIONS_KEY + rtype, transaction_time)
            else:
                self.store.set_state(RECONCILED_KEY + rtype, str(self.run_number))
            self.store.set_state(ORIGIN_KEY + rtype, None)
            self.store.apply_page(rtype, [], transaction_time)


def read_manifest(body: Any) -> Manifest:
    label = "bulk export manifest"
    if not isinstance(body, dict):
        raise BadResponse(f"{label}: not a JSON object")
    when = body.get("transactionTime")
    if not isinstance(when, str):
        raise BadResponse(f"{label}: no transactionTime")
    try:
        instant_key(when)
    except ValueError:
        raise BadResponse(f"{label}: transactionTime is not an instant") from None
    output = []
    for item in body.get("output") or ():
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("type"), str)
            or not isinstance(item.get("url"), str)
        ):
            raise BadResponse(f"{label}: an output entry has no type or url")
        count = item.get("count")
        output.append(
            OutputFile(item["type"], item["url"], count if isinstance(count, int) else None)
        )
    errors = [
        e["url"]
        for e in body.get("error") or ()
        if isinstance(e, dict) and isinstance(e.get("url"), str)
    ]
    requires = body.get("requiresAccessToken")
    if not isinstance(requires, bool):
        raise BadResponse(f"{label}: requiresAccessToken is not true or false")
    return Manifest(when, requires, output, errors)


def parse_line(line: bytes, number: int, *, rtype: str, label: str) -> dict[str, Any]:
    """One line of an export file, parsed and checked (runs in the bulk worker)."""
    res = _json_line(line, label)
    return check_resource(res, rtype, label)


def _json_line(line: bytes, label: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        raise BadResponse(f"{label}: a line is not valid JSON") from None


def _issue_text(issue: dict[str, Any]) -> str:
    details = issue.get("details")
    text = details.get("text") if isinstance(details, dict) else None
    text = text or issue.get("diagnostics") or issue.get("code")
    return text[:300] if isinstance(text, str) else ""


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    return float(value) if value.isdigit() else None


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. `read1` hands over what one read got, so the bytes before a
    break are used (and a resume starts after them); `iter_content` would fill its whole
    chunk first and lose them with the error."""
    raw = resp.raw
    while chunk := raw.read1(_CHUNK):
        yield chunk


def _skip_lines(block: bytes, count: int) -> tuple[bytes, int]:
    """`block` without its first `count` lines, and how many are still to skip after it."""
    at = 0
    while count:
        found = block.find(b"\n", at)
        if found < 0:
            return b"", count
        at = found + 1
        count -= 1
    return block[at:], 0


def _is_stream_break(exc: Exception) -> bool:
    """A body that stopped part-way: requests/urllib3 raise these while streaming."""
    return isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | urllib3.exceptions.ProtocolError
        | urllib3.exceptions.ReadTimeoutError
        | OSError,
    )


def _broken(label: str, exc: BaseException) -> TransientError:
    return ConnectionLost(f"{label}: the download broke part-way ({type(exc).__name__})")

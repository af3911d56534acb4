"""Pull: bring the cache up to date with the central record, one type at a time.

What FHIR R4 promises, and what it does not (DOMAIN.md; R4 search.html, http.html):

- `_lastUpdated=ge<instant>` is the only incremental filter every server has. Servers may
  share a timestamp between resources or commit late, so we query `ge` the high-water mark
  (optionally minus `overlap_s`) and drop what we already hold by id + versionId (the store's
  upsert skips held and older versions).
- `_count` is a request; `Bundle.link[next]` is followed exactly as given, never built.
- Nothing promises that a result set stays still while we page through it. HAPI and the
  cloud servers page over a snapshot or a keyset, but a server that pages by *offset* re-runs
  the query for every page: when a resource on an already-read page is updated (it moves to
  the end, its lastUpdated is now the newest) or deleted, every later resource slides back by
  one and the one at the page boundary is never returned. A cursor of "the max lastUpdated
  seen" then sits beyond the skipped resource forever: re-running `ge <max seen>` cannot find
  it, and neither can taking the server's time at the first page as the next cursor (the
  skipped resource is older than that too). Only re-reading the range it sits in can.

So the engine detects the move and re-reads just that range:

- Evidence: a resource read earlier in this pass comes back with another version (an update
  moved it), or type history lists the deletion of a resource read in this pass. Its *old*
  lastUpdated is where the shift began; with `_sort=_lastUpdated` nothing before it moved,
  so the next pass re-reads `ge` that instant (without sorting, `ge` the pass start). Passes
  repeat until one ends without evidence (`max_passes` bounds a server that never stands
  still; the cursor is then left at the rescan point, so the next run re-reads it).
- The cursor never runs ahead of what is known to be complete: with sorted results it
  advances with each page (in that page's transaction) to min(max seen, earliest evidence);
  without sorting, only when the pass ends. A crash therefore resumes from a safe point.
- A pass-origin marker, written before the first page is applied and cleared when a pass
  ends clean, lets a run after a crash treat held versions in [origin, cursor] as "read by
  the interrupted pass", so a move that straddles the crash is still caught.
- Deletions under offset paging, on a server with no type history, are invisible in the
  pages themselves; id reconciliation (listing ids, fetching missing ones, verifying before
  deleting extra ones) catches them, periodically and whenever the counts disagree.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sync._bundles import (
    HistoryEntry,
    Page,
    format_instant,
    instant_key,
    latest_deletions,
    read_history,
    read_searchset,
)
from sync._client import Answer
from sync._exceptions import BadResponse, DeviceRevoked, ServerRejected, SyncError
from sync._ports import HeldVersion
from sync._run import RunContext, RunPart

log = logging.getLogger("kerbside.sync")

ORIGIN_KEY = "sync.pull-origin."  # + type: "" = from the beginning, else an instant
DELETIONS_KEY = "sync.deletions-since."  # + type: history cursor
RECONCILED_KEY = "sync.reconciled-run."  # + type: run number of the last reconciliation
SETTLED_KEY = "sync.cursor-settled."  # + type: a cursor whose whole tie set has been read
# The history cursor is advanced (one commit) only once it lags by this much, or on deletions.
HISTORY_ADVANCE_MIN = timedelta(minutes=2)
ID_CHUNK = 50  # ids per `_id=` query: keeps URLs well under common 8 KB limits


@dataclass
class _Pass:
    """State of one pass over `ge start`."""

    start: str | None
    sorted_ok: bool
    start_key: datetime | None = None
    max_key: datetime | None = None
    max_updated: str | None = None
    rescan: tuple[datetime, str] | None = None  # earliest evidence (old lastUpdated)
    first_date: datetime | None = None
    cursor_written: str | None = None  # the cursor this pass last stored, if any
    # Pages read but not yet committed (see `_flush`): id -> resource, and their cursor.
    batch: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_cursor: str | None = None


@dataclass
class _TypeRun:
    rtype: str
    origin: str | None  # the marker's value (None: from the beginning)
    resumed: bool
    resume_hi: datetime | None  # cursor when a resumed run started
    seen: dict[str, datetime] = field(default_factory=dict)  # id -> lastUpdated read this run
    marker_written: bool = False


class Puller(RunPart):
    def __init__(self, run: RunContext) -> None:
        super().__init__(run)
        # "pull"; "catch-up" after a bulk load in the same run (what changed during the export).
        self.phase_word = "pull"
        self._no_elements = False  # the server refused `_elements`: list ids the long way
        # Forms of a count query not yet refused by the server (see `_server_count`).
        self._count_forms: list[dict[str, str]] = [
            {"_summary": "count"},
            {"_count": "0", "_total": "accurate"},
        ]

    # -- one type ----------------------------------------------------------------------------
    def pull_type(self, rtype: str) -> None:
        if not self.caps.can_search(rtype):
            self.report.warnings.append(
                f"the central record offers no search of {rtype}; not cached"
            )
            return
        store = self.store
        cursor = store.cursor(rtype) or None  # "" is a reset cursor (see _unsorted)
        marker = store.get_state(ORIGIN_KEY + rtype)
        history = self.caps.has_history(rtype)
        deletions_since = store.get_state(DELETIONS_KEY + rtype) if history else None
        reconciled = None if history else store.get_state(RECONCILED_KEY + rtype)
        # Did the cache hold this type (e.g. from a bulk import) before we knew what the
        # server deleted? Then one reconciliation is owed.
        had_data = False
        if (deletions_since is None and history) or (reconciled is None and not history):
            had_data = store.count(rtype) > 0
        run = _TypeRun(
            rtype=rtype,
            origin=(marker or None) if marker is not None else cursor,
            resumed=marker is not None,
            resume_hi=_key(cursor) if marker is not None else None,
            marker_written=marker is not None,
        )
        sortable = self.caps.can_sort(rtype)
        start = cursor
        settled = store.get_state(SETTLED_KEY + rtype) if cursor else None
        # `gt` only from a cursor whose tie set a clean pass read completely (see `_settles`);
        # after a crash (marker set) or with an overlap, `ge` as always.
        exclusive = bool(cursor) and settled == cursor and marker is None
        run_t0: datetime | None = None
        owes_reconcile = had_data
        for number in range(1, self.options.max_passes + 1):
            p = self._pass(run, start, sortable, exclusive=exclusive and number == 1)
            if run_t0 is None:
                run_t0 = p.first_date
            if history:
                stored = deletions_since is not None
                since = deletions_since
                if since is None and run_t0 is not None:
                    since = format_instant(
                        run_t0 - timedelta(seconds=self.options.history_margin_s)
                    )
                if since is None:
                    owes_reconcile = True  # no server clock and no cursor: cannot bound it
                else:
                    deletions_since = self._deletions(run, p, since, stored=stored)
            if p.rescan is None:
                written = p.cursor_written if p.cursor_written is not None else start
                if p.max_updated is not None and p.max_updated != written:
                    store.apply_page(rtype, [], p.max_updated)
                final = p.max_updated if p.max_updated is not None else written
                if final and final != settled and self._settles(final, p.first_date):
                    store.set_state(SETTLED_KEY + rtype, final)
                if run.marker_written:
                    store.set_state(ORIGIN_KEY + rtype, None)
                break
            rescan_from = p.rescan[1] if p.sorted_ok else start
            self.report.rescans += 1
            log.info(
                "pull %s: result set moved while paging; pass %d re-reads from the "
                "earliest moved resource",
                rtype,
                number + 1,
            )
            # The cursor goes back to the rescan point first, so a crash re-reads it too.
            store.apply_page(rtype, [], rescan_from or "")
            start = rescan_from
            if number == self.options.max_passes:
                self.report.warnings.append(
                    f"{rtype} kept changing while it was read; the next sync re-reads it"
                )
        if history:
            if owes_reconcile:
                self.reconcile(rtype)
        elif reconciled is None:
            # A first pull into an empty cache is a listing in itself, unless something was
            # deleted while it paged (invisible without history): one count tells.
            if (
                had_data
                or owes_reconcile
                or (self.options.count_check and self._counts_differ(rtype))
            ):
                self.reconcile(rtype)
            else:
                store.set_state(RECONCILED_KEY + rtype, str(self.run_number))
        elif self._reconcile_due(rtype, int(reconciled)):
            self.reconcile(rtype)

    def _settles(self, cursor: str, server_date: datetime | None) -> bool:
        """Whether every resource stamped `cursor` had been committed when the pass that
        ended on it began: the server's clock (its `Date`, floored to the second) was past
        the end of the cursor's precision (a server stamping whole seconds can stamp more
        resources with that second until it is over) by `settle_s` (clock skew between
        nodes). Such a tie set was read completely, so the next run asks `gt`: a no-op run
        then downloads nothing, however many resources share the cursor's instant."""
        key = _key(cursor)
        if key is None or server_date is None:
            return False
        return server_date >= key + _precision(cursor) + timedelta(seconds=self.options.settle_s)

    def _pass(
        self, run: _TypeRun, start: str | None, sortable: bool, *, exclusive: bool = False
    ) -> _Pass:
        rtype = run.rtype
        p = _Pass(start=start, sorted_ok=sortable, start_key=_key(start))
        p.max_key = p.start_key
        p.max_updated = start
        params = {"_count": str(self.options.page_size)}
        query_from = start
        prefix = "gt" if exclusive else "ge"
        if start is not None and self.options.overlap_s:
            prefix = "ge"
            query_from = format_instant(
                instant_key(start) - timedelta(seconds=self.options.overlap_s)
            )
        if query_from is not None:
            params["_lastUpdated"] = f"{prefix}{query_from}"
        if sortable:
            params["_sort"] = "_lastUpdated"
        prev_max: datetime | None = None
        done = 0
        phase = f"{self.phase_word} {rtype}"
        total = self._server_count(rtype) if start is None else None
        self.progress(phase, 0, total)
        try:
            for answer, page in self._pages(rtype, params, phase):
                if p.first_date is None:
                    p.first_date = answer.server_date
                if total is None and page.total is not None:
                    total = page.total
                if p.sorted_ok and (
                    not page.ascending
                    or (
                        prev_max is not None
                        and page.min_key is not None
                        and page.min_key < prev_max
                    )
                ):
                    self._unsorted(run, p)
                if page.max_key is not None:
                    prev_max = page.max_key if prev_max is None else max(prev_max, page.max_key)
                self._apply(run, p, page)
                done += len(page.resources)
                self.progress(phase, done, total)
        except SyncError as exc:
            # The network failed mid-pass: keep what was read (as a commit per page would
            # have), unless the device is being wiped anyway.
            if not isinstance(exc, DeviceRevoked):
                try:
                    self._flush(run, p)
                except Exception as store_exc:  # report the sync error, not this one
                    log.warning(
                        "pull %s: pages read before the failure were not kept (%s)",
                        rtype,
                        type(store_exc).__name__,
                    )
            raise
        self._flush(run, p)
        return p

    def _unsorted(self, run: _TypeRun, p: _Pass) -> None:
        """The server did not sort after all: stop advancing the cursor page by page and take
        back any advance already made (later pages may hold older resources)."""
        p.sorted_ok = False
        p.batch_cursor = None  # pages not yet committed keep their resources, not the cursor
        if p.cursor_written is not None and p.cursor_written != p.start:
            self.store.apply_page(run.rtype, [], p.start or "")
            p.cursor_written = None
        self.report.warnings.append(
            f"the central record did not sort {run.rtype} by lastUpdated; paging without it"
        )

    def _apply(self, run: _TypeRun, p: _Pass, page: Page) -> None:
        rtype = run.rtype
        resources = page.resources
        if not resources:
            return
        held = self.store.held_versions(rtype, [r["id"] for r in resources])
        seen = run.seen
        batch = p.batch
        fresh: list[dict[str, Any]] = []
        for res in resources:
            meta = res["meta"]
            key = instant_key(meta["lastUpdated"])
            queued = batch.get(res["id"])  # read earlier, not committed yet: as if held
            h = (
                held.get(res["id"])
                if queued is None
                else HeldVersion(queued["meta"]["versionId"], queued["meta"]["lastUpdated"])
            )
            if h is None or h.version_id != meta["versionId"]:
                fresh.append(res)
                if h is not None and h.last_updated:
                    old = _key(h.last_updated)
                    if old is not None and old <= key:
                        self._evidence(run, p, res["id"], old, h.last_updated)
            seen[res["id"]] = key
            if p.max_key is None or key > p.max_key:
                p.max_key, p.max_updated = key, meta["lastUpdated"]
        self.report.pages += 1
        self.report.received += len(resources)
        cursor: str | None = None
        if p.sorted_ok and p.max_updated is not None:
            cursor = p.max_updated
            if p.rescan is not None and p.max_key is not None and p.rescan[0] < p.max_key:
                cursor = p.rescan[1]
            last = p.batch_cursor if p.batch_cursor is not None else p.cursor_written
            if cursor == (last if last is not None else p.start):
                cursor = None
        if not fresh and cursor is None:
            return  # an overlap page of versions we hold: nothing to write
        if rtype == "Patient":
            self._merges(fresh)
        if not run.marker_written:
            self.store.set_state(ORIGIN_KEY + rtype, run.origin or "")
            run.marker_written = True
        for res in fresh:
            queued = batch.get(res["id"])
            if queued is None or instant_key(res["meta"]["lastUpdated"]) >= instant_key(
                queued["meta"]["lastUpdated"]
            ):
                batch[res["id"]] = res  # an older copy never replaces a newer one
        if cursor is not None:
            p.batch_cursor = cursor
        if len(batch) >= self.options.write_batch:
            self._flush(run, p)

    def _flush(self, run: _TypeRun, p: _Pass) -> None:
        """Commit the pages read since the last commit, with their cursor, in one local
        transaction. The cursor still advances only with the resources it covers, and the
        pass treats queued resources as held, so batching changes no decision; it only
        spares the random-id index pages being rewritten once per server page."""
        if not p.batch and p.batch_cursor is None:
            return
        rtype = run.rtype
        cursor = p.batch_cursor
        stored = self.store.apply_page(rtype, list(p.batch.values()), cursor)
        p.batch = {}
        p.batch_cursor = None
        if cursor is not None:
            p.cursor_written = cursor
        self.report.pulled += stored
        if stored:
            self.report.pulled_by_type[rtype] = self.report.pulled_by_type.get(rtype, 0) + stored

    def _evidence(self, run: _TypeRun, p: _Pass, rid: str, old: datetime, old_text: str) -> None:
        """Note a move: `rid`, last held at `old`, changed. It matters only if it sat on a page
        this pass already read (inside the pass's range, and read in this run or by the
        interrupted pass this run resumes)."""
        if p.start_key is not None and old < p.start_key:
            return
        if not self._was_read(run, rid, old):
            return
        if p.rescan is None or old < p.rescan[0]:
            p.rescan = (old, old_text)

    @staticmethod
    def _was_read(run: _TypeRun, rid: str, old: datetime) -> bool:
        """Whether the held version of `rid` (at `old`) was read before this point: earlier in
        this run, or by the interrupted pass this run resumes, which read [origin, cursor]
        (all of it from origin on when it had not advanced the cursor, as unsorted passes do).
        Erring towards "read" costs a rescan; erring the other way could skip a resource."""
        if rid in run.seen:
            return True
        if not run.resumed:
            return False
        origin = _key(run.origin)
        if origin is not None and old < origin:
            return False
        return run.resume_hi is None or old <= run.resume_hi

    def _merges(self, patients: list[dict[str, Any]]) -> None:
        """`Patient.link` replaced-by: re-point pending field records to the survivor before
        the page is applied (a crash re-pulls the page and re-points again: idempotent)."""
        for patient in patients:
            for link in patient.get("link") or ():
                if not isinstance(link, dict) or link.get("type") != "replaced-by":
                    continue
                ref = (link.get("other") or {}).get("reference")
                if isinstance(ref, str) and ref.startswith("Patient/"):
                    survivor = ref[len("Patient/") :]
                    if survivor and survivor != patient["id"]:
                        self.report.merged += self.store.repoint_patient(patient["id"], survivor)

    # -- deletions through type history ------------------------------------------------------
    def _deletions(self, run: _TypeRun, p: _Pass, since: str, *, stored: bool) -> str:
        """Apply deletions listed by `[type]/_history?_since=`; returns the next `since`.

        A deletion of a resource read in this pass may have shifted an offset-paged search,
        so it counts as evidence like an update does.
        """
        rtype = run.rtype
        phase = f"deletions {rtype}"
        entries: list[HistoryEntry] = []
        url: str | None = self.client.url(f"{rtype}/_history")
        params: dict[str, str] | None = {"_since": since, "_count": str(self.options.page_size)}
        first_date: datetime | None = None
        while url is not None:
            self.client.check_cancel()
            answer = self.client.get(url, params=params, label=f"history {rtype}")
            if first_date is None:
                first_date = answer.server_date
            page, link = read_history(answer.body, rtype, f"history {rtype}", len(entries))
            entries.extend(page)
            self.progress(phase, len(entries), None)
            url = self.client.resolve(link) if link else None
            params = None
        if not entries:
            # Nothing new: keep the window (it stays empty and cheap), but remember it.
            if not stored:
                self.store.set_state(DELETIONS_KEY + rtype, since)
            return since
        deleted = latest_deletions(entries)
        if deleted:
            held = self.store.held_versions(rtype, deleted)
            gone = [rid for rid in deleted if rid in held]
            for rid in gone:
                old_text = held[rid].last_updated
                old = _key(old_text)
                if old is not None and old_text:
                    self._evidence(run, p, rid, old, old_text)
            if gone:
                self.store.apply_page(rtype, [], None, gone)
                self.report.deleted += len(gone)
                for rid in gone:
                    run.seen.pop(rid, None)
        if first_date is None:
            if not stored:
                self.store.set_state(DELETIONS_KEY + rtype, since)
            return since
        nxt_key = first_date - timedelta(seconds=self.options.history_margin_s)
        since_key = _key(since)
        if (
            stored
            and not deleted
            and since_key is not None
            and nxt_key - since_key < HISTORY_ADVANCE_MIN
        ):
            # Nothing deleted and the window is still short: keeping it costs a few more
            # history entries next time, writing it costs a commit (an fsync) per type per run.
            return since
        nxt = format_instant(nxt_key)
        self.store.set_state(DELETIONS_KEY + rtype, nxt)
        return nxt

    # -- id reconciliation -------------------------------------------------------------------
    def _reconcile_due(self, rtype: str, last_run: int) -> bool:
        """Without type history: every `reconcile_every` runs, or when the counts differ."""
        if self.run_number - last_run >= self.options.reconcile_every:
            return True
        return bool(self.options.count_check and self._counts_differ(rtype))

    def _server_count(self, rtype: str) -> int | None:
        """`_summary=count` total (for a progress bar and the count check), or None."""
        # Two spellings of "just the total" in R4 search.html: `_summary=count`, and an empty
        # page with `_total=accurate`; a server may support either, both or neither.
        while self._count_forms:
            params = self._count_forms[0]
            try:
                answer = self.client.get(
                    self.client.url(rtype), params=params, label=f"count {rtype}"
                )
            except ServerRejected as exc:
                if exc.status != 400:
                    raise
                self._count_forms.pop(0)
                continue
            total = answer.body.get("total") if isinstance(answer.body, dict) else None
            if isinstance(total, int) and not isinstance(total, bool):
                return total
            self._count_forms.pop(0)
        return None

    def _counts_differ(self, rtype: str) -> bool | None:
        """Server total vs cache count; None when the server cannot count cheaply."""
        total = self._server_count(rtype)
        return None if total is None else total != self.store.count(rtype)

    def reconcile(self, rtype: str) -> None:
        """Make the cache's id set equal the server's: fetch what is missing, delete what the
        server no longer has (after asking for those ids once more, so a resource skipped by
        a moving listing is never deleted by mistake)."""
        phase = f"reconcile {rtype}"
        server_ids = set(self._list_ids(rtype, phase))
        local_ids = set(self.store.known_ids(rtype))
        extra = sorted(local_ids - server_ids)
        missing = sorted(server_ids - local_ids)
        still_there: set[str] = set()
        for chunk in _chunks(extra, ID_CHUNK):
            for res in self._by_ids(rtype, chunk, ids_only=True):
                still_there.add(res["id"])
        gone = [rid for rid in extra if rid not in still_there]
        if gone:
            self.store.apply_page(rtype, [], None, gone)
            self.report.deleted += len(gone)
        fetched = 0
        for chunk in _chunks(missing, ID_CHUNK):
            resources = list(self._by_ids(rtype, chunk, ids_only=False))
            if resources:
                stored = self.store.apply_page(rtype, resources, None)
                self.report.pulled += stored
                self.report.pulled_by_type[rtype] = (
                    self.report.pulled_by_type.get(rtype, 0) + stored
                )
            fetched += len(resources)
            self.progress(phase, fetched, len(missing))
        self.store.set_state(RECONCILED_KEY + rtype, str(self.run_number))
        self.report.reconciled.append(rtype)
        log.info("reconciled %s: %d deleted, %d fetched", rtype, len(gone), fetched)

    def _list_ids(self, rtype: str, phase: str) -> Iterator[str]:
        params = {"_count": str(self.options.page_size)}
        if not self._no_elements:
            params["_elements"] = "id"
            try:
                yield from self._ids_from(rtype, params, phase)
                return
            except ServerRejected as exc:
                if exc.status != 400:
                    raise
                self._no_elements = True
                params.pop("_elements")
        yield from self._ids_from(rtype, params, phase)

    def _ids_from(self, rtype: str, params: dict[str, str], phase: str) -> Iterator[str]:
        count = 0
        ids: list[str] = []
        for _answer, page in self._pages(rtype, params, phase, versioned=False):
            ids.extend(r["id"] for r in page.resources)
            count += len(page.resources)
            self.progress(phase, count, page.total)
        # Yield only after the whole listing succeeded: a half listing must not delete.
        yield from ids

    def _by_ids(self, rtype: str, ids: list[str], *, ids_only: bool) -> Iterator[dict[str, Any]]:
        params = {"_id": ",".join(ids), "_count": str(max(len(ids), 1))}
        if ids_only and not self._no_elements:
            params["_elements"] = "id"
        for _answer, page in self._pages(
            rtype, params, f"reconcile {rtype}", versioned=not ids_only
        ):
            yield from page.resources

    # -- paging ------------------------------------------------------------------------------
    def _pages(
        self, rtype: str, params: dict[str, str], phase: str, *, versioned: bool = True
    ) -> Iterator[tuple[Answer, Page]]:
        """Each validated page of a search, following `next` exactly as the server gave it.

        With `options.prefetch`, the next page is downloaded and parsed on a worker thread
        while the caller applies this one (the socket and SQLite release the GIL), so a pull
        runs near the speed of the network instead of network + store. Only the worker uses
        the client while the caller iterates, errors surface where they did without it
        (after the previous page), and leaving the loop waits for the request in flight.
        """
        label = f"search {rtype}"

        def fetch(url: str, query: dict[str, str] | None) -> tuple[Answer, Page]:
            answer = self.client.get(url, params=query, label=label)
            return answer, read_searchset(answer.body, rtype, label, versioned=versioned)

        url: str | None = self.client.url(rtype)
        if not self.options.prefetch:
            query: dict[str, str] | None = params
            while url is not None:
                self.client.check_cancel()
                answer, page = fetch(url, query)
                yield answer, page
                url = self.client.resolve(page.next_link) if page.next_link else None
                query = None
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kerbside-fetch")
        ahead: Future[tuple[Answer, Page]] | None = None
        try:
            self.client.check_cancel()
            if url is not None:
                ahead = pool.submit(fetch, url, params)
            while ahead is not None:
                answer, page = ahead.result()
                ahead = None
                self.client.check_cancel()  # a page that arrived after a cancel is dropped
                bad_link: BadResponse | None = None
                if page.next_link:
                    try:
                        nxt = self.client.resolve(page.next_link)
                    except BadResponse as exc:
                        bad_link = exc
                    else:
                        self.client.check_cancel()
                        ahead = pool.submit(fetch, nxt, None)
                yield answer, page
                if bad_link is not None:
                    raise bad_link
        finally:
            if ahead is not None and not ahead.cancel():
                wait([ahead])  # its answer (or error) is dropped: nobody reads it
            pool.shutdown(wait=True)


def _key(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return instant_key(value)
    except ValueError:
        return None


_FRACTION_RE = re.compile(r"T\d{2}:\d{2}:\d{2}\.(\d+)")


def _precision(instant: str) -> timedelta:
    """How long the instant as written lasts: 1 s for `...:05Z`, 1 ms for `...:05.123Z`."""
    match = _FRACTION_RE.search(instant)
    digits = len(match.group(1)) if match else 0
    return timedelta(microseconds=10 ** max(0, 6 - digits))


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

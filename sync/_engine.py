"""One sync run: discover, policy, push (records, then audit), pull (type by type).

Push goes first so an officer's records reach the centre even if the pull is cut short, and so
the pull brings back the centre's copies of them. A run stops at the first error that is not
about a single record (SyncError); everything committed before it stays committed and is
consistent: each page, each sent record, each audit batch is one local transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sync._bulk import BulkLoad, offers_bulk
from sync._capabilities import Capabilities, parse_capabilities
from sync._client import FhirClient
from sync._exceptions import BadResponse, DeviceRevoked, ServerRejected, Unsupported
from sync._ports import SyncStore
from sync._pull import Puller
from sync._push import Pusher
from sync._report import Progress, SyncOptions, SyncReport
from sync._run import RunContext

log = logging.getLogger("kerbside.sync")

RUNS_KEY = "sync.runs"
# Settings the centre may set, and the bounds we accept (a typo must not lock a tablet for a
# year or never). Parameter names may use - or _ (`cache-ttl-hours` or `cache_ttl_hours`).
POLICY_LIMITS = {
    "cache_ttl_hours": (1.0, 24.0 * 90),
    "purge_after_hours": (1.0, 24.0 * 365),
    "idle_lock_minutes": (1.0, 240.0),
}


def _no_progress(phase: str, done: int, total: int | None) -> None:
    pass


class SyncEngine:
    """Runs sync between a FhirClient and a SyncStore. One run at a time per store.

    `progress(phase, done, total)` is called on the calling thread; `cancel` is checked
    between requests and pages (a cancelled run raises Cancelled after its last whole page).
    """

    def __init__(
        self,
        client: FhirClient,
        store: SyncStore,
        options: SyncOptions,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.options = options
        self.progress = progress or _no_progress
        if cancel is not None:
            client.cancel = cancel
        self.capabilities: Capabilities | None = None
        # The run's report so far: what a run that failed part-way had done (pushed, pulled)
        # before it raised.
        self.report = SyncReport()

    def discover(self) -> Capabilities:
        """`GET [base]/metadata`, once per run."""
        if self.capabilities is None:
            answer = self.client.get(self.client.url("metadata"), label="capabilities")
            caps = parse_capabilities(answer.body)
            if caps.fhir_version and not caps.fhir_version.startswith("4.0"):
                raise Unsupported(
                    f"the central record speaks FHIR {caps.fhir_version[:16]}; "
                    "Kerbside syncs with FHIR R4 (4.0.x)"
                )
            self.capabilities = caps
        return self.capabilities

    def run(self) -> SyncReport:
        started = time.monotonic()
        report = self.report = SyncReport()
        client = self.client
        try:
            self.progress("connect", 0, None)
            caps = self.discover()
            report.server = caps.software
            if caps.device_policy:
                self.progress("policy", 0, None)
                report.policy = self.fetch_policy()
            run_number = int(self.store.get_state(RUNS_KEY) or 0) + 1
            run = RunContext(
                client, self.store, caps, self.options, report, self.progress, run_number
            )
            if self.options.push:
                pusher = Pusher(run)
                self.progress("push", 0, None)
                pusher.push_outbox()
                pusher.push_audit()
            if self.options.pull:
                first = self.first_load()
                bulk = (
                    first
                    and offers_bulk(caps, self.options)
                    and BulkLoad(run).run(self.options.types)
                )
                # A paged first load into a cache with nothing to search yet goes through
                # the same bulk-load path: pages are written without index work and every
                # index is built once, below (a neighbour's paged first load keeps home's
                # search answering instead, and indexes page by page).
                paged_bulk = first and not bulk and not self.store.holds_search_data()
                if paged_bulk:
                    self.store.begin_bulk_load()
                puller = Puller(run)
                if bulk:
                    puller.phase_word = "catch-up"
                try:
                    for rtype in self.options.types:
                        puller.pull_type(rtype)
                except BaseException:
                    if paged_bulk:
                        self.store.abandon_bulk_load()  # the mark stays: the next run builds
                    raise
                if self.store.bulk_load_pending():
                    # An earlier load (sync or import) stopped before its index build.
                    self.progress("index", 0, None)
                    self.store.finish_bulk_load()
                self.store.set_state(RUNS_KEY, str(run_number))
        finally:
            report.seconds = round(time.monotonic() - started, 3)
            report.requests = client.requests
            report.retries = client.retries
            report.bytes_received = client.bytes_received
        log.info(
            "sync done: pushed %d, rejected %d, pulled %d, deleted %d in %.2f s",
            report.pushed,
            report.rejected,
            report.pulled,
            report.deleted,
            report.seconds,
        )
        return report

    def first_load(self) -> bool:
        """No type has a cursor: a new cache, a rebuild, or a first load that stopped before
        it set them (cursors move only once a bulk load has written everything)."""
        return all(self.store.cursor(t) is None for t in self.options.types)

    def fetch_policy(self) -> dict[str, float]:
        """`GET [base]/$device-policy` (Kerbside's own operation): a Parameters resource.

        Only known numeric settings within sane bounds are taken; `revoked = true` raises
        DeviceRevoked, as a 401/403 device-revoked signal would.
        """
        try:
            answer = self.client.get(self.client.url("$device-policy"), label="device policy")
        except ServerRejected as exc:
            log.warning("device policy not available (%s)", exc.status)
            return {}
        return parse_policy(answer.body)


def parse_policy(body: Any) -> dict[str, float]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return {}
    policy: dict[str, float] = {}
    params = body.get("parameter")
    if params is not None and not isinstance(params, list):
        raise BadResponse("the central record sent a malformed device policy")
    for param in params or ():
        if not isinstance(param, dict):
            continue
        name = str(param.get("name") or "").replace("-", "_")
        value = next((v for k, v in param.items() if k.startswith("value")), None)
        if name == "revoked" and value is True:
            raise DeviceRevoked("this device has been revoked by the central record")
        if name in POLICY_LIMITS and isinstance(value, int | float) and not isinstance(value, bool):
            lo, hi = POLICY_LIMITS[name]
            policy[name] = float(min(max(value, lo), hi))
    return policy

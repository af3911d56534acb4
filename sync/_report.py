"""Options of a sync run and the report it returns (counts only: no patient data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# (phase, done, total or None): "connect", "push", "audit", "pull Patient", "deletions Flag",
# "reconcile Flag", "policy"; a bulk first load: "export" (the server prepares it), "bulk
# Patient" (its files), "index" (the one index build), then "catch-up Patient" (what changed
# during the export). Called on the sync thread; a UI marshals it to its own thread.
Progress = Callable[[str, int, int | None], None]

KERBSIDE = "https://kerbside.example"


@dataclass(frozen=True)
class AuditIdentity:
    """Who and what an uploaded AuditEvent names: the device and the user systems, and the
    tag system whose code is the local event id (R4 AuditEvent has no `identifier`, so the
    conditional create matches on `_tag`, which every resource type supports)."""

    device_id: str = "unknown-device"
    device_system: str = f"{KERBSIDE}/Id/device"
    user_system: str = f"{KERBSIDE}/Id/user"
    event_tag_system: str = f"{KERBSIDE}/Id/audit-event"


@dataclass(frozen=True)
class SyncOptions:
    """How a run behaves. `types` is the pull order (referenced types first)."""

    types: tuple[str, ...]
    page_size: int = 1000
    # Rescan passes per type when the central record changed under an offset-paged search.
    max_passes: int = 4
    # Id reconciliation (for servers without type history): every N runs, and whenever the
    # server's `_summary=count` differs from the cache's count (`count_check`).
    reconcile_every: int = 20
    count_check: bool = True
    # Look-back on the pull cursor, for servers that commit late with earlier timestamps.
    overlap_s: float = 0.0
    # Look-back on the history cursor, for clock skew between a server's nodes.
    history_margin_s: float = 5.0
    # A cursor's tie set (resources sharing its lastUpdated) counts as completely read, so
    # the next run may ask `gt` instead of `ge`, only once the server's clock was this far
    # past the end of the cursor's timestamp when the pass began.
    settle_s: float = 5.0
    # Pages are fetched one ahead on a worker thread while the current one is applied, and
    # applied in local transactions of up to this many resources (fewer, larger commits:
    # random-id index pages are written once per commit, not once per server page).
    write_batch: int = 10_000
    prefetch: bool = True
    outbox_batch: int = 50
    audit_batch: int = 100
    push: bool = True
    pull: bool = True
    # FHIR Bulk Data for the first load (no cursors yet: a new cache or a rebuild) when the
    # server declares `$export`; `bulk_group` exports a cohort Group instead of the system.
    bulk: bool = True
    bulk_group: str | None = None
    bulk_max_wait_s: float = 3600.0
    # A bulk load parses and prepares in a worker process (both cores; see
    # `sync._pipeline.BulkWorker`), or on the download thread when False, and commits
    # `bulk_commit` resources at a time (fewer commits: the random-id pages of the (type, id)
    # index are encrypted and written once per commit).
    bulk_process: bool = True
    bulk_process_min: int = 20_000  # fewer resources (the manifest's counts): no process start
    bulk_commit: int = 30_000
    audit: AuditIdentity = field(default_factory=AuditIdentity)
    # Problems the device found in its local audit chain: the trail is not uploaded, one
    # "chain broken" AuditEvent tells the centre instead.
    audit_chain_problems: tuple[str, ...] = ()


@dataclass
class Rejection:
    """A field record the server refused: kept locally, shown with the server's reason."""

    client_id: str
    kind: str
    status: int | None
    reason: str


@dataclass
class SyncReport:
    pulled: int = 0  # resources stored because they were new or newer
    pushed: int = 0  # field records the server accepted
    rejected: int = 0  # field records the server refused in this run
    deleted: int = 0  # cached resources removed (history or reconciliation)
    audit_uploaded: int = 0
    audit_chain_broken: bool = False
    merged: int = 0  # pending records re-pointed to a surviving Patient
    seconds: float = 0.0
    pages: int = 0
    received: int = 0  # resources received (before dedupe)
    rescans: int = 0  # extra passes because the result set moved under paging
    requests: int = 0
    retries: int = 0
    bytes_received: int = 0
    pulled_by_type: dict[str, int] = field(default_factory=dict)
    reconciled: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    policy: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    push_blocked: str | None = None
    server: str | None = None
    bulk_export: bool = False  # the first load came through $export

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

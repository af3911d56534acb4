"""What a running reference server holds: its start-up config, the settings an admin can change
live, and the open store, auth, page tokens and export jobs.

Its own module so that the request handlers (`_app`) and the admin API (`_admin`) both depend on
it without depending on each other.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._auth import ADMIN, TABLET, Auth
from ._export import ExportFault, ExportJobs
from ._faults import FaultInjector
from ._model import Clock, Precision, wall_clock_us
from ._search import PageTokens
from ._storage import Store

log = logging.getLogger("sync.reference")

Paging = Literal["keyset", "offset"]
HistoryOrder = Literal["newest-first", "oldest-first"]


@dataclass
class ReferenceConfig:
    """Start-up options (the `serve-reference` flags); `Settings` holds what changes live."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    seed_dir: Path | None = None
    clients: list[tuple[str, str]] = field(default_factory=list)
    admin_clients: list[tuple[str, str]] = field(default_factory=list)
    paging: Paging = "keyset"
    history: bool = True
    history_order: HistoryOrder = "newest-first"
    bulk_export: bool = True  # off: a server without FHIR Bulk Data (tablets page)
    token_lifetime_s: float = 300.0
    page_token_ttl_s: float = 3600.0
    fault_seed: int = 0
    default_count: int = 100
    max_count: int = 1000
    base_path: str = "/fhir"
    journal_size: int = 10_000
    # meta.lastUpdated precision: "us" (each write its own instant), or "ms"/"s" truncated,
    # as a coarser server stamps (many resources then share a timestamp).
    timestamp_precision: Precision = "us"
    # Where the server reads the time (µs since the epoch): stamps, `Date`, page tokens.
    clock: Clock = wall_clock_us


@dataclass
class Settings:
    paging: Paging
    history: bool
    history_order: HistoryOrder
    token_lifetime_s: float
    # Bulk Data: offered at all (off: a server without it), Range requests on its files,
    # a deliberately broken export, and the Retry-After (whole seconds) of a running job.
    bulk_export: bool = True
    export_ranges: bool = True
    export_fault: ExportFault = "none"
    export_retry_after_s: int = 1
    # How long a purpose-of-use AuditEvent covers the same client's record reads (_access.py).
    purpose_window_s: float = 900.0

    def to_json(self) -> dict[str, Any]:
        return {
            "paging": self.paging,
            "history": self.history,
            "history_order": self.history_order,
            "token_lifetime_s": self.token_lifetime_s,
            "bulk_export": self.bulk_export,
            "export_ranges": self.export_ranges,
            "export_fault": self.export_fault,
            "export_retry_after_s": self.export_retry_after_s,
            "purpose_window_s": self.purpose_window_s,
        }


class ReferenceState:
    """Everything a running server holds; the store opens in the app's lifespan."""

    def __init__(self, config: ReferenceConfig, faults: FaultInjector | None = None) -> None:
        self.config = config
        self.faults = faults or FaultInjector(config.fault_seed)
        self.settings = Settings(
            config.paging,
            config.history,
            config.history_order,
            config.token_lifetime_s,
            bulk_export=config.bulk_export,
        )
        self.journal: deque[dict[str, Any]] = deque(maxlen=config.journal_size)
        self.startup_error: BaseException | None = None
        self._store: Store | None = None
        self._auth: Auth | None = None
        self._tokens: PageTokens | None = None
        self._exports: ExportJobs | None = None

    @property
    def exports(self) -> ExportJobs:
        assert self._exports is not None
        return self._exports

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the reference server is not running")
        return self._store

    @property
    def auth(self) -> Auth:
        assert self._auth is not None
        return self._auth

    @property
    def tokens(self) -> PageTokens:
        assert self._tokens is not None
        return self._tokens

    def open(self) -> None:
        """Open the store, seed an empty one, and register the configured clients."""
        store = Store(self.config.data_dir, self.config.timestamp_precision, self.config.clock)
        self._store = store
        self._auth = Auth(store, clock=lambda: self.config.clock() / 1_000_000)
        self._tokens = PageTokens(store.page_key, self.config.page_token_ttl_s)
        self._exports = ExportJobs(store, self.config.data_dir)
        seed = self.config.seed_dir
        if seed is not None:
            if store.is_empty():
                started = time.perf_counter()
                counts = store.seed_ndjson(seed)
                log.info(
                    "seeded %d resources (%s) in %.1f s",
                    sum(counts.values()),
                    ", ".join(f"{t} {n}" for t, n in sorted(counts.items())),
                    time.perf_counter() - started,
                )
            else:
                log.info("store already holds data: seed directory ignored")
        for client_id, secret in self.config.clients:
            self.auth.register(client_id, secret, TABLET)
        for client_id, secret in self.config.admin_clients:
            self.auth.register(client_id, secret, ADMIN)

    def close(self) -> None:
        if self._exports is not None:
            self._exports.close()
            self._exports = None
        if self._store is not None:
            self._store.close()
            self._store = None

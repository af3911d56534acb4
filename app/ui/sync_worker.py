"""The sync controller: runs `app.services.syncing` on its own thread, watches connectivity,
and starts sync by itself when the network returns, on a timer, and on demand.

Why a dedicated QThread and not the ops runner: a sync is one long, cancellable job (minutes
for a first 100k-patient pull) that reports progress as it goes. The runner's pools are for
short ops with one result: a sync there would hold one of the two general workers for minutes
(or, on the one-worker DB pool, make every encounter save and draft wait behind it), and the
runner has no progress channel. So each run gets a `_SyncThread`; the probe, which is short,
does go through the runner.

Progress arrives from the sync thread many times a second; it is coalesced there (at most one
signal per `PROGRESS_INTERVAL_S`, plus every phase change) so the main thread's event queue
never fills with updates it cannot draw anyway.

The cyclic garbage collector is paused while a run is going (`_GcPause`): a full collection
of the heap, which the sync's page churn triggers every few pages, holds the GIL for 70-110 ms
on this 2-core machine, and the GUI thread cannot paint meanwhile (tests/bench/bench_ui_stall.py
found those as the only stalls over 100 ms). Pages are acyclic JSON that reference counting
frees, so nothing piles up; the collector is switched back on when the run ends.

Connectivity has three states: `online`, `offline`, `probing`. The OS view
(`QNetworkInformation`, when a backend loads) is trusted only for "disconnected"; anything
else is confirmed by a cheap `GET [base]/metadata` (`syncing.probe`) on a worker, because
"connected to Wi-Fi" may still mean a captive portal or a dead VPN. A probe also runs on a
timer, which is all there is when no backend loads (offscreen, some Linux boxes).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal
from PySide6.QtNetwork import QNetworkInformation

from app.errors import CacheWiped
from app.services import syncing
from app.services.known_errors import KNOWN_ERRORS
from app.services.session import Session
from app.ui.ops import Op, Runner
from sync import Cancelled, SyncReport, TransientError

log = logging.getLogger("kerbside.ui")

ONLINE = "online"
OFFLINE = "offline"
PROBING = "probing"

PROGRESS_INTERVAL_S = 0.1
DEFAULT_AUTO_SYNC_MINUTES = 15.0
DEFAULT_PROBE_INTERVAL_S = 30.0

# sync_fn(session, progress=..., cancel=...) -> SyncReport, run on the sync thread.
SyncFn = Callable[..., SyncReport]
# probe_fn() -> bool, run on a runner worker.
ProbeFn = Callable[[], bool]


class _GcPause:
    """Pause automatic cyclic collection for the length of a run (see the module docstring).

    Only undoes what it did: if the collector was already off (a host app, a test), it stays
    off. Used on the GUI thread only, so no lock is needed.
    """

    def __init__(self) -> None:
        self.paused = False

    def begin(self) -> None:
        if not self.paused and gc.isenabled():
            gc.disable()
            self.paused = True

    def end(self) -> None:
        if self.paused:
            self.paused = False
            gc.enable()


class _SyncThread(QThread):
    """One sync run. Emits from its own thread; receivers get queued calls on theirs."""

    progressed = Signal(str, int, int)
    succeeded = Signal(object)
    failed = Signal(object)

    def __init__(
        self,
        work: Callable[[Callable[[str, int, int | None], None], threading.Event], SyncReport],
        cancel: threading.Event,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._work = work
        self._cancel = cancel
        self._last_phase: str | None = None
        self._last_emit = 0.0

    def _progress(self, phase: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished_phase = total is not None and done >= total
        if (
            phase != self._last_phase
            or finished_phase
            or now - self._last_emit >= PROGRESS_INTERVAL_S
        ):
            self._last_phase = phase
            self._last_emit = now
            self.progressed.emit(phase, int(done), int(total or 0))

    def run(self) -> None:
        try:
            report = self._work(self._progress, self._cancel)
        except BaseException as exc:  # every outcome, even a bug, goes back to the UI
            self.failed.emit(exc)
            return
        self.succeeded.emit(report)


class SyncController(QObject):
    """Sync for one unlocked session; owns no widget, so any screen can show it.

    Args:
        session: the unlocked session; the sync thread opens its own Store from it.
        runner: the app's `ops.Runner`, used for the connectivity probe.
        auto_sync_minutes: sync this often while online (None: the profile setting
            `auto_sync_minutes`, default 15; 0 turns the timer off).
        probe_interval_s: how often to re-check connectivity (None: setting
            `probe_interval_s`, default 30).
        sync_on_reconnect: start a sync when connectivity returns (and on the first probe
            that finds the central record).
        use_os_network_info: listen to QNetworkInformation (off in some tests).
        sync_fn, probe_fn: replace the service calls (tests, benchmarks).

    Signals:
        sync_started(): a run began (by hand, timer or reconnect).
        progress_changed(str, int, int): phase, done, total (0 when unknown), coalesced.
        sync_finished(object): the `sync.SyncReport` of a run that completed.
        sync_failed(str): a run stopped; one line safe to show.
        sync_cancelled(): a run stopped because `cancel()` was called.
        cache_wiped(str): the centre revoked this device and the cache is gone: the window
            must drop the session and show the unlock screen.
        connectivity_changed(str): `online`, `offline` or `probing`.
        running_changed(bool): a run started or ended (for buttons).
    """

    sync_started = Signal()
    progress_changed = Signal(str, int, int)
    sync_finished = Signal(object)
    sync_failed = Signal(str)
    sync_cancelled = Signal()
    cache_wiped = Signal(str)
    connectivity_changed = Signal(str)
    running_changed = Signal(bool)

    def __init__(
        self,
        session: Session,
        runner: Runner,
        *,
        auto_sync_minutes: float | None = None,
        probe_interval_s: float | None = None,
        sync_on_reconnect: bool = True,
        use_os_network_info: bool = True,
        sync_fn: SyncFn | None = None,
        probe_fn: ProbeFn | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._session = session
        self._runner = runner
        settings = session.profile.settings
        if auto_sync_minutes is None:
            auto_sync_minutes = float(settings.get("auto_sync_minutes", DEFAULT_AUTO_SYNC_MINUTES))
        if probe_interval_s is None:
            probe_interval_s = float(settings.get("probe_interval_s", DEFAULT_PROBE_INTERVAL_S))
        self._sync_fn = sync_fn or syncing.sync_on_worker
        profile = session.profile
        self._probe_fn = probe_fn or (lambda: syncing.probe(profile))
        self._sync_on_reconnect = sync_on_reconnect
        self._state = PROBING
        self._ever_online = False
        self._thread: _SyncThread | None = None
        self._retired: list[_SyncThread] = []
        self._cancel: threading.Event | None = None
        self._probing = False
        self._stopped = False
        self._wiped = False
        self._gc_pause = _GcPause()
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None
        self.last_phase: tuple[str, int, int] | None = None

        self._auto_timer = QTimer(self)
        self._auto_timer.timeout.connect(self._auto_tick)
        if auto_sync_minutes > 0:
            self._auto_timer.start(max(1000, int(auto_sync_minutes * 60_000)))
        self._probe_timer = QTimer(self)
        self._probe_timer.timeout.connect(self.check_connectivity)
        if probe_interval_s > 0:
            self._probe_timer.start(max(200, int(probe_interval_s * 1000)))

        self._net: QNetworkInformation | None = None
        if use_os_network_info:
            self._net = _load_network_information()
            if self._net is not None:
                self._net.reachabilityChanged.connect(self._os_reachability_changed)

    # -- state ---------------------------------------------------------------------------
    @property
    def connectivity(self) -> str:
        return self._state

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    @property
    def network_backend(self) -> str | None:
        """The QNetworkInformation backend in use, or None (probe only)."""
        return self._net.backendName() if self._net is not None else None

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        before = self._state
        self._state = state
        log.info("connectivity: %s", state)
        self.connectivity_changed.emit(state)
        if state == ONLINE and before != ONLINE:
            first = not self._ever_online
            self._ever_online = True
            if self._sync_on_reconnect and not self.is_running:
                log.info("connectivity %s: starting sync", "found" if first else "returned")
                self.start_sync()

    # -- connectivity --------------------------------------------------------------------
    def start(self) -> None:
        """Begin watching: one probe now (the timers are already running)."""
        if self._net is not None and _os_says_disconnected(self._net.reachability()):
            self._set_state(OFFLINE)
            return
        self.check_connectivity()

    def check_connectivity(self) -> None:
        """Probe the central record off the UI thread (skipped while syncing: a running
        sync is its own proof, and its failure tells us more)."""
        if self._probing or self.is_running or self._stopped or self._wiped:
            return
        if self._net is not None and _os_says_disconnected(self._net.reachability()):
            self._set_state(OFFLINE)
            return
        self._probing = True
        if self._state != ONLINE:
            self._set_state(PROBING)
        Op(self, self._probe_fn).on_success(self._probed).on_failure(self._probe_failed).run(
            self._runner
        )

    def _probed(self, reachable: bool) -> None:
        self._probing = False
        if self._stopped:
            return
        self._set_state(ONLINE if reachable else OFFLINE)

    def _probe_failed(self, exc: BaseException) -> None:
        self._probing = False
        log.warning("connectivity probe failed: %s", type(exc).__name__)
        if not self._stopped:
            self._set_state(OFFLINE)

    def _os_reachability_changed(self, reachability: QNetworkInformation.Reachability) -> None:
        if _os_says_disconnected(reachability):
            self._set_state(OFFLINE)
        else:
            self.check_connectivity()

    # -- running sync --------------------------------------------------------------------
    def start_sync(self) -> bool:
        """Start a run now unless one is running; returns whether one started."""
        if self.is_running or self._stopped or self._wiped:
            return False
        session, sync_fn = self._session, self._sync_fn
        cancel = threading.Event()

        def work(
            progress: Callable[[str, int, int | None], None], cancel: threading.Event
        ) -> SyncReport:
            return sync_fn(session, progress=progress, cancel=cancel)

        thread = _SyncThread(work, cancel)
        queued = Qt.ConnectionType.QueuedConnection
        thread.progressed.connect(self._on_progress, queued)
        thread.succeeded.connect(self._on_succeeded, queued)
        thread.failed.connect(self._on_failed, queued)
        thread.finished.connect(self._on_thread_finished, queued)
        self._thread = thread
        self._cancel = cancel
        self.last_phase = None
        log.info("sync started")
        self.sync_started.emit()
        self.running_changed.emit(True)
        self._gc_pause.begin()
        thread.start()
        return True

    def cancel(self) -> None:
        """Ask the run to stop; it ends at its next check (between requests or pages), and
        whatever it already committed stays (each page is its own transaction)."""
        if self._cancel is not None:
            self._cancel.set()

    def _on_progress(self, phase: str, done: int, total: int) -> None:
        if self._thread is None:
            return
        self.last_phase = (phase, done, total)
        self.progress_changed.emit(phase, done, total)

    def _on_succeeded(self, report: SyncReport) -> None:
        self.last_report = report
        self.last_error = None
        log.info(
            "sync finished: %d pulled, %d pushed, %d rejected in %.1f s",
            report.pulled,
            report.pushed,
            report.rejected,
            report.seconds,
        )
        self._finish_run()
        self._set_state(ONLINE)
        self.sync_finished.emit(report)

    def _on_failed(self, exc: BaseException) -> None:
        self._finish_run()
        if isinstance(exc, Cancelled):
            log.info("sync cancelled")
            self.sync_cancelled.emit()
            return
        if isinstance(exc, CacheWiped):
            log.warning("sync: device revoked, cache wiped")
            self._wiped = True
            self.stop()
            self.cache_wiped.emit(str(exc))
            return
        if isinstance(exc, KNOWN_ERRORS):
            message = str(exc)
        else:
            message = "sync stopped because of an unexpected error; it will try again later"
            self._runner.report(exc)  # a bug: to the crash handler (type only is logged)
        log.warning("sync failed: %s", type(exc).__name__)
        self.last_error = message
        if isinstance(exc, TransientError):
            self._set_state(OFFLINE)  # the probe timer will notice when it is back
        self.sync_failed.emit(message)

    def _finish_run(self) -> None:
        """The run has delivered its outcome: a new one may start at once. The QThread is
        still returning from run(), so it is retired, and deleted when `finished` arrives."""
        thread, self._thread = self._thread, None
        self._cancel = None
        self._gc_pause.end()
        if thread is not None:
            self._retired.append(thread)
        self.running_changed.emit(False)

    def _on_thread_finished(self) -> None:
        for thread in [t for t in self._retired if t.isFinished()]:
            self._retired.remove(thread)
            thread.deleteLater()

    def _auto_tick(self) -> None:
        if self._state == ONLINE:
            self.start_sync()
        else:
            self.check_connectivity()

    # -- shutdown ------------------------------------------------------------------------
    def stop(self, timeout_ms: int = 15_000) -> None:
        """Stop timers, cancel a run and wait for its thread (lock to a new user, quit)."""
        self._stopped = True
        self._auto_timer.stop()
        self._probe_timer.stop()
        self.cancel()
        if not self.wait(timeout_ms):
            log.warning("sync thread did not stop within %d ms", timeout_ms)
        self._gc_pause.end()

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until every sync thread has ended (shutdown, tests, benchmarks); their
        outcome signals are still queued for the event loop."""
        threads = [*self._retired, *([self._thread] if self._thread is not None else [])]
        return all(t.wait(timeout_ms) for t in threads)


def _load_network_information() -> QNetworkInformation | None:
    """The OS's network state, if a backend with reachability loads here."""
    try:
        loaded = QNetworkInformation.loadBackendByFeatures(QNetworkInformation.Feature.Reachability)
    except (RuntimeError, TypeError):  # pragma: no cover - very old Qt
        loaded = False
    if not loaded:
        log.info("no network-information backend: connectivity by probe only")
        return None
    info = QNetworkInformation.instance()
    if info is None or not info.supports(QNetworkInformation.Feature.Reachability):
        return None
    log.info("network information from the %s backend", info.backendName())
    return info


def _os_says_disconnected(reachability: Any) -> bool:
    return reachability == QNetworkInformation.Reachability.Disconnected

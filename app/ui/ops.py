"""Background work for the UI: one runner, results delivered on the main thread.

Modelled on Anki's `CollectionOp`/`QueryOp` and its task manager: a plain callable runs on a
worker thread; its result (or exception) is queued back to the main thread through a signal,
where the success or failure callback runs. Each use case is a small factory in
`app.ui.use_cases` returning an `Op`; a screen chains its callbacks and runs it:

    search_op(self, session, words, query, ...).on_success(self._show).run(self._runner)
    save_encounter_op(self, session, inp).on_success(self._saved).run(self._runner)

Rules:
- Service calls never run on the GUI thread: not a search, not one record, not a draft's
  name. The callable never touches a widget. SQLite connections are per thread: the callable
  reaches the cache through `session.on_worker(fn)`, which opens the worker's own Store and
  closes it (the one way; nothing keeps a connection on a pool thread).
- A write says what it changes (`changes=OpChanges(...)`) and runs on a one-worker pool, so
  writers never race each other; reads and network work run on a small general pool, so a
  typed search never queues behind a save. A read that leaves an audit entry (a search that
  showed people, a record opened) stays a read: the entry is one short IMMEDIATE transaction
  that waits on SQLite's lock, not on the writers' queue. After a write succeeds the runner
  broadcasts its `OpChanges` once (`Runner.changes_applied`), and each screen refreshes only
  for what it shows: nothing refreshes a screen by hand after a write.
- Latest request wins: a screen numbers its requests with a `Latest` (`ticket = latest.next()`,
  `Op.for_request(ticket)`); an answer to a superseded request (an earlier query, the person
  selected before) is dropped, never shown over a newer one (hazard H1). The work may ask
  `ticket.current()` to skip what is already superseded.
- With no failure callback, errors reach one standard display: known errors
  (`app.services.known_errors.KNOWN_ERRORS`) are shown as their one-line text
  (`Runner.error_shown`); anything else is a bug and goes to the crash handler, which logs
  the exception type only (no patient data).
- If the parent widget has been deleted, or the request superseded, by the time the work
  finishes, its callbacks are skipped (a closed screen must not be resurrected, a stale answer
  not shown); a deleted parent's errors still reach the standard display, a superseded
  request's known errors are dropped (nobody is waiting for them) and its bugs are not.
- The runner is passed in to each screen, never fetched from a global.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import QApplication

log = logging.getLogger("kerbside.ui")

T = TypeVar("T")


def log_crash(exc: BaseException) -> None:
    """Default crash handler: the type only, since messages may carry patient data."""
    log.error("unexpected error in background work: %s", type(exc).__name__)


class _Delivery(QObject):
    """Lives on the main thread; worker threads emit to it and Qt queues the call across."""

    delivered = Signal(object)


class _Job(QRunnable):
    def __init__(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any, BaseException | None], None],
        delivery: _Delivery,
    ) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._fn = fn
        self._done = done
        self._delivery = delivery

    def run(self) -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = self._fn()
        except BaseException as exc:
            error = exc
        done = self._done
        self._delivery.delivered.emit(lambda: done(result, error))


class Runner(QObject):
    """Thread pools plus the standard display for errors. Create one per application."""

    error_shown = Signal(str)  # a known error's one-line text, for the standard display
    changes_applied = Signal(object)  # the OpChanges of a successful write, once per write
    went_idle = Signal()  # no op is running or waiting

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        workers: int = 2,
        crash_handler: Callable[[BaseException], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, workers))
        self._db_pool = QThreadPool(self)
        self._db_pool.setMaxThreadCount(1)
        self._delivery = _Delivery(self)
        self._delivery.delivered.connect(self._run_on_main, Qt.ConnectionType.QueuedConnection)
        self._crash_handler = crash_handler or log_crash
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def submit(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any, BaseException | None], None],
        *,
        writes: bool = False,
    ) -> None:
        """Run `fn` on a worker; `done(result, error)` then runs on the main thread."""
        self._pending += 1
        pool = self._db_pool if writes else self._pool
        pool.start(_Job(fn, done, self._delivery))

    def _run_on_main(self, call: Callable[[], None]) -> None:
        self._pending -= 1
        try:
            call()
        except Exception as exc:
            self.report(exc)
        finally:
            if self._pending == 0:
                self.went_idle.emit()

    def report(self, exc: BaseException, *, known: bool = True) -> None:
        """The standard display: known errors as one line, anything else to the crash handler.

        `known=False`: a known error is dropped (the answer it belongs to is no longer
        wanted); a bug still goes to the crash handler."""
        from app.services.known_errors import KNOWN_ERRORS  # not at import: sync is heavy

        if isinstance(exc, KNOWN_ERRORS):
            if known:
                self.error_shown.emit(str(exc))
        else:
            self._crash_handler(exc)

    def wait_until_idle(self, timeout_ms: int = 30_000) -> bool:
        """Block until every op has finished and its callbacks ran (tests, shutdown)."""
        import time

        deadline = time.monotonic() + timeout_ms / 1000
        while self._pending:
            remaining = int((deadline - time.monotonic()) * 1000)
            if remaining <= 0:
                return False
            self._pool.waitForDone(min(remaining, 50))
            self._db_pool.waitForDone(min(remaining, 50))
            QApplication.processEvents()
        return True

    def finish_writes(self, timeout_ms: int = 10_000) -> bool:
        """Let queued and running cache writes (a draft kept on hide) finish before the lock
        closes the cache; their callbacks run later on the main thread as usual."""
        return bool(self._db_pool.waitForDone(timeout_ms))

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Stop taking work and wait for running jobs; queued callbacks are dropped."""
        self._pool.clear()
        self._db_pool.clear()
        self._pool.waitForDone(timeout_ms)
        self._db_pool.waitForDone(timeout_ms)


@dataclass(frozen=True, slots=True)
class OpChanges:
    """What a write changed, for the screens that show it (Anki's `OpChanges`).

    `outbox`: a record saved, retried, corrected or discarded (the sync panel's lists and
    counts, the header's sync summary, the open record's contacts). `drafts`: a draft thrown
    away or restored (the sync panel's draft list). A draft's autosave changes neither: the
    panel reads drafts again when it is shown, not every second while the form is typed in.
    """

    outbox: bool = False
    drafts: bool = False


class Latest:
    """The newest of one screen's requests: only its answer is used (latest request wins).

    `next()` numbers a new request (a query typed, a record asked for), which supersedes every
    earlier one; `drop()` supersedes them all without a new one (the screen was cleared, the
    app locked). Numbers are written on the main thread only; a worker may read them through
    `Ticket.current()` (an int read is atomic) to skip work that is already superseded.
    """

    def __init__(self) -> None:
        self._newest = 0

    def next(self) -> Ticket:
        self._newest += 1
        return Ticket(self, self._newest)

    def drop(self) -> None:
        self._newest += 1

    def is_newest(self, number: int) -> bool:
        return number == self._newest


@dataclass(frozen=True, slots=True)
class Ticket:
    """One numbered request of a `Latest`."""

    latest: Latest
    number: int

    def current(self) -> bool:
        """No newer request has been made, and the screen has not dropped this one."""
        return self.latest.is_newest(self.number)


class Op(Generic[T]):
    """One piece of background work with its callbacks. Build, chain, then `run(runner)`.

    With `changes` the work is a write: it runs on the writers' pool and, once it succeeded,
    the runner broadcasts `changes` (before the success callback)."""

    def __init__(
        self, parent: QObject | None, fn: Callable[[], T], *, changes: OpChanges | None = None
    ) -> None:
        self._parent = parent
        self._fn = fn
        self._changes = changes
        self._writes = changes is not None
        self._success: Callable[[T], None] | None = None
        self._failure: Callable[[BaseException], None] | None = None
        self._ticket: Ticket | None = None

    def on_success(self, callback: Callable[[T], None]) -> Op[T]:
        self._success = callback
        return self

    def on_failure(self, callback: Callable[[BaseException], None]) -> Op[T]:
        self._failure = callback
        return self

    def for_request(self, ticket: Ticket) -> Op[T]:
        """Deliver only while `ticket` is its screen's newest request: a slow answer to an
        earlier query or selection is dropped, never shown over a newer one."""
        self._ticket = ticket
        return self

    def run(self, runner: Runner) -> None:
        runner.submit(
            self._fn, lambda result, error: self._finish(runner, result, error), writes=self._writes
        )

    def _parent_alive(self) -> bool:
        return self._parent is None or shiboken6.isValid(self._parent)

    def _finish(self, runner: Runner, result: Any, error: BaseException | None) -> None:
        wanted = self._ticket is None or self._ticket.current()
        alive = self._parent_alive() and wanted
        if error is not None:
            if self._failure is not None and alive:
                self._failure(error)
            else:
                runner.report(error, known=wanted)
            return
        if self._changes is not None:
            runner.changes_applied.emit(self._changes)
        if self._success is not None and alive:
            self._success(result)

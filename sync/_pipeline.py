"""A producer on a worker thread feeding the thread that writes: the bulk-load pipeline.

A bulk load parses (orjson, id and reference extraction: Python holding the GIL) and writes
(SQLCipher encrypting and B-tree work: C with the GIL released). Running the parse on a second
thread lets the two overlap on a 2-core tablet; the queue is bounded so a fast reader never
holds more than a few batches in memory. The connection stays on the caller's thread
(connections are not shared between threads). Used by the bulk first load (download + parse
feeding the store) and by `kerbside import` (NDJSON files feeding the store); it lives in
`sync` because `sync` may not import `app`, while `app` may import `sync`.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
_DONE = object()
# A batch of NDJSON: its lines, or one bytes object of whole lines (split by the worker).
Batch = list[bytes] | bytes


def in_background(items: Iterator[T], depth: int = 3) -> Generator[T, None, None]:
    """Yield `items`, produced on a worker thread up to `depth` ahead. An exception in the
    producer is raised here, in order; leaving the loop early stops the producer."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(_Failure(exc))

    worker = threading.Thread(target=produce, name="kerbside-bulk-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


# -- a preparer in a worker process ------------------------------------------------------------


class Preparer(Protocol):
    """What the store hands a bulk load to run off the writer's thread (and process): turns
    batches of NDJSON lines into what the store writes, and collects what its index build
    needs. Built in the worker by calling the factory (a class is fine), so the factory and
    `parse` must be importable by name (top-level functions, `functools.partial` of them)."""

    def prepare(self, rtype: str, lines: list[bytes], parse: Any, first: int = 1) -> Any: ...

    def finish(self) -> Any: ...


class BulkWorker:
    """A `Preparer` in one worker process, fed batches in order while this process writes.

    Why a process: preparing a batch is Python (orjson, checks, rows, search terms) and holds
    the GIL, so on a thread it takes turns with the writer's own Python (binding rows); in a
    process it runs on the other core, and its cyclic GC is switched off (parsed JSON has no
    cycles), which a process shared with the GUI cannot do. Spawned, never forked (the parent
    may hold Qt and other threads). With `process=False` the same preparer runs on the
    download thread instead (tests, tiny loads).

    The worker exits when told to, and when this process dies (its task queue ends).
    """

    def __init__(self, factory: Callable[[], Preparer], *, process: bool, depth: int = 3) -> None:
        self.depth = depth
        self.failed = False
        self._local: Preparer | None = None
        self._proc: Any = None
        if not process:
            self._local = factory()
            return
        ctx = multiprocessing.get_context("spawn")
        self._tasks: Any = ctx.Queue()  # a feeder thread writes: `put` never blocks the writer
        # Answers through a queue too, so the worker's feeder thread waits for this process to
        # read while the worker prepares the next batch. Through a bare pipe the worker sat in
        # `send` until the writer came back from its commit, and only one batch was ever
        # prepared ahead, whatever `depth` said (the writer waited 9 s of a 26 s 100k load).
        self._answers: Any = ctx.Queue()
        self._proc = ctx.Process(
            target=_serve,
            args=(factory, self._tasks, self._answers),
            name="kerbside-bulk-prepare",
            daemon=True,
        )
        self._proc.start()

    def __enter__(self) -> BulkWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(
        self, rtype: str, batches: Iterator[Batch], parse: Any, first: int = 1
    ) -> Generator[tuple[Any, int], None, None]:
        """(prepared batch, lines in it) for each batch, in order: a batch is a list of lines,
        or one bytes object of whole lines that the worker splits (blank lines dropped).
        `first`: the number of the first line (each batch carries on from the last). Leaving
        early or an error makes `finish` return None (the preparer saw batches that were never
        written)."""
        numbered = _numbered(batches, first)
        if self._local is not None:
            local = self._local
            ok = False
            try:
                yield from in_background(
                    (_prepare(local, rtype, batch, parse, start) for start, batch in numbered),
                    depth=self.depth,
                )
                ok = True
            finally:
                self.failed = self.failed or not ok
            return
        outstanding = 0
        source = in_background(numbered, depth=self.depth)
        ok = False
        try:
            for start, batch in source:
                self._tasks.put(("prepare", (rtype, batch, parse, start)))
                outstanding += 1
                if outstanding >= self.depth:
                    outstanding -= 1
                    yield self._answer()
            while outstanding:
                outstanding -= 1
                yield self._answer()
            ok = True
        finally:
            source.close()
            if not ok:
                self.failed = True
                self._drain(outstanding)

    def finish(self) -> Any:
        """The preparer's `finish()` (what it collected over every batch), or None when a
        batch failed or was left unread."""
        if self.failed:
            return None
        if self._local is not None:
            return self._local.finish()
        self._tasks.put(("finish", ()))
        return self._answer()

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.is_alive():
            self._tasks.put(None)
            proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
            self._tasks.cancel_join_thread()
        self._tasks.close()
        self._answers.close()

    def _answer(self) -> Any:
        # Poll, so a worker that died (killed, out of memory) fails the load instead of
        # hanging it.
        while True:
            try:
                ok, value = self._answers.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._proc.is_alive():
                    self.failed = True
                    raise RuntimeError(
                        "the bulk load's worker process ended unexpectedly"
                    ) from None
        if not ok:
            self.failed = True
            raise value
        return value

    def _drain(self, outstanding: int) -> None:
        """Read the answers still in flight, so the worker is idle and can be told to stop."""
        for _ in range(outstanding):
            try:
                self._answer()
            except RuntimeError:
                return  # the worker is gone
            except Exception:  # noqa: S112 - a later batch's error: the first one is raised
                continue


def _numbered(batches: Iterator[Batch], first: int) -> Iterator[tuple[int, Batch]]:
    for batch in batches:
        yield first, batch
        if isinstance(batch, bytes):
            first += batch.count(b"\n") + (not batch.endswith(b"\n"))
        else:
            first += len(batch)


def _prepare(
    preparer: Preparer, rtype: str, batch: Batch, parse: Any, first: int
) -> tuple[Any, int]:
    """The prepared batch and how many lines it held."""
    if isinstance(batch, bytes):
        batch = [line for line in batch.split(b"\n") if line.strip()]
    return preparer.prepare(rtype, batch, parse, first), len(batch)


def _serve(factory: Callable[[], Preparer], tasks: Any, answers: Any) -> None:
    """The worker process: prepare what comes, in order, until told to stop."""
    answers.cancel_join_thread()  # a parent gone mid-load must not keep this process alive
    preparer = factory()
    quiet = getattr(preparer, "quiet_gc", None)
    if quiet is not None:
        quiet()
    while True:
        try:
            task = tasks.get()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        op, args = task
        try:
            if op == "prepare":
                answer: tuple[bool, Any] = (True, _prepare(preparer, *args))
            else:
                answer = (True, getattr(preparer, op)(*args))
        except Exception as exc:
            answer = (False, _portable(exc))
        answers.put(answer)


def _portable(exc: Exception) -> Exception:
    """The error as the parent can unpickle it (the caller's own error types, normally)."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc

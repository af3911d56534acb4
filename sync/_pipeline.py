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

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def in_background(items: Iterator[T], depth: int = 3) -> Iterator[T]:
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

"""The store's kept JSON is right-sized (`app.store._json.dumps`): orjson 3.12+ returns bytes
whose allocation is at least 4 KiB, which a 1,000,000-patient load's alert rows multiplied to
over a gigabyte. Measured by allocation (tracemalloc), not by time."""

from __future__ import annotations

import tracemalloc

import orjson

from app.store import _json

ALERTS = [["MAPPA", "MAPPA", "staff", None], ["SH", "Self-harm risk", "clinical", "2027-01-01"]]
KEPT = 10_000


def _allocated_by(make: object) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make() for _ in range(KEPT)]  # type: ignore[operator]
        size = tracemalloc.get_traced_memory()[0] - before
        del kept
        return size
    finally:
        tracemalloc.stop()


def test_kept_json_is_the_same_bytes_in_an_allocation_of_its_own_size() -> None:
    assert _json.dumps(ALERTS) == orjson.dumps(ALERTS)
    right_sized = _allocated_by(lambda: _json.dumps(ALERTS))
    assert right_sized < KEPT * 300  # about 110 bytes each, the list included
    # What it guards against, with the orjson installed here (a newer orjson that shrinks
    # its buffer would make this one a no-op, not a failure).
    assert _allocated_by(lambda: orjson.dumps(ALERTS)) >= right_sized

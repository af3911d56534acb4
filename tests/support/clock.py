"""A clock that moves only when the test moves it, for code that takes a clock argument
(the reference server's `ReferenceConfig.clock`, in µs since the epoch)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_US = 1_000_000


class ManualClock:
    """Now, in µs since the epoch; starts at the next whole second of the real clock plus
    `offset` (so stamps look current), then only `set`/`advance`/`next_second` move it.

    Read from the server's thread and moved from the test's: one int, swapped whole."""

    def __init__(self, offset: timedelta = timedelta(milliseconds=100)) -> None:
        real = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        self._us = _to_us(real + offset)

    def __call__(self) -> int:
        return self._us

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._us / _US, UTC)

    def set(self, when: datetime) -> None:
        us = _to_us(when)
        assert us >= self._us, "a manual clock never goes back"
        self._us = us

    def advance(self, by: timedelta) -> None:
        self.set(self.now() + by)

    def next_second(self, offset: timedelta = timedelta(milliseconds=100)) -> datetime:
        """Move to `offset` into the next whole second; returns that second's start."""
        start = self.now().replace(microsecond=0) + timedelta(seconds=1)
        self.set(start + offset)
        return start


def _to_us(when: datetime) -> int:
    return round(when.timestamp() * _US)

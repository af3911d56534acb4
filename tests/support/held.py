"""Late answers on demand: hold a service call's answer on its worker until the test says.

`Holder.wrap(fn)` gives a stand-in for a service function (install it with `monkeypatch`):
the call runs at once, as of when it was asked (its audit entry written, its rows read), and
when the holder is armed its answer then waits on the worker until `release_all()`. So a test
can make a slow answer arrive after newer ones, deterministically: wait until `held()` says
the answer is waiting (`qtbot.waitUntil`), change the selection, release, and wait for the
runner to deliver. No sleeps, no timers.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# A forgotten release must not hang a worker (and the test's teardown) for ever; no test
# waits on this: the test waits for `held()` and releases.
_SAFETY_NET_S = 120.0


class Holder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed = 0
        self._gates: list[threading.Event] = []

    def wrap(self, fn: F) -> F:
        @functools.wraps(fn)
        def held(*args: Any, **kwargs: Any) -> Any:
            answer = fn(*args, **kwargs)
            with self._lock:
                if not self._armed:
                    return answer
                self._armed -= 1
                gate = threading.Event()
                self._gates.append(gate)
            gate.wait(_SAFETY_NET_S)
            with self._lock:
                self._gates.remove(gate)
            return answer

        return held  # type: ignore[return-value]

    def arm(self, count: int = 1) -> None:
        """Hold the answers of the next `count` calls."""
        with self._lock:
            self._armed += count

    @property
    def armed(self) -> int:
        with self._lock:
            return self._armed

    def held(self) -> int:
        """Answers waiting on their workers now."""
        with self._lock:
            return sum(not gate.is_set() for gate in self._gates)

    def release_all(self) -> None:
        """Let every held answer go (in the order they were held) and hold no more."""
        with self._lock:
            self._armed = 0
            gates = list(self._gates)
        for gate in gates:
            gate.set()

"""The runner's "latest request wins" rule (app/ui/ops.py): an answer to a superseded request is
never delivered; its known errors are dropped, its bugs still reach the crash handler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.errors import StoreUnavailable
from app.ui.ops import Latest, Op, Runner


@pytest.fixture
def runner(qapp: Any) -> Iterator[tuple[Runner, list[BaseException], list[str]]]:
    crashes: list[BaseException] = []
    shown: list[str] = []
    made = Runner(workers=2, crash_handler=crashes.append)
    made.error_shown.connect(shown.append)
    yield made, crashes, shown
    made.wait_until_idle(10_000)
    made.shutdown()


def _held(gate: threading.Event, value: Any) -> Any:
    def work() -> Any:
        gate.wait(30)  # released by the test once the newer request has answered
        if isinstance(value, BaseException):
            raise value
        return value

    return work


def test_an_answer_to_a_superseded_request_is_dropped(qtbot: QtBot, runner: Any) -> None:
    run, _crashes, _shown = runner
    latest = Latest()
    answers: list[str] = []
    gate = threading.Event()
    older = latest.next()
    Op(None, _held(gate, "older")).for_request(older).on_success(answers.append).run(run)
    newer = latest.next()
    assert not older.current() and newer.current()
    Op(None, lambda: "newer").for_request(newer).on_success(answers.append).run(run)
    qtbot.waitUntil(lambda: answers == ["newer"], timeout=5_000)
    gate.set()
    assert run.wait_until_idle(10_000)
    assert answers == ["newer"]


def test_dropping_supersedes_every_request_in_flight(qtbot: QtBot, runner: Any) -> None:
    run, _crashes, _shown = runner
    latest = Latest()
    answers: list[str] = []
    gate = threading.Event()
    ticket = latest.next()
    Op(None, _held(gate, "answer")).for_request(ticket).on_success(answers.append).run(run)
    latest.drop()  # the screen was cleared
    gate.set()
    assert run.wait_until_idle(10_000)
    assert answers == [] and not ticket.current()


def test_a_superseded_requests_known_error_is_dropped_and_its_bug_is_not(
    qtbot: QtBot, runner: Any
) -> None:
    run, crashes, shown = runner
    latest = Latest()
    failures: list[BaseException] = []
    gates = threading.Event()
    for error in (StoreUnavailable("the cache is busy"), KeyError("a bug")):
        Op(None, _held(gates, error)).for_request(latest.next()).on_failure(failures.append).run(
            run
        )
    latest.drop()
    gates.set()
    assert run.wait_until_idle(10_000)
    assert failures == [] and shown == []  # nobody waits for that answer any more
    assert [type(c) for c in crashes] == [KeyError]


def test_the_newest_requests_answer_and_errors_are_delivered(qtbot: QtBot, runner: Any) -> None:
    run, _crashes, shown = runner
    answers: list[str] = []

    def busy() -> str:
        raise StoreUnavailable("the cache is busy")

    Op(None, lambda: "answer").for_request(Latest().next()).on_success(answers.append).run(run)
    Op(None, busy).for_request(Latest().next()).run(run)
    assert run.wait_until_idle(10_000)
    assert answers == ["answer"]
    assert shown == ["the cache is busy"]  # the standard display


def test_a_read_never_queues_behind_a_write(qtbot: QtBot, runner: Any) -> None:
    """Typed search is a read: it runs on the general pool while the single writer is busy
    (a save, a draft) rather than waiting for it."""
    from app.ui.ops import OpChanges

    run, _crashes, _shown = runner
    gate = threading.Event()
    writes: list[str] = []
    reads: list[str] = []
    Op(None, _held(gate, "written"), changes=OpChanges(outbox=True)).on_success(writes.append).run(
        run
    )
    Op(None, lambda: "read").on_success(reads.append).run(run)
    qtbot.waitUntil(lambda: reads == ["read"], timeout=5_000)
    assert writes == []  # the write is still running
    gate.set()
    qtbot.waitUntil(lambda: writes == ["written"], timeout=5_000)

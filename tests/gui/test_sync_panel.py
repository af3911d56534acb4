"""The sync panel against the real reference central record on 127.0.0.1: connectivity, last
sync, what is waiting, progress with phase and counts, a refusal shown with its reason and
what to do, cancel by hand, sync by itself when the network returns, and today's encounters.

Everything is real: the SQLCipher profile, HTTP to the reference server, the sync engine on
the controller's QThread, the runner's pools and the widgets.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from app.fhir import display_name_of
from app.services import encounters, syncing
from app.services.session import Session
from app.synthetic import generate_trusts
from app.ui import theme
from app.ui.ops import Op, OpChanges, Runner
from app.ui.sync_panel import SyncPanel
from app.ui.sync_worker import OFFLINE, ONLINE, PROGRESS_INTERVAL_S, SyncController, _SyncThread
from sync.reference import ReferenceServer
from tests.support.gui import clipped, on_screen, shown_text
from tests.support.sync import enrol_sources, trust_servers

LEFT = Qt.MouseButton.LeftButton
PanelFactory = Callable[..., tuple[SyncPanel, SyncController]]


@pytest.fixture
def runner(qapp: QApplication) -> Iterator[Runner]:
    made = Runner(workers=2)
    yield made
    made.wait_until_idle(10_000)
    made.shutdown()


@pytest.fixture
def make_panel(qtbot: QtBot, runner: Runner, tablet: Session) -> Iterator[PanelFactory]:
    """A shown panel with its controller on the tablet session (no OS network backend:
    connectivity comes from the probe, as on a box without one)."""
    theme.apply(QApplication.instance(), theme.DAY)  # type: ignore[arg-type]
    made: list[tuple[SyncPanel, SyncController]] = []

    def factory(
        *, probe_interval_s: float = 0, sync_fn: Any = None, size: tuple[int, int] = (1280, 800)
    ) -> tuple[SyncPanel, SyncController]:
        controller = SyncController(
            tablet,
            runner,
            auto_sync_minutes=0,
            probe_interval_s=probe_interval_s,
            use_os_network_info=False,
            sync_fn=sync_fn,
        )
        panel = SyncPanel(tablet, runner, controller, can_correct=True)
        qtbot.addWidget(panel)
        panel.resize(*size)
        made.append((panel, controller))
        return panel, controller

    yield factory
    for panel, controller in made:
        controller.stop()
        panel.close()
    runner.wait_until_idle(10_000)
    QApplication.processEvents()


def _show_and_first_sync(qtbot: QtBot, panel: SyncPanel, controller: SyncController) -> Any:
    """Show the panel: it starts the controller, whose first probe finds the centre and
    syncs by itself. Returns the report."""
    with qtbot.waitSignal(controller.sync_finished, timeout=60_000) as finished:
        panel.show()
    _settle(qtbot, panel)
    return finished.args[0]


def _settle(qtbot: QtBot, panel: SyncPanel) -> None:
    """Let the panel's background reload finish."""
    with qtbot.waitSignal(panel.refreshed, timeout=10_000):
        panel.refresh()
    QApplication.processEvents()  # rows added to a shown layout are shown on the next turn


def _patients(cohort_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (cohort_dir / "Patient.ndjson").read_text().splitlines()]


def _encounter(patient_id: str, minutes_ago: int = 30) -> encounters.EncounterInput:
    now = datetime.now(UTC)
    return encounters.EncounterInput(
        patient=encounters.KnownPatient(patient_id),
        start=now - timedelta(minutes=minutes_ago),
        end=now - timedelta(minutes=5),
        location="Market square",
        police_incident_ref="WMP-2026-11-20-1042",
        presenting_situation="Shouting at traffic",
        section_136=False,
        outcome="advice-signposting",
        narrative="",
        risk_to_self="low",
    )


# -- status, progress and a first sync by itself ----------------------------------------------
def test_first_contact_syncs_by_itself_with_phase_and_counts(
    qtbot: QtBot,
    make_panel: PanelFactory,
    tablet: Session,
    cohort_dir: Path,
) -> None:
    panel, controller = make_panel()
    qtbot.waitUntil(lambda: panel.last_sync.text() != "Last sync: …", timeout=10_000)
    assert panel.last_sync.text() == "Last successful sync: never"
    seen: list[tuple[str, int, int, bool]] = []

    def watch(_phase: str, _done: int, _total: int) -> None:  # runs after the panel's slot
        seen.append(
            (
                panel.phase.text(),
                panel.progress.value(),
                panel.progress.maximum(),
                panel.progress.isVisible() and panel.cancel_button.isVisible(),
            )
        )

    controller.progress_changed.connect(watch)
    started: list[bool] = []
    controller.sync_started.connect(lambda: started.append(True))
    report = _show_and_first_sync(qtbot, panel, controller)

    assert started == [True]  # nobody pressed anything: the first probe started it
    people = len(_patients(cohort_dir))
    assert report.pulled_by_type.get("Patient") == people
    texts = [text for text, *_ in seen]
    assert any(t.startswith("Connecting") for t in texts)
    people_bars = [
        (v, m) for text, v, m, shown in seen if text.startswith("Downloading people") and shown
    ]
    assert people_bars and people_bars[-1] == (people, people)
    assert f"Downloading people: {people:,} of {people:,}" in texts
    # Done: the bar goes, the outcome and the last sync say so.
    assert not panel.progress.isVisible() and not panel.cancel_button.isVisible()
    assert panel.sync_button.isEnabled() and panel.sync_button.text() == "Sync now"
    assert panel.outcome.text().startswith("✓ Up to date: 0 sent")
    assert panel.connectivity.text().startswith("● Central record reachable")
    assert "just now" in panel.last_sync.text()
    assert panel.waiting.text() == "Nothing waiting to be sent"


def test_sync_runs_on_its_own_thread_and_progress_is_coalesced(
    qtbot: QtBot,
    make_panel: PanelFactory,
) -> None:
    gui_thread = threading.get_ident()
    ran_on: list[int] = []
    raw_calls: list[int] = [0]
    collector_on: list[bool] = []

    def counted_sync(session: Session, *, progress: Any, cancel: threading.Event) -> Any:
        ran_on.append(threading.get_ident())
        collector_on.append(gc.isenabled())

        def every_call(phase: str, done: int, total: int | None) -> None:
            raw_calls[0] += 1
            progress(phase, done, total)

        return syncing.sync_on_worker(session, progress=every_call, cancel=cancel)

    panel, controller = make_panel(sync_fn=counted_sync)
    signals: list[str] = []
    controller.progress_changed.connect(lambda phase, *_: signals.append(phase))
    _show_and_first_sync(qtbot, panel, controller)
    assert ran_on and ran_on[0] != gui_thread
    # Full collections stalled the GUI thread for 70-110 ms mid-sync (bench_ui_stall): the
    # collector is paused for the run and back on after it.
    assert collector_on == [False] and gc.isenabled()
    assert 0 < len(signals) <= raw_calls[0]

    # The coalescing itself, under a flood no real page rate reaches: 20,000 calls in one
    # phase give a handful of signals (time-limited), each phase change still gets through.
    def flood(progress: Callable[[str, int, int | None], None], _cancel: Any) -> Any:
        for done in range(20_000):
            progress("pull Patient", done, 20_000)
        progress("pull Flag", 0, 10)
        return None

    thread = _SyncThread(flood, threading.Event())
    got: list[tuple[str, int, int]] = []
    thread.progressed.connect(lambda *a: got.append(a), Qt.ConnectionType.QueuedConnection)
    started = time.monotonic()
    with qtbot.waitSignal(thread.finished, timeout=10_000):
        thread.start()
    took = time.monotonic() - started
    qtbot.waitUntil(lambda: bool(got) and got[-1][0] == "pull Flag", timeout=5_000)
    assert len(got) <= 3 + took / PROGRESS_INTERVAL_S
    assert [g[0] for g in got].count("pull Flag") == 1


# -- waiting, refused, sent, and today's list ------------------------------------------------
def test_a_refused_record_is_shown_with_its_reason_and_today_lists_every_state(
    qtbot: QtBot,
    make_panel: PanelFactory,
    tablet: Session,
    reference: ReferenceServer,
    cohort_dir: Path,
) -> None:
    panel, controller = make_panel()
    _show_and_first_sync(qtbot, panel, controller)
    ids = [p["id"] for p in _patients(cohort_dir)]
    kept_id, removed_id = ids[0], ids[1]
    sent = encounters.record(tablet, _encounter(kept_id, 50))
    refused = encounters.record(tablet, _encounter(removed_id, 40))
    encounters.save_draft(tablet, "draft-1", {"location": "Half written"})
    _settle(qtbot, panel)
    assert panel.waiting.text() == "2 records waiting to be sent"
    assert sorted(panel.today.states()) == ["draft", "waiting", "waiting"]

    # The centre removes one person meanwhile: a record about them is refused (422).
    admin = reference.session(admin=True)
    answer = admin.delete(f"{reference.base_url}/Patient/{removed_id}", timeout=30)
    assert answer.status_code in (200, 204)
    with qtbot.waitSignal(controller.sync_finished, timeout=60_000) as finished:
        qtbot.mouseClick(panel.sync_button, LEFT)
    report = finished.args[0]
    assert (report.pushed, report.rejected) == (1, 1)
    _settle(qtbot, panel)
    assert "1 refused" in panel.outcome.text()
    assert "✓" not in panel.outcome.text() and "complete" not in panel.outcome.text()
    assert panel.rejected_card.isVisible()
    assert panel.rejected_card.title.text() == "Refused by the central record (1)"
    (row,) = panel.rejected_rows
    assert row.client_id == refused.client_id
    # Issue 11 item 5: who it was about, though they have left the cache; what to do in plain
    # words; the server's text only behind "Details".
    removed = next(p for p in _patients(cohort_dir) if p["id"] == removed_id)
    texts = [w.text() for w in row.findChildren(QLabel)]
    assert display_name_of(removed) in texts
    y, m, d = removed["birthDate"].split("-")
    assert f"Born {d}/{m}/{y}" in row.who_facts.text() and "NHS " in row.who_facts.text()
    assert row.advice.text() == "This person was merged or removed on the central record."
    assert "Pick the person again" in row.todo.text()
    assert "unknown person" in row.todo.text()
    assert not row.reason.isVisible()
    qtbot.mouseClick(row.details_button, LEFT)
    assert row.reason.isVisible()
    assert "Patient that does not exist" in row.reason.text()
    for text in (row.advice.text(), row.todo.text()):
        assert "Patient/" not in text and "Bundle" not in text and "cache" not in text
    assert row.retry_button.isVisible() and row.discard_button.isVisible()
    assert row.correct_button is not None and row.correct_button.isVisible()
    # Tell the officer in today's list too, with every state side by side.
    encounters.record(tablet, _encounter(kept_id, 20))
    _settle(qtbot, panel)
    assert sorted(panel.today.states()) == ["draft", "rejected", "sent", "waiting"]
    assert any(t.startswith("⚠ Rejected") for t in panel.today.badge_texts())
    states = {r.state: r for r in encounters.list_encounters(tablet)}
    assert states["sent"].client_id == sent.client_id
    assert panel.rejected_rows == [row]  # a reload keeps the open row as it is

    # Discard asks why first; the record is then kept as discarded, never deleted.
    qtbot.mouseClick(row.discard_button, LEFT)
    assert row.reasons_box.isVisible()
    with qtbot.waitSignal(panel.resolved, timeout=10_000):
        qtbot.mouseClick(row.reason_buttons["Recorded against the wrong person"], LEFT)
    _settle(qtbot, panel)
    assert not panel.rejected_card.isVisible()
    kept = tablet.store.outbox_row(refused.client_id)
    assert kept is not None and kept.state == "discarded" and kept.reason


def test_cancel_by_hand_stops_and_keeps_what_came(
    qtbot: QtBot,
    make_panel: PanelFactory,
    reference: ReferenceServer,
) -> None:
    # Paged, so every page of people waits 0.4 s and the run is still downloading when the
    # cancel lands. A bulk first load fetches one file in a blink and could finish first on a
    # busy machine (the race this test had once $export arrived).
    reference.configure(bulk_export=False)
    reference.faults.add("latency", path="/fhir/Patient", delay_s=0.4)
    panel, controller = make_panel()
    with qtbot.waitSignal(controller.sync_started, timeout=30_000):
        panel.show()
    qtbot.waitUntil(lambda: panel.phase.text().startswith("Downloading people"), timeout=30_000)
    assert panel.cancel_button.isVisible() and panel.cancel_button.isEnabled()
    with qtbot.waitSignal(controller.sync_cancelled, timeout=20_000):
        qtbot.mouseClick(panel.cancel_button, LEFT)
        assert panel.phase.text() == "Stopping after the current step…"
        assert not panel.cancel_button.isEnabled()
    assert panel.outcome.text().startswith("Sync cancelled")
    assert not controller.is_running and panel.sync_button.isEnabled()
    assert panel.last_sync.text() == "Last successful sync: never"


def test_sync_starts_by_itself_when_the_network_returns(
    qtbot: QtBot,
    make_panel: PanelFactory,
    tablet: Session,
    reference: ReferenceServer,
    cohort_dir: Path,
) -> None:
    panel, controller = make_panel(probe_interval_s=0.25)
    _show_and_first_sync(qtbot, panel, controller)
    reference.stop()
    qtbot.waitUntil(lambda: controller.connectivity == OFFLINE, timeout=15_000)
    assert panel.connectivity.text().startswith("○ Offline")
    record = encounters.record(tablet, _encounter(_patients(cohort_dir)[0]["id"]))
    _settle(qtbot, panel)
    assert panel.waiting.text() == "1 record waiting to be sent"

    with qtbot.waitSignal(controller.sync_finished, timeout=60_000) as finished:
        reference.start()
    assert controller.connectivity == ONLINE
    assert finished.args[0].pushed == 1
    _settle(qtbot, panel)
    assert panel.waiting.text() == "Nothing waiting to be sent"
    assert panel.today.states() == ["sent"]
    row = tablet.store.outbox_row(record.client_id)
    assert row is not None and row.state == "sent"


def settled(panel: SyncPanel, runner: Runner) -> bool:
    """No reload due or running, and no background work left."""
    return not panel.reload_scheduled and runner.wait_until_idle(0)


def test_a_write_reloads_the_panel_once_and_a_draft_autosave_not_at_all(
    qtbot: QtBot, make_panel: PanelFactory, runner: Runner, tablet: Session
) -> None:
    panel, controller = make_panel()
    panel.show()
    # Showing the panel probes the network and may start a first-contact sync whose end
    # reloads the panel too: stop it, and let its queued outcome land, before counting.
    controller.stop()
    qtbot.waitUntil(lambda: settled(panel, runner), timeout=10_000)
    QApplication.processEvents()
    qtbot.waitUntil(lambda: settled(panel, runner), timeout=10_000)
    reloads: list[bool] = []
    panel.refreshed.connect(lambda: reloads.append(True))

    def autosave() -> None:
        tablet.on_worker(lambda s: encounters.save_draft(s, "draft-1", {"location": "Bus station"}))

    Op(None, autosave, changes=OpChanges()).run(runner)
    assert runner.wait_until_idle(10_000)
    assert not panel.reload_scheduled and reloads == []  # typing in the form: no reloads

    Op(None, lambda: None, changes=OpChanges(outbox=True)).run(runner)
    assert runner.wait_until_idle(10_000)
    assert panel.reload_scheduled
    qtbot.waitUntil(lambda: settled(panel, runner), timeout=10_000)
    assert reloads == [True]  # once, however many screens care about the outbox


# -- several central records (issue 14) --------------------------------------------------------
def test_each_central_record_has_a_row_saying_whether_it_synced(
    qtbot: QtBot, runner: Runner, session: Session, tmp_path: Path
) -> None:
    """Home and a neighbour: one row each with state, last sync and counts; the neighbour
    down is its row's "failed" with the reason, and the run's outcome names it (H24), at
    both sizes, day and night, with no text cut."""
    region = tmp_path / "region"
    generate_trusts(2, 0.3, 40, 3, region)
    with trust_servers(tmp_path / "servers", region, 2) as (home, west):
        enrol_sources(session, home, west)
        controller = SyncController(
            session, runner, auto_sync_minutes=0, probe_interval_s=0, use_os_network_info=False
        )
        panel = SyncPanel(session, runner, controller)
        qtbot.addWidget(panel)
        panel.resize(1280, 800)
        try:
            _show_and_first_sync(qtbot, panel, controller)
            assert on_screen(panel, "Central records")
            assert shown_text(qtbot, panel, "Trust 2: sync state") == "✓ Synced"
            assert shown_text(qtbot, panel, "home: sync state") == "✓ Synced"
            people = session.store.count_by_type("Patient", source=2)["Patient"]
            detail = shown_text(qtbot, panel, "Trust 2: last sync and records")
            assert detail.startswith("Last sync ") and detail.endswith(f"{people:,} people")
            assert not on_screen(panel, "Trust 2: why the last sync failed")
            assert shown_text(qtbot, panel, "Last sync result").startswith("✓ Up to date")

            west.stop()
            with qtbot.waitSignal(controller.sync_finished, timeout=60_000):
                controller.start_sync()
            _settle(qtbot, panel)
            state = shown_text(qtbot, panel, "Trust 2: sync state")
            assert state.startswith("✕ Last sync failed")
            assert shown_text(qtbot, panel, "home: sync state") == "✓ Synced"
            assert shown_text(qtbot, panel, "Trust 2: why the last sync failed").startswith(
                "Reason: "
            )
            assert shown_text(qtbot, panel, "Trust 2: last sync and records").endswith(
                f"{people:,} people"  # what it brought is kept, dated by its last good sync
            )
            outcome = shown_text(qtbot, panel, "Last sync result")
            assert "not synced with Trust 2" in outcome and not outcome.startswith("✓")
            for mode in (theme.DAY, theme.NIGHT):
                theme.apply(QApplication.instance(), mode)  # type: ignore[arg-type]
                for size in ((1280, 800), (800, 1280)):
                    panel.resize(*size)
                    QApplication.processEvents()
                    assert clipped(panel.sources_card) == [], (mode, size)
            theme.apply(QApplication.instance(), theme.DAY)  # type: ignore[arg-type]

            # Home down, the neighbour back: the run fails, and the rows say which did what.
            west.restart()
            home.stop()
            with qtbot.waitSignal(controller.sync_failed, timeout=60_000):
                controller.start_sync()
            _settle(qtbot, panel)
            assert shown_text(qtbot, panel, "home: sync state").startswith("✕ Last sync failed")
            assert shown_text(qtbot, panel, "home: why the last sync failed").startswith("Reason: ")
            assert shown_text(qtbot, panel, "Trust 2: sync state") == "✓ Synced"
        finally:
            theme.apply(QApplication.instance(), theme.DAY)  # type: ignore[arg-type]
            controller.stop()
            panel.close()
            runner.wait_until_idle(10_000)


def test_a_source_synced_longer_ago_than_the_cache_limit_reads_out_of_date() -> None:
    from app.services.session import SourceState
    from app.ui.sync_panel import STALE_SOURCE_TEXT, source_state_text

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    state = SourceState(
        "trust-2", "read-only", "Trust 2", "ok", "2026-11-28T12:00:00Z", None, 5, {}
    )
    assert source_state_text(state, timedelta(hours=72), now) == STALE_SOURCE_TEXT
    assert source_state_text(state, timedelta(hours=200), now) == ("✓ Synced", "ok")

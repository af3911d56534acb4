"""The sync screen: is the central record reachable, when did we last sync, what is waiting,
what the server refused and why, and today's encounters.

The panel draws; the `SyncController` (sync_worker.py) runs sync on its own thread. Reads
(today's list, counts, last sync) and resolutions go through the runner, each on its own
connection, so nothing here waits on the cache or the network.

Rejected records never vanish: each is listed with the server's reason and two ways out,
"Retry" (send again as it is, e.g. after the centre fixed a reference) and "Discard" (kept
on the device, marked discarded, with a reason from `encounters.DISCARD_REASONS`), plus
"Correct" when the window wires `correct_requested` to the form.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QBoxLayout,
    QFrame,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpacerItem,
    QVBoxLayout,
    QWidget,
)

from app.nhs_number import format_nhs_number
from app.services import encounters
from app.services.refusals import advice_for, plain_failure
from app.services.session import Session, SourceState
from app.services.today import PanelData
from app.times import (
    clock_text,
    in_london,
    london_today,
    parse_instant,
    short_day_text,
    uk_date,
)
from app.ui.ops import OpChanges, Runner
from app.ui.sync_worker import OFFLINE, ONLINE, PROBING, SyncController
from app.ui.todays_encounters import TodaysEncounters, local_time
from app.ui.use_cases import panel_data_op, resolve_rejected_op
from app.ui.widgets import BigButton, PatientText, SectionCard, label, set_role
from sync import SyncReport

log = logging.getLogger("kerbside.ui")


CONNECTIVITY_TEXT = {
    ONLINE: ("● Central record reachable", "ok"),
    OFFLINE: ("○ Offline: records wait on this device", "stale"),
    PROBING: ("◌ Checking the connection…", "muted"),
}

# Sync phases (sync/_report.py) as the officer reads them; the type follows the phase word.
PHASE_TEXT = {
    "connect": "Connecting",
    "push": "Sending records",
    "audit": "Sending the access log",
    "pull": "Downloading",
    "deletions": "Checking removals",
    "reconcile": "Checking the cache",
    "policy": "Reading device policy",
    "export": "Central record preparing the download",
    "bulk": "Downloading",
    "index": "Building the search index",
    "catch-up": "Checking for changes in",
}
TYPE_TEXT = {
    "Patient": "people", "Flag": "alerts", "CarePlan": "crisis plans",
    "RelatedPerson": "contacts", "CareTeam": "care teams", "Practitioner": "practitioners",
    "Organization": "organisations", "AllergyIntolerance": "allergies",
    "MedicationStatement": "medication", "Condition": "conditions", "Encounter": "contacts",
}  # fmt: skip


# A central record's state on its row (`Session.source_states`): text and style role.
SOURCE_STATE_TEXT = {
    "ok": ("✓ Synced", "ok"),
    "failed": ("✕ Last sync failed: its records may be out of date", "error"),
    "revoked": ("⊘ Access withdrawn: its records were removed from this tablet", "error"),
    "never": ("○ Not synced yet", "muted"),
}
STALE_SOURCE_TEXT = ("! Out of date: not synced within the cache's time limit", "stale")


def source_state_text(
    state: SourceState, stale_after: timedelta, now: datetime | None = None
) -> tuple[str, str]:
    """(text, role) of a central record's state: a source that synced, but longer ago than
    the cache's time limit, reads "out of date", never "synced" (H24)."""
    when = parse_instant(state.last_sync)
    if state.state == "ok" and when is not None:
        if (now or datetime.now(UTC)) - when > stale_after:
            return STALE_SOURCE_TEXT
    return SOURCE_STATE_TEXT.get(state.state, (state.state, "muted"))


def source_detail_text(state: SourceState, now: datetime | None = None) -> str:
    """ "Last sync 21:04 (12 min ago) · 1,234 people" for a central record's row."""
    when = parse_instant(state.last_sync)
    people = f"{state.patients:,} {'person' if state.patients == 1 else 'people'}"
    return f"Last sync {ago_text(when, now)}  ·  {people}"


class _SourceRow(QFrame):
    """One central record on the sync screen: its name, state, last sync and counts, and
    why its last sync failed. Rows are found by their accessible names ("<Trust>: ...")."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.source_name = name
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 6, 0, 6)
        col.setSpacing(2)
        self.title = label("", "h3")
        col.addWidget(self.title)
        self.state = label("", None)
        col.addWidget(self.state)
        self.detail = label("", "muted")
        col.addWidget(self.detail)
        self.reason = label("", "muted")
        col.addWidget(self.reason)  # parented first: shown without a parent, a window

    def show_state(self, state: SourceState, stale_after: timedelta) -> None:
        who = state.label
        self.setAccessibleName(f"Central record {who}")
        if state.is_home:
            # "Home: " before the name (the Trust's own name may end in brackets already).
            self.title.setText(f"Home: {state.display_name}" if state.display_name else "Home")
        else:
            self.title.setText(who)
        self.title.setAccessibleName(f"{who}: name")
        text, role = source_state_text(state, stale_after)
        self.state.setText(text)
        set_role(self.state, role)
        self.state.setAccessibleName(f"{who}: sync state")
        self.detail.setText(source_detail_text(state))
        self.detail.setAccessibleName(f"{who}: last sync and records")
        reason = state.error if state.state == "failed" else None
        self.reason.setText(f"Reason: {reason}" if reason else "")
        self.reason.setAccessibleName(f"{who}: why the last sync failed")
        self.reason.setVisible(bool(reason))


def phase_text(phase: str, done: int, total: int) -> str:
    """ "Downloading people 12,000 of 100,000" from ("pull Patient", 12000, 100000)."""
    word, _, rtype = phase.partition(" ")
    text = PHASE_TEXT.get(word, word.capitalize())
    if rtype:
        text += " " + TYPE_TEXT.get(rtype, rtype)
    if total > 0:
        text += f": {done:,} of {total:,}"
    elif done > 0:
        text += f": {done:,}"
    return text


def ago_text(when: datetime | None, now: datetime | None = None) -> str:
    """ "21:04 (12 min ago)" in Europe/London; "never" when there is no sync yet."""
    if when is None:
        return "never"
    now = now or datetime.now(UTC)
    minutes = int((now - when).total_seconds() // 60)
    local = in_london(when)
    if minutes < 1:
        rel = "just now"
    elif minutes < 60:
        rel = f"{minutes} min ago"
    elif minutes < 48 * 60:
        hours = minutes // 60
        rel = f"{hours} h {minutes % 60} min ago" if hours < 6 else f"{hours} h ago"
    else:
        rel = f"{minutes // (24 * 60)} days ago"
    day = "" if local.date() == london_today(now) else f"{short_day_text(when)} "
    return f"{day}{clock_text(when)} ({rel})"


class _RejectedRow(QFrame):
    """One refused record: who, when, the server's reason, and what to do about it."""

    def __init__(self, item: encounters.EncounterSummary, *, can_correct: bool) -> None:
        super().__init__()
        set_role(self, "card")
        self.client_id = item.client_id
        col = QVBoxLayout(self)
        col.setContentsMargins(16, 12, 16, 12)
        col.setSpacing(6)
        head = QHBoxLayout()
        head.addWidget(label(f"⚠ {local_time(item.start)}", "h3", wrap=False))
        who = PatientText(item.patient_display)
        who.setStyleSheet("font-weight: bold;")
        head.addWidget(who, 1)
        col.addLayout(head)
        # Who it is about as saved: still there when the person has left the cache.
        facts = []
        if item.subject_birth_date:
            facts.append(f"Born {uk_date(item.subject_birth_date)}")
        if item.subject_nhs_number:
            facts.append(f"NHS {format_nhs_number(item.subject_nhs_number)}")
        self.who_facts = PatientText("  ·  ".join(facts))
        self.who_facts.setAccessibleName("Date of birth and NHS number")
        col.addWidget(self.who_facts)  # parented first: shown without a parent, a window
        self.who_facts.setVisible(bool(facts))
        advice = advice_for(item.reason, person_gone=item.person_gone)
        self.advice = label(advice.what, "h3")
        self.advice.setAccessibleName("What happened")
        col.addWidget(self.advice)
        self.todo = label(advice.todo, None)
        self.todo.setAccessibleName("What to do")
        col.addWidget(self.todo)
        # The server's own words, for the team at base: behind "Details", not in the way.
        self.details_button = BigButton(
            "Details ▾", role="link", accessible_name="Show the central record's reason"
        )
        self.details_button.setCheckable(True)
        col.addWidget(self.details_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.reason = label(f"The central record said: {item.reason or 'no reason given'}", "muted")
        self.reason.setAccessibleName("Reason the central record gave")
        self.reason.hide()
        self.details_button.toggled.connect(self._show_details)
        col.addWidget(self.reason)
        # One full-width button a line: side by side, their labels were cut to "view and
        # corr" in a 1280x800 column.
        buttons = QVBoxLayout()
        buttons.setSpacing(8)
        self.correct_button: QPushButton | None = None
        if can_correct:
            self.correct_button = BigButton(
                "Review and correct",
                role="primary",
                accessible_name="Review and correct the record",
            )
            buttons.addWidget(self.correct_button)
        self.retry_button = BigButton(
            "Send again as it is", role="toggle", accessible_name="Send the record again as it is"
        )
        buttons.addWidget(self.retry_button)
        self.discard_button = BigButton(
            "Discard after review", role="toggle", accessible_name="Discard the record after review"
        )
        buttons.addWidget(self.discard_button)
        col.addLayout(buttons)
        # Discard asks why (kept in the audit chain); hidden until asked for.
        self.reasons_box = QWidget()
        reasons = QVBoxLayout(self.reasons_box)
        reasons.setContentsMargins(0, 4, 0, 0)
        reasons.addWidget(label("Why discard it?", "h3"))
        self.reason_buttons: dict[str, QPushButton] = {}
        for text in encounters.DISCARD_REASONS:
            button = BigButton(text, role="toggle", accessible_name=f"Discard: {text}")
            self.reason_buttons[text] = button
            reasons.addWidget(button)
        self.keep_button = BigButton("Keep it", role="toggle", accessible_name="Keep the record")
        self.keep_button.clicked.connect(lambda: self.reasons_box.hide())
        reasons.addWidget(self.keep_button)
        self.reasons_box.hide()
        self.discard_button.clicked.connect(self.reasons_box.show)
        col.addWidget(self.reasons_box)

    def _show_details(self, shown: bool) -> None:
        self.reason.setVisible(shown)
        self.details_button.setText("Details ▴" if shown else "Details ▾")


class SyncPanel(QWidget):
    """The sync screen.

    Args:
        session: the unlocked session (reads open their own connection from it).
        runner: the app's `ops.Runner`.
        controller: the `SyncController` that runs sync and watches connectivity; the panel
            calls `controller.start()` the first time it is shown if nobody has.
        can_correct: offer "Review and correct" on rejected records (the window opens the
            form for them when `correct_requested` fires).

    Signals:
        correct_requested(str): open this rejected record (client id) in the form.
        draft_chosen(str): continue this draft (draft id) in the form.
        refreshed(): the panel's data was reloaded (tests, screenshots).
        resolved(str): a rejected record was settled (client id).
    """

    correct_requested = Signal(str)
    draft_chosen = Signal(str)
    refreshed = Signal()
    resolved = Signal(str)

    def __init__(
        self,
        session: Session,
        runner: Runner,
        controller: SyncController,
        *,
        can_correct: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("syncPanel")
        self.setAccessibleName("Sync")
        self._session = session
        self._runner = runner
        self._controller = controller
        self._can_correct = can_correct
        self._last_sync: datetime | None = None
        self._loading = False
        self._reload_again = False
        self._started_controller = False
        self.data = PanelData()
        self.rejected_rows: list[_RejectedRow] = []
        self.source_rows: dict[str, _SourceRow] = {}
        self._finished_parts: list[str] | None = None  # the last run's counts, once one ran
        self._failed_sources: list[str] = []  # the last run's sources that did not sync
        self._source_phase = ""  # "Trust 2: " while a read-only central record syncs

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("workspace")
        self._columns = QBoxLayout(QBoxLayout.Direction.LeftToRight, body)
        self._columns.setContentsMargins(20, 16, 20, 20)
        self._columns.setSpacing(20)
        left = QVBoxLayout()
        left.setSpacing(16)
        left.addWidget(self._build_status_card())
        left.addWidget(self._build_rejected_card())
        # Side by side, the spare height goes under the left column's cards; stacked, it
        # must not open a gap between them and the right column's (resizeEvent).
        self._left_spare = QSpacerItem(
            0, 0, QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Expanding
        )
        left.addItem(self._left_spare)
        right = QVBoxLayout()
        right.setSpacing(16)
        # Beside the status card when side by side (in view without scrolling at 1280x800);
        # stacked, after the refused records and before today's list.
        right.addWidget(self._build_sources_card())
        today = SectionCard("Today's encounters")
        self.today = TodaysEncounters()
        self.today.draft_chosen.connect(self.draft_chosen)
        today.add(self.today)
        right.addWidget(today)
        right.addStretch(1)
        self._columns.addLayout(left, 1)
        self._columns.addLayout(right, 1)
        self._left, self._right = left, right
        scroll.setWidget(body)
        outer.addWidget(scroll)

        controller.connectivity_changed.connect(self._show_connectivity)
        controller.sync_started.connect(self._on_started)
        controller.progress_changed.connect(self._on_progress)
        controller.sync_finished.connect(self._on_finished)
        controller.sync_failed.connect(self._on_failed)
        controller.sync_cancelled.connect(self._on_cancelled)
        controller.running_changed.connect(self._show_running)
        controller.cache_wiped.connect(self._on_wiped)
        runner.changes_applied.connect(self._on_changes)  # a bound slot: dropped with the panel

        self._tick = QTimer(self)  # "12 min ago" moves on by itself
        self._tick.setInterval(30_000)
        self._tick.timeout.connect(self._show_last_sync)
        self._tick.start()
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.refresh)

        self._show_connectivity(controller.connectivity)
        self._show_running(controller.is_running)
        self.refresh()

    # -- building ------------------------------------------------------------------------
    def _build_status_card(self) -> QWidget:
        card = SectionCard("Sync with the central record")
        self.connectivity = label("", None)
        self.connectivity.setAccessibleName("Connection")
        card.add(self.connectivity)
        self.last_sync = label("Last sync: …", None)
        self.last_sync.setAccessibleName("Last successful sync")
        card.add(self.last_sync)
        self.waiting = label("", "h3")
        self.waiting.setAccessibleName("Records waiting to be sent")
        card.add(self.waiting)
        self.phase = label("", None)
        self.phase.setAccessibleName("Sync progress")
        card.add(self.phase)
        self.progress = QProgressBar()
        self.progress.setMinimumHeight(32)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Sync progress bar")
        card.add(self.progress)
        self.outcome = label("", None)
        self.outcome.setAccessibleName("Last sync result")
        self.outcome.hide()
        card.add(self.outcome)
        # A failure's technical message, for IT: behind "Details", not in the officer's way.
        self.failure_details_button = BigButton(
            "Details ▾", role="link", accessible_name="Show the technical reason"
        )
        self.failure_details_button.setCheckable(True)
        card.add(self.failure_details_button)
        self.failure_details_button.hide()
        self.failure_details = label("", "muted")
        self.failure_details.setAccessibleName("Technical reason")
        card.add(self.failure_details)
        self.failure_details.hide()
        self.failure_details_button.toggled.connect(self.failure_details.setVisible)
        row = QHBoxLayout()
        row.setSpacing(12)
        self.sync_button = BigButton("Sync now", role="primary", accessible_name="Sync now")
        self.sync_button.clicked.connect(self.sync_now)
        self.cancel_button = BigButton("Cancel sync", role="toggle", accessible_name="Cancel sync")
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.sync_button, 2)
        row.addWidget(self.cancel_button, 1)
        card.body.addLayout(row)
        return card

    def _build_sources_card(self) -> QWidget:
        """One row per central record; shown once the profile has more than one (with the
        home source alone, the status card above says it all)."""
        self.sources_card = SectionCard("Central records", accessible_name="Central records")
        # As tall as its rows: stacked, extra height goes below the cards, not between rows.
        self.sources_card.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._sources_box = QVBoxLayout()
        self._sources_box.setSpacing(4)
        self.sources_card.body.addLayout(self._sources_box)
        self.sources_card.hide()
        return self.sources_card

    def _show_sources(self, states: list[SourceState], stale_after: timedelta) -> None:
        wanted = [s.name for s in states]
        for name in [n for n in self.source_rows if n not in wanted]:
            row = self.source_rows.pop(name)
            self._sources_box.removeWidget(row)
            row.deleteLater()
        for state in states:
            if state.name not in self.source_rows:
                self.source_rows[state.name] = _SourceRow(state.name)
                self._sources_box.addWidget(self.source_rows[state.name])
            self.source_rows[state.name].show_state(state, stale_after)
        self.sources_card.setVisible(len(states) > 1)

    def _source_label(self, name: str) -> str:
        for state in self.data.sources:
            if state.name == name:
                return state.label
        return name

    def _build_rejected_card(self) -> QWidget:
        self.rejected_card = SectionCard("Refused by the central record")
        self._rejected_box = QVBoxLayout()
        self._rejected_box.setSpacing(10)
        self.rejected_card.body.addLayout(self._rejected_box)
        self.rejected_card.hide()
        return self.rejected_card

    # -- actions -------------------------------------------------------------------------
    def sync_now(self) -> None:
        if not self._controller.start_sync():
            self.outcome.setText("A sync is already running.")
            self.outcome.show()

    def cancel(self) -> None:
        self._controller.cancel()
        if self.cancel_button.hasFocus():
            self.setFocus(Qt.FocusReason.OtherFocusReason)  # "Sync now" takes it back after
        self.cancel_button.setEnabled(False)
        self.phase.setText("Stopping after the current step…")

    def refresh(self) -> None:
        """Reload counts, lists and last sync off the UI thread."""
        if self._loading:
            self._reload_again = True
            return
        self._loading = True
        panel_data_op(self, self._session).on_success(self._loaded).on_failure(
            self._load_failed
        ).run(self._runner)

    @property
    def reload_scheduled(self) -> bool:
        """A reload is due (a write changed what this panel lists) or running."""
        return self._debounce.isActive() or self._loading

    def _on_changes(self, changes: OpChanges) -> None:
        """A write elsewhere changed what this panel lists: read again, once (debounced)."""
        if changes.outbox or changes.drafts:
            self._debounce.start()

    def _loaded(self, data: PanelData) -> None:
        self._loading = False
        self.data = data
        self._last_sync = data.last_sync
        self._show_last_sync()
        self.waiting.setText(
            "Nothing waiting to be sent"
            if data.waiting == 0
            else f"{data.waiting} record{'s' if data.waiting != 1 else ''} waiting to be sent"
        )
        self._show_rejected(data.rejected)
        self._show_sources(data.sources, data.stale_after)
        self._show_finished()
        self.today.set_rows(data.today, data.drafts, data.draft_people)
        if self._reload_again:  # asked again while this read ran: it may be stale already
            self._reload_again = False
            self.refresh()
            return
        self.refreshed.emit()

    def _load_failed(self, exc: BaseException) -> None:
        self._loading = False
        self._runner.report(exc)

    def _show_rejected(self, rejected: list[encounters.EncounterSummary]) -> None:
        """Rows still refused are kept as they are: a reload (after a sync, a save elsewhere)
        must not fold away the "Why discard it?" choices the officer has just opened."""
        old = {row.client_id: row for row in self.rejected_rows}
        wanted = {item.client_id for item in rejected}
        for client_id, row in old.items():
            if client_id not in wanted:
                self._rejected_box.removeWidget(row)
                row.deleteLater()
        self.rejected_rows = []
        for item in rejected:
            kept = old.get(item.client_id)
            if kept is not None:
                self._rejected_box.removeWidget(kept)  # re-added below, in the new order
                self._rejected_box.addWidget(kept)
                kept.setEnabled(True)  # still refused: a resolve that failed may be tried again
                self.rejected_rows.append(kept)
                continue
            row = _RejectedRow(item, can_correct=self._can_correct)
            cid = item.client_id
            row.retry_button.clicked.connect(lambda _=False, c=cid: self.resolve(c, "retry"))
            for text, button in row.reason_buttons.items():
                button.clicked.connect(
                    lambda _=False, c=cid, t=text: self.resolve(c, "discard", reason=t)
                )
            if row.correct_button is not None:
                row.correct_button.clicked.connect(
                    lambda _=False, c=cid: self.correct_requested.emit(c)
                )
            self._rejected_box.addWidget(row)
            self.rejected_rows.append(row)
        self.rejected_card.setVisible(bool(rejected))
        self.rejected_card.title.setText(f"Refused by the central record ({len(rejected)})")

    def resolve(
        self, client_id: str, action: Literal["retry", "discard"], *, reason: str | None = None
    ) -> None:
        """Settle a rejected record through the service, then refresh (and send a retry)."""

        def done(_result: Any) -> None:
            self.resolved.emit(client_id)  # the refresh comes from the runner's OpChanges
            if action == "retry" and self._controller.connectivity == ONLINE:
                self._controller.start_sync()

        for row in self.rejected_rows:
            if row.client_id == client_id:
                row.setEnabled(False)

        def failed(exc: BaseException) -> None:
            self._runner.report(exc)
            self.refresh()

        resolve_rejected_op(self, self._session, client_id, action, reason=reason).on_success(
            done
        ).on_failure(failed).run(self._runner)

    # -- controller signals -------------------------------------------------------------
    def _show_connectivity(self, state: str) -> None:
        text, role = CONNECTIVITY_TEXT.get(state, (state, "muted"))
        self.connectivity.setText(text)
        set_role(self.connectivity, role)
        self.connectivity.setMinimumHeight(0)
        self._fit_connectivity()

    def _show_running(self, running: bool) -> None:
        """Swap "Sync now" and "Cancel sync", handing the keyboard focus between them.

        A focused button that is disabled or hidden passes the focus down Qt's chain (to the
        header, the nav bar...): hand it over first, so Enter and Space stay on this card.
        """
        focused = QApplication.focusWidget()
        hand_over = focused is not None and focused in (self.sync_button, self.cancel_button, self)
        if running:
            self.cancel_button.setVisible(True)
            self.cancel_button.setEnabled(True)
            if hand_over:
                self.cancel_button.setFocus(Qt.FocusReason.OtherFocusReason)
            self.sync_button.setEnabled(False)
        else:
            self.sync_button.setEnabled(True)
            if hand_over:
                self.sync_button.setFocus(Qt.FocusReason.OtherFocusReason)
            self.cancel_button.setVisible(False)
            self.cancel_button.setEnabled(False)
        self.sync_button.setText("Syncing…" if running else "Sync now")
        self.progress.setVisible(running)
        self.phase.setVisible(running)

    def _on_started(self) -> None:
        self._finished_parts = None
        self._failed_sources = []
        self._source_phase = ""
        self.failure_details_button.setChecked(False)
        self.failure_details_button.hide()
        self.outcome.hide()
        self.phase.setText("Starting…")
        self.progress.setRange(0, 0)  # busy until the first count arrives

    def _on_progress(self, phase: str, done: int, total: int) -> None:
        word, _, name = phase.partition(" ")
        if word == "source":  # the run moved on to a read-only central record
            self._source_phase = f"{self._source_label(name)}: "
            self.phase.setText(f"{self._source_phase}connecting")
            self.progress.setRange(0, 0)
            return
        self.phase.setText(self._source_phase + phase_text(phase, done, total))
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        else:
            self.progress.setRange(0, 0)

    def _on_finished(self, report: SyncReport) -> None:
        parts = [f"{report.pushed} sent", f"{report.pulled:,} updated from the central record"]
        if report.rejected:
            parts.append(f"{report.rejected} refused")
        self._finished_parts = parts
        sources = getattr(report, "sources", {})  # a run over several central records
        self._failed_sources = [
            part.label for part in sources.values() if getattr(part, "state", "ok") != "ok"
        ]
        self._show_finished()
        self.refresh()

    def _show_finished(self) -> None:
        """The last run's result: "✓ Up to date" only when nothing is refused or waiting (a
        green tick beside a refused record reads as "all done")."""
        parts = self._finished_parts
        if parts is None:
            return
        refused, waiting = len(self.data.rejected), self.data.waiting
        failed = self._failed_sources
        if refused or waiting or failed:
            left = []
            if refused:
                left.append(f"{refused} refused: see below")
            if waiting:
                left.append(f"{waiting} still waiting to be sent")
            if failed:
                left.append(f"not synced with {', '.join(failed)}: see Central records")
            self._show_outcome("Sync finished: " + ", ".join(parts + left) + ".", "stale")
        else:
            self._show_outcome("✓ Up to date: " + ", ".join(parts) + ".", "ok")

    def _on_failed(self, message: str) -> None:
        self._finished_parts = None
        self._show_outcome(plain_failure(message), "error")
        self.failure_details.setText(message)
        self.failure_details_button.setChecked(False)
        self.failure_details_button.show()
        self.refresh()

    def _on_cancelled(self) -> None:
        self._finished_parts = None
        self._show_outcome("Sync cancelled. What was already downloaded is kept.", "notice")
        self.refresh()

    def _on_wiped(self, message: str) -> None:
        self._show_outcome(message, "error")
        self.sync_button.setEnabled(False)

    def _show_outcome(self, text: str, role: str) -> None:
        self.outcome.setText(text)
        set_role(self.outcome, role)
        self.outcome.show()

    def _show_last_sync(self) -> None:
        self.last_sync.setText(f"Last successful sync: {ago_text(self._last_sync)}")

    # -- Qt events -------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        if not self._started_controller:
            self._started_controller = True
            self._controller.start()
        self.refresh()
        super().showEvent(event)
        self._fit_connectivity()

    def _fit_connectivity(self) -> None:
        """The connection line wraps with larger text on, but side by side with today's list
        its layout gave it one line's height (the rest was cut): ask the label itself."""
        width = self.connectivity.width()
        if width > 0:
            self.connectivity.setMinimumHeight(self.connectivity.heightForWidth(width))

    def resizeEvent(self, event: QResizeEvent) -> None:
        wide = event.size().width() > event.size().height() and event.size().width() >= 1000
        self._columns.setDirection(
            QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        )
        # Stacked, each column is as tall as its cards: no gap before today's encounters.
        self._columns.setStretch(0, 1 if wide else 0)
        self._columns.setStretch(1, 1 if wide else 0)
        spare = QSizePolicy.Policy.Expanding if wide else QSizePolicy.Policy.Minimum
        self._left_spare.changeSize(0, 0, QSizePolicy.Policy.Minimum, spare)
        self._left.invalidate()
        super().resizeEvent(event)
        self._fit_connectivity()

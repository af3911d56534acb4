"""Today's encounters on this device and where each one is: draft, waiting, sent, rejected.

A display widget only: the sync panel loads the rows (through the runner) and hands them in,
so this never touches a service and can be shown anywhere. Names are patient data: they sit
in non-selectable `PatientText` labels and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.services.encounters import Draft, EncounterSummary
from app.services.refusals import advice_for
from app.times import clock_text, parse_instant
from app.ui.widgets import BigButton, PatientText, label, set_role

# State -> (badge text, style role). Text and a symbol, so the state reads without colour.
STATE_BADGES = {
    "draft": ("✎ Draft", "muted"),
    "waiting": ("↑ Waiting", "stale"),  # an arrow: ⏳ is missing from common fonts
    "sent": ("✓ Sent", "ok"),
    "rejected": ("⚠ Rejected", "error"),
    "discarded": ("✕ Discarded", "muted"),
}


def local_time(instant: datetime | str | None) -> str:
    """`21:04` in Europe/London, for a UTC instant (datetime or ISO text)."""
    when = instant if isinstance(instant, datetime) else parse_instant(instant)
    return "--:--" if when is None else clock_text(when)


class _Row(QFrame):
    def __init__(
        self, when: str, who: str, what: str, state: str, detail: str | None = None
    ) -> None:
        super().__init__()
        set_role(self, "card")
        self.state = state
        row = QHBoxLayout(self)
        self._row = row
        row.setContentsMargins(14, 8, 14, 8)
        row.setSpacing(14)
        time_label = label(when, "h3", wrap=False)
        time_label.setMinimumWidth(70)
        row.addWidget(time_label, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        text.setSpacing(2)
        self.who = PatientText(who)
        self.who.setStyleSheet("font-weight: bold;")
        text.addWidget(self.who)
        text.addWidget(label(what, "muted"))
        if detail:
            text.addWidget(label(detail, "muted"))
        row.addLayout(text, 1)
        badge_text, role = STATE_BADGES.get(state, (state, "muted"))
        self.badge = label(badge_text, role, wrap=False)
        self.badge.setAccessibleName(f"State: {state}")
        row.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        self.action: QPushButton | None = None
        self.setAccessibleName(f"Encounter at {when}, {state}")

    def add_action(self, text: str) -> QPushButton:
        self.action = BigButton(text, role="toggle", accessible_name=text)
        self._row.addWidget(self.action)
        return self.action


class TodaysEncounters(QWidget):
    """The list; `set_rows` replaces it. Drafts first (they still need the officer).

    Signals:
        draft_chosen(str): a draft's "Continue" was tapped (the draft id).
    """

    draft_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Today's encounters")
        self._col = QVBoxLayout(self)
        self._col.setContentsMargins(0, 0, 0, 0)
        self._col.setSpacing(8)
        self.rows: list[_Row] = []
        self._empty = label("No encounters recorded on this device today.", "muted")
        self._col.addWidget(self._empty)
        self._col.addStretch(1)

    def set_rows(
        self,
        summaries: Sequence[EncounterSummary],
        drafts: Sequence[Draft] = (),
        people: Mapping[str, str] | None = None,
    ) -> None:
        for old in self.rows:
            self._col.removeWidget(old)
            old.deleteLater()
        self.rows = []
        for draft in drafts:
            row = _Row(
                local_time(draft.updated_at),
                (people or {}).get(draft.draft_id) or _draft_person(draft),
                "Not saved yet: finish it in the form",
                "draft",
            )
            button = row.add_action("Continue")
            button.clicked.connect(lambda _=False, d=draft.draft_id: self.draft_chosen.emit(d))
            self._add(row)
        for item in summaries:
            detail = None
            if item.state == "rejected" and item.reason:
                # What happened in plain words; the server's text is on the refused card.
                advice = advice_for(item.reason, person_gone=item.person_gone)
                detail = f"Refused: {advice.what} See the refused records."
            what = item.outcome_display + (" · s136" if item.section_136 else "")
            self._add(_Row(local_time(item.start), item.patient_display, what, item.state, detail))
        self._empty.setVisible(not self.rows)

    def _add(self, row: _Row) -> None:
        self._col.insertWidget(self._col.count() - 1, row)
        self.rows.append(row)

    def states(self) -> list[str]:
        return [row.state for row in self.rows]

    def badge_texts(self) -> list[str]:
        return [row.badge.text() for row in self.rows]


def _draft_person(draft: Draft) -> str:
    patient = draft.data.get("patient") if isinstance(draft.data, dict) else None
    if isinstance(patient, dict) and "unidentified" in patient:
        return "Unknown person"
    if isinstance(patient, dict) and patient.get("nhs_number"):
        return "Person by NHS number"
    if isinstance(patient, dict) and "id" in patient:
        return "Person from a record"
    return "Person not chosen yet"

"""One person's record, in the order someone on scene needs it.

Alerts first, as full-width bands that cannot be missed (kind colour + icon shape + text);
then the crisis plan under DOMAIN.md's headings in order, with who-to-call numbers as big
tappable text; care team contacts; medication and allergies; legal status; last contacts
(including this device's own field records and their sync state). The "Record encounter"
button stays pinned at the bottom, in thumb reach.

Opening a record first asks why (Caldicott: justify the purpose). The chooser puts the last
reason used first and highlighted, so the usual case is one tap; the service audits the
opening. The record is read (and the opening audited) on a worker, `use_cases.open_record_op`;
until it comes the reason sheet stays, naming the person. An answer is used only if it is
still wanted: asking about someone else, cancelling, clearing or locking drops the opening in
flight (hazard H1: a slow answer for the person selected before never replaces the one
selected now), and a reload (after a save or a sync) is dropped once another record is shown.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.fhir import staff_safety_note
from app.times import clock_text, uk_date, uk_date_time
from app.ui import theme
from app.ui.identity import IdentityHeader
from app.ui.ops import Latest, Runner
from app.ui.use_cases import open_record_op, refresh_record_op

if TYPE_CHECKING:
    from app.services.records import CrisisPlanView, PatientRecord, PersonView
from app.ui.widgets import (
    AlertBand,
    BigButton,
    PatientText,
    SectionCard,
    label,
)

log = logging.getLogger("kerbside.ui")

REASON_SETTING = "access_reason"
_PHONE = re.compile(r"(?:\+44\s?|0)(?:\d[\s-]?){9,10}\d")
STALE_AFTER = timedelta(hours=24)
GLANCE_NUMBERS = 2  # contacts with a number shown at a glance; the rest behind "+N more"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def _numbered(sentences: list[str]) -> list[str]:
    return [s for s in sentences if _PHONE.search(s)]


def glance_contacts(text: str) -> tuple[list[str], int]:
    """The "who to contact" sentences shown at a glance, and how many were left for "+N more".

    About five contacts pushed "Preferred place of safety" below the fold at 1280x800 (hazard
    H5). Every sentence without a number stays (e.g. "Do not contact the ex-partner."): it is
    short and may be a warning. Of those with a number, the first GLANCE_NUMBERS stay (the plan
    lists the care coordinator and the crisis line first)."""
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    shown: list[str] = []
    hidden = 0
    for sentence in sentences:
        if _PHONE.search(sentence) and len(_numbered(shown)) >= GLANCE_NUMBERS:
            hidden += 1
        else:
            shown.append(sentence)
    return shown, hidden


STATE_TEXT = {
    "waiting": "Recorded on this device — waiting to sync",
    "pending": "Recorded on this device — waiting to sync",
    "sent": "Recorded on this device — sent to the central record",
    "rejected": "Recorded on this device — REJECTED by the central record",
    "discarded": "Recorded on this device — discarded after rejection",
}
# The plan headings an officer acts on, at the top of the record (issue 11 item 4).
GLANCE_SECTIONS = ("what-helps", "who-to-contact", "preferred-place")
JUMP_LINKS = (
    ("plan", "Warning signs, advance statements"),
    ("contacts", "Contacts"),
    ("medication", "Medication"),
    ("legal", "Legal status"),
)
FALLBACK_REASONS: tuple[tuple[str, str], ...] = (("direct-care", "Direct care on scene"),)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """The first present attribute (or key) of `obj`: tolerant of view-model spellings."""
    for name in names:
        if obj is None:
            return default
        if isinstance(obj, dict):
            if name in obj and obj[name] is not None:
                return obj[name]
        elif getattr(obj, name, None) is not None:
            return getattr(obj, name)
    return default


format_date = uk_date  # DD/MM/YYYY (instants by their London date)
format_when = uk_date_time  # DD/MM/YYYY HH:MM on London's clock


def access_reasons() -> list[tuple[str, str]]:
    """(code, label) pairs from the records service, whatever shape it lists them in."""
    try:
        from app.services.records import ACCESS_REASONS
    except ImportError:
        return list(FALLBACK_REASONS)
    if isinstance(ACCESS_REASONS, dict):
        return [(str(k), str(v)) for k, v in ACCESS_REASONS.items()]
    out: list[tuple[str, str]] = []
    for item in ACCESS_REASONS:
        if isinstance(item, tuple | list):
            out.append((str(item[0]), str(item[-1])))
        else:
            out.append(
                (
                    str(_get(item, "code", default=item)),
                    str(_get(item, "label", "display", default=item)),
                )
            )
    return out


def _plan_meta(plan: CrisisPlanView) -> str:
    """ "Plan dated 01/02/2026, by Dr A Shah. Review by 01/08/2026." (and whose, if merged)."""
    meta = f"Plan dated {format_date(plan.created)}" if plan.created else "Plan date unknown"
    if plan.author:
        meta += f", by {plan.author}"
    if plan.source:
        meta += f" ({plan.source})"
    if plan.review_date:
        meta += f". Review by {format_date(plan.review_date)}"
    return meta + "."


class PhoneButton(BigButton):
    """A phone number as large tappable text; tapping asks the platform to dial it."""

    def __init__(self, number: str, who: str | None = None, parent: QWidget | None = None) -> None:
        text = f"☎ {number}" + (f"  {who}" if who else "")
        name = f"Call {number}" + (f" {who}" if who else "")
        super().__init__(text, role="link", accessible_name=name, parent=parent)
        self.number = number
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.clicked.connect(self._dial)

    def _dial(self) -> None:
        digits = re.sub(r"[^\d+]", "", self.number)
        QDesktopServices.openUrl(QUrl(f"tel:{digits}"))


class ReasonSheet(QFrame):
    """Why is this record being opened? One tap on the remembered default. The online
    look-up's sheet (`lookup_view.LookupReasonSheet`) is this one with its own words."""

    chosen = Signal(str)
    cancelled = Signal()

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        title: str = "Why are you opening this record?",
        note: str = "Every opening is recorded for the audit trail.",
        accessible_name: str = "Reason for opening the record",
        cancel_name: str = "Cancel opening the record",
    ) -> None:
        super().__init__(parent)
        self.setProperty("role", "sheet")
        self.setAccessibleName(accessible_name)
        self._col = QVBoxLayout(self)
        self._col.setContentsMargins(20, 18, 20, 18)
        self._col.setSpacing(10)
        self.title = label(title, "h2")
        self._col.addWidget(self.title)
        self.person = PatientText("", role="h3")
        self._col.addWidget(self.person)
        self.note = label(note, "muted")
        self._col.addWidget(self.note)
        self._buttons: list[BigButton] = []
        self._button_box = QVBoxLayout()
        self._button_box.setSpacing(10)
        self._col.addLayout(self._button_box)
        cancel = BigButton("Cancel", role="bar", accessible_name=cancel_name)
        cancel.clicked.connect(self.cancelled)
        self._col.addWidget(cancel)

    def populate(
        self, reasons: list[tuple[str, str]], default: str | None, person: str | None = None
    ) -> None:
        self.person.setText(f"Opening: {person}" if person else "")
        self.person.setVisible(bool(person))
        for button in self._buttons:
            button.setParent(None)
            button.deleteLater()
        self._buttons = []
        ordered = sorted(reasons, key=lambda r: r[0] != default)
        for code, text in ordered:
            button = BigButton(text, accessible_name=f"Reason: {text}")
            if code == default or (default is None and not self._buttons):
                button.setProperty("role", "primary")
                button.setText(f"{text}  ✓")
            button.setProperty("reason", code)
            button.clicked.connect(lambda _=False, c=code: self.chosen.emit(c))
            self._buttons.append(button)
            self._button_box.addWidget(button)
        if self._buttons:
            self._buttons[0].setFocus()

    def buttons(self) -> list[BigButton]:
        return list(self._buttons)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Enter confirms the highlighted reason (the focused one, else the remembered
        default), as the tick on it promises."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._buttons:
            focused = next((b for b in self._buttons if b.hasFocus()), self._buttons[0])
            focused.click()
            return
        super().keyPressEvent(event)


class RecordView(QWidget):
    back_requested = Signal()
    encounter_requested = Signal(str)
    record_shown = Signal(str)
    change_person_requested = Signal()
    shown_changed = Signal()  # the person on this pane changed (or none is shown now)

    def __init__(self, runner: Runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Patient record")
        self._runner = runner
        self._session: Any = None
        self.patient_id: str | None = None
        self._pending_id: str | None = None
        # Whose Patient id the pending one is (a source's sid; None: the home source's), as
        # the search result asking for it said: an id means something only within its source.
        self._pending_source: int | None = None
        self.record: Any = None
        self._opening = Latest()  # the opening whose answer is wanted (one at a time)
        self._opening_id: str | None = None  # whom that opening is for, while it runs
        self._reading = Latest()  # the reload of the shown record whose answer is wanted

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        self._stack = QStackedWidget()
        col.addWidget(self._stack, 1)

        self._empty = label("Choose a person to see their alerts and crisis plan.", "hint")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._stack.addWidget(self._empty)

        sheet_page = QWidget()
        sp = QVBoxLayout(sheet_page)
        sp.setContentsMargins(16, 16, 16, 16)
        self.reason_sheet = ReasonSheet()
        self.reason_sheet.chosen.connect(self._open_with_reason)
        self.reason_sheet.cancelled.connect(self.cancel_reason)
        # Landscape: the sheet at the top; portrait: at the bottom, in one-handed reach.
        sp.addStretch(0)
        sp.addWidget(self.reason_sheet)
        sp.addStretch(1)
        self._sheet_layout = sp
        self._stack.addWidget(sheet_page)

        record_page = QWidget()
        rp = QVBoxLayout(record_page)
        rp.setContentsMargins(0, 0, 0, 0)
        rp.setSpacing(0)
        self.back_button = BigButton(
            "◀ Back to search", role="bar", accessible_name="Back to search"
        )
        self.back_button.clicked.connect(self.back_requested)
        self._back_bar = QFrame()
        self._back_bar.setProperty("role", "topbar")
        bb = QHBoxLayout(self._back_bar)
        bb.setContentsMargins(12, 6, 12, 6)
        bb.addWidget(self.back_button, 0, Qt.AlignmentFlag.AlignLeft)
        self._back_bar.hide()
        rp.addWidget(self._back_bar)
        # Above the scroll area, not in it: whoever the record is scrolled to, it names them.
        self.identity = IdentityHeader()
        self.identity.change_requested.connect(self.change_person_requested)
        self.identity.compare_requested.connect(lambda: self.jump_to("identity"))
        rp.addWidget(self.identity)
        # A sync changed which Trusts' records make up the person shown (issue 14): the record
        # stays the one opened, and this says what changed (hazard H23).
        self.members_bar, self.members_text, self.reopen_button = _notice_bar(
            "Trusts' records changed",
            "What changed in the Trusts' records",
            ("Open again", "Open the record again"),
        )
        self.reopen_button.clicked.connect(self._reopen)
        rp.addWidget(self.members_bar)
        # After an unlock the record is detached from whatever happened meanwhile: say so
        # until the officer confirms it is still the person in front of them.
        self.detached_bar, self.detached_text, self.still_button = _notice_bar(
            None, "Record opened before the lock", ("Still this person", "Still this person")
        )
        self.still_button.clicked.connect(self.attach)
        rp.addWidget(self.detached_bar)
        # A record an online look-up fetched (issue 14 slice 7, hazard H18): one opening's
        # copy, not the cohort's, and erased at its time. Above the scroll area, always seen.
        self.lookup_bar = label("", "notice")
        self.lookup_bar.setAccessibleName("Looked up online")
        self.lookup_bar.setContentsMargins(16, 6, 12, 6)
        rp.addWidget(self.lookup_bar)
        self.lookup_bar.hide()
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        rp.addWidget(self.scroll_area, 1)
        footer = QFrame()
        footer.setProperty("role", "navbar")
        fl = QHBoxLayout(footer)
        fl.setContentsMargins(16, 8, 16, 8)
        self.encounter_button = BigButton("Record encounter", accessible_name="Record encounter")
        self.encounter_button.setProperty("role", "primary")
        self.encounter_button.setProperty("big", True)
        self.encounter_button.clicked.connect(
            lambda: self.patient_id and self.encounter_requested.emit(self.patient_id)
        )
        fl.addWidget(self.encounter_button)
        rp.addWidget(footer)
        self._stack.addWidget(record_page)

    # -- session -----------------------------------------------------------------------------
    def set_session(self, session: Any) -> None:
        self._session = session
        self.clear()

    def clear(self) -> None:
        self.drop_answers()
        self.patient_id = None
        self._pending_id = None
        self._pending_source = None
        self.record = None
        self.identity.clear()
        self.detached_bar.hide()
        self.members_bar.hide()
        self._drop_page()
        self._stack.setCurrentIndex(0)
        self.shown_changed.emit()

    def drop_answers(self) -> None:
        """Whatever opening or reload is in flight, its answer is no longer wanted (cleared,
        locked: the record asked for before the lock is asked for again after it)."""
        self._opening.drop()
        self._opening_id = None
        self._reading.drop()

    def _drop_page(self) -> None:
        """Remove the shown record's widgets."""
        old = self.scroll_area.takeWidget()
        if old is not None:
            old.deleteLater()

    def detach(self, since: str) -> None:
        """Mark the open record as opened before a lock (`since`: when, HH:MM)."""
        if self.record is None:
            return
        self.detached_text.setText(
            f"Opened before the tablet locked ({since}). Check this is still the person "
            "in front of you."
        )
        self.detached_bar.show()

    def attach(self) -> None:
        self.detached_bar.hide()

    def is_detached(self) -> bool:
        return not self.detached_bar.isHidden()

    def set_back_visible(self, visible: bool) -> None:
        """Portrait (the back bar shows): the reason sheet sits at the bottom."""
        self._back_bar.setVisible(visible)
        self._sheet_layout.setStretch(0, 1 if visible else 0)
        self._sheet_layout.setStretch(2, 0 if visible else 1)

    # -- opening -----------------------------------------------------------------------------
    def request_open(
        self, patient_id: str, display_name: str | None = None, *, source: int | None = None
    ) -> None:
        """Ask for the reason, then open (and audit) the record of `source`'s Patient
        `patient_id` (None: the home source's)."""
        if self._session is None:
            return
        self._opening.drop()  # an opening still in flight was for the person asked before
        self._opening_id = None
        self._pending_id = patient_id
        self._pending_source = source
        default = self._session.profile.settings.get(REASON_SETTING)
        self.reason_sheet.populate(access_reasons(), default, display_name)
        self._stack.setCurrentIndex(1)
        self.record_shown.emit(patient_id)

    def showing_reason_sheet(self) -> bool:
        return self._stack.currentIndex() == 1

    def shown_id(self) -> str | None:
        """Whose name is on this pane now: the person the reason sheet asks about, the open
        record's person, or None (nothing shown)."""
        if self._stack.currentIndex() == 1:
            return self._pending_id
        if self._stack.currentIndex() == 2:
            return self.patient_id
        return None

    def shown_ref(self) -> tuple[int | None, str] | None:
        """(sid, id) of whom this pane names now (as `shown_id`); sid None: the home source,
        asked for without naming a source."""
        if self._stack.currentIndex() == 1 and self._pending_id is not None:
            return (self._pending_source, self._pending_id)
        if self._stack.currentIndex() == 2 and self.patient_id is not None:
            return (getattr(self.record, "source", None), self.patient_id)
        return None

    def shown_record_id(self) -> str | None:
        """The person whose record (not reason sheet) is on this pane, or None."""
        return self.patient_id if self._stack.currentIndex() == 2 else None

    def focus_target(self) -> QWidget | None:
        """Where the keyboard starts here: the first reason, or the record (arrow keys
        scroll it); None with nothing shown."""
        if self.showing_reason_sheet():
            buttons = self.reason_sheet.buttons()
            return buttons[0] if buttons else None
        return self.scroll_area if self.record is not None else None

    def cancel_reason(self) -> None:
        if self._stack.currentIndex() != 1:
            return
        self._opening.drop()
        self._opening_id = None
        self._pending_id = None
        self._pending_source = None
        self._stack.setCurrentIndex(2 if self.record is not None else 0)
        self.shown_changed.emit()
        if self.record is None:
            self.back_requested.emit()

    def _open_with_reason(self, reason: str) -> None:
        """Open (and audit) the record of the person the sheet names, on a worker."""
        patient_id = self._pending_id
        if patient_id is None or self._session is None:
            return
        if self._opening_id == patient_id:
            return  # a second tap while it opens: one opening, one audit entry
        if self._session.profile.settings.get(REASON_SETTING) != reason:
            self._session.profile.update_settings(**{REASON_SETTING: reason})
        self._opening_id = patient_id
        ticket = self._opening.next()
        open_record_op(
            self, self._session, patient_id, reason, source=self._pending_source
        ).for_request(ticket).on_success(self._opened).on_failure(self._open_failed).run(
            self._runner
        )

    def _opened(self, record: PatientRecord) -> None:
        self._opening_id = None
        self._pending_id = None
        self._pending_source = None
        self.show_record(record)

    def _open_failed(self, exc: BaseException) -> None:
        self._opening_id = None
        self._runner.report(exc)
        self.cancel_reason()

    def reload(self) -> None:
        """Re-read the open record after a save or sync (no new audit entry), on a worker."""
        if self.record is None or self._session is None:
            return
        # The same opening, new data: the audit log holds only the openings the officer made.
        ticket = self._reading.next()
        refresh_record_op(self, self._session, self.record).for_request(ticket).on_success(
            self._reloaded
        ).run(self._runner)

    def _reloaded(self, record: PatientRecord) -> None:
        if (
            self.record is None
            or self.record.person.patient_id != record.person.patient_id
            or self.record.source != record.source
        ):
            return  # another record is held now (belt and braces: its showing dropped this)
        self._update(record)

    def _reopen(self) -> None:
        """ "Open again" after a sync joined another Trust's record to the person: the same
        person, through the reason sheet (the new Trust's opening is audited)."""
        if self.record is None:
            return
        person = self.record.person
        self.request_open(person.patient_id, person.name, source=self.record.source)

    def reshow(self) -> None:
        """Lay the open record out again from what is held (the text size changed)."""
        if self.record is not None and self.scroll_area.widget() is not None:
            self._update(self.record)

    # -- showing -----------------------------------------------------------------------------
    def show_record(self, record: PatientRecord, *, keep_scroll: bool = False) -> None:
        """Show this record on the pane (an opening; `keep_scroll`: the same one again)."""
        position = self._lay_out(record, keep_scroll=keep_scroll)
        self._stack.setCurrentIndex(2)
        self.scroll_area.verticalScrollBar().setValue(position)
        self.record_shown.emit(record.person.patient_id)

    def _update(self, record: PatientRecord) -> None:
        """The held person's record again (new data, new text size). Behind a reason sheet
        it is laid out in place: the sheet asking about someone else stays on screen."""
        if self.showing_reason_sheet():
            self._lay_out(record, keep_scroll=True)
        else:
            self.show_record(record, keep_scroll=True)

    def _lay_out(self, record: PatientRecord, *, keep_scroll: bool) -> int:
        """Build the record's page; the scroll position to restore once it is shown."""
        if not keep_scroll or self.patient_id != record.person.patient_id:
            self.detached_bar.hide()  # a fresh opening (a reload keeps the notice)
            self._reading.drop()  # a reload of the record shown before is not wanted
        self._show_membership(record)
        self.record = record
        self.patient_id = record.person.patient_id
        position = self.scroll_area.verticalScrollBar().value() if keep_scroll else 0
        self._drop_page()
        self.identity.show_person(
            record.person,
            members=record.members,
            trusts=record.sources,
            home_only=all(sid == 1 for sid, _ in record.members or ((record.source, ""),)),
        )
        self._show_looked_up(record)
        self.scroll_area.setWidget(self._build(record))
        return position

    def _show_looked_up(self, record: PatientRecord) -> None:
        until = getattr(record, "looked_up_until", None)
        if until is None:
            self.lookup_bar.hide()
            return
        self.lookup_bar.setText(
            f"Looked up online — kept until {clock_text(until)}, then erased. Not kept up to "
            "date by sync: only what the Trust held when you opened it."
        )
        self.lookup_bar.show()

    def _show_membership(self, record: PatientRecord) -> None:
        """Say which Trusts' records joined or left the person since it was opened."""
        parts = []
        if record.joined:
            parts.append(
                f"{' and '.join(record.joined)} now also "
                f"{'hold' if len(record.joined) > 1 else 'holds'} a record for this person: "
                "open it again to see it."
            )
        if record.left:
            parts.append(
                f"The record from {' and '.join(record.left)} is no longer joined to this "
                "person (its NHS number is no longer verified there); it is not shown now."
            )
        self.members_text.setText(" ".join(parts))
        self.members_bar.setVisible(bool(parts))
        self.reopen_button.setVisible(bool(record.joined))

    def _build(self, record: PatientRecord) -> QWidget:
        """The record, ordered for one look on scene (issue 11 item 4): alerts as compact
        lines, staff safety first; then the three plan headings an officer acts on (what
        helps, who to contact with numbers, preferred place of safety); jump links to the
        rest; then the rest of the plan, identity details, contacts, medication, legal status
        and last contacts."""
        page = QWidget()
        col = QVBoxLayout(page)
        col.setContentsMargins(16, 10, 16, 16)
        col.setSpacing(8)
        self._sections: dict[str, QWidget] = {}
        col.addWidget(self._person_header(record.person))
        stale = self._staleness_text(record)
        if stale:
            note = label(stale, "stale")
            note.setAccessibleName("Stale data warning")
            col.addWidget(note)
        for alert in record.alerts:
            detail = f"Since {format_date(alert.since)}" if alert.since else None
            subtitle = staff_safety_note(alert.label) if alert.kind == "staff" else None
            col.addWidget(
                AlertBand(alert.kind, alert.label, detail, subtitle=subtitle, source=alert.source)
            )
        if not record.alerts:
            col.addWidget(label("No active alerts recorded.", "muted"))
        col.addWidget(self._glance_card(record.crisis_plan))
        col.addWidget(self._jump_links())
        plan = self._crisis_plan_card(record.crisis_plan)
        self._sections["plan"] = plan
        col.addWidget(plan)
        for index, other in enumerate(record.crisis_plans[1:]):  # other Trusts' plans, whole
            card = self._other_plan_card(other)
            if index == 0:
                self._sections["other-plans"] = card
            col.addWidget(card)
        identity = self._identity_card(record)
        self._sections["identity"] = identity
        col.addWidget(identity)
        contacts = self._contacts_card(record)
        self._sections["contacts"] = contacts
        col.addWidget(contacts)
        medical = self._medical_card(record)
        self._sections["medication"] = medical
        col.addWidget(medical)
        legal = self._legal_card(record)
        self._sections["legal"] = legal
        col.addWidget(legal)
        col.addWidget(self._history_card(record))
        col.addWidget(
            label(
                f"Tablet last updated from the central record {format_when(record.last_refreshed)}"
                if record.last_refreshed
                else "This tablet has never been updated from the central record.",
                "muted",
            )
        )
        col.addStretch(1)
        return page

    def _glance_card(self, plan: CrisisPlanView | None) -> QWidget:
        """What helps, who to contact (numbers as buttons), preferred place: on one screen."""
        card = SectionCard("Crisis plan: at a glance", accessible_name="Crisis plan at a glance")
        if plan is not None and plan.source:
            card.title.setText(f"Crisis plan: at a glance — {plan.source}")
            card.setAccessibleName(f"Crisis plan at a glance, from {plan.source}")
        if plan is None:
            card.add(label("No crisis plan is held for this person.", "muted"))
            return card
        by_code = {section.code: section for section in plan.sections if section.text}
        helps = by_code.get("what-helps")
        if helps is not None:
            card.add_heading(helps.heading)
            card.add_text(helps.text)
        # Who to contact and preferred place side by side: with about five contacts the
        # place fell below the fold at 1280x800 (hazard H5); beside the contacts it cannot.
        row = QWidget()
        # With larger text on, two columns cut the phone numbers: one under the other then.
        columns = QHBoxLayout(row) if theme.text_scale() == 1.0 else QVBoxLayout(row)
        columns.setContentsMargins(0, 0, 0, 0)
        columns.setSpacing(16)
        for code in ("who-to-contact", "preferred-place"):
            section = by_code.get(code)
            if section is None:
                continue
            column = QVBoxLayout()
            column.setSpacing(8)
            column.addWidget(label(section.heading, "h3"))
            if code == "who-to-contact":
                shown, hidden = glance_contacts(section.text)
                column.addWidget(PatientText(" ".join(shown)))
                for number in _PHONE.findall(" ".join(shown)):
                    column.addWidget(PhoneButton(number.strip()))
                if hidden:
                    more = BigButton(
                        f"+{hidden} more to contact",
                        role="chip",
                        accessible_name=f"Go to all {hidden + len(_numbered(shown))} contacts",
                    )
                    more.clicked.connect(lambda _=False: self.jump_to("plan"))
                    column.addWidget(more)
            else:
                column.addWidget(PatientText(section.text))
            column.addStretch(1)
            columns.addLayout(column, 1)
        if columns.count():
            card.add(row)
        if not any(code in by_code for code in GLANCE_SECTIONS):
            card.add(label("The plan has none of these headings: see the full plan.", "muted"))
        return card

    def _jump_links(self) -> QWidget:
        """Buttons to the rest of the record (warning signs, advance statements, medication,
        legal status, contacts): one tap instead of four screens of scrolling."""
        box = QWidget()
        grid = QGridLayout(box)  # two a row: four in one row would be cut in portrait
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(8)
        for index, (key, text) in enumerate(JUMP_LINKS):
            button = BigButton(text, role="chip", accessible_name=f"Go to {text.lower()}")
            button.clicked.connect(lambda _=False, k=key: self.jump_to(k))
            per_row = 2 if theme.text_scale() == 1.0 else 1  # larger text: one a row
            grid.addWidget(button, index // per_row, index % per_row)
        self.jump_bar = box
        return box

    def jump_to(self, key: str) -> None:
        """Scroll so this part of the record is at the top of the pane."""
        target = self._sections.get(key)
        if target is None:
            return
        self.scroll_area.verticalScrollBar().setValue(target.y())

    def _person_header(self, person: PersonView) -> QWidget:
        """Other names, just under the fixed identity header (which has name, DOB, NHS, sex)."""
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(4, 0, 4, 0)
        col.setSpacing(2)
        known = [*person.known_as, *person.aliases]
        if known:
            col.addWidget(PatientText("Known as " + ", ".join(f"“{k}”" for k in known), role="h3"))
        return box

    def _identity_card(self, record: PatientRecord) -> QWidget:
        if record.merged:
            return self._trusts_identity_card(record)
        person = record.person
        card = SectionCard("Identity", accessible_name="Identity details")
        card.add_text(
            f"NHS number {person.nhs_number}" if person.nhs_number else "No NHS number recorded"
        )
        if person.address:
            card.add_text(person.address)
        if person.previous_names:
            card.add_text("Previously " + ", ".join(person.previous_names), role="muted")
        for phone in person.phones:
            card.add(PhoneButton(phone, "(own phone)"))
        return card

    def _trusts_identity_card(self, record: PatientRecord) -> QWidget:
        """A merged person: what each Trust records, side by side in reading order, with the
        fields they disagree on marked (hazard H23)."""
        card = SectionCard("Identity: what each Trust records", accessible_name="Identity details")
        differ = set(record.person.disagreements)
        if differ:
            fields = ", ".join(record.person.disagreements)
            card.add(label(f"Sources disagree on {fields}.", "error"))
        for sourced in record.identities:
            person = sourced.person
            card.add_heading(sourced.source)
            name = person.name + ("  ⚠" if "name" in differ else "")
            card.add_text(name)
            born = (
                f"Born {format_date(person.birth_date)}" if person.birth_date else "Born: unknown"
            )
            card.add_text(born + ("  ⚠" if "date of birth" in differ else ""))
            sex = (person.gender or "sex not recorded").capitalize()
            card.add_text(sex + ("  ⚠" if "sex" in differ else ""))
            card.add_text(
                f"NHS number {person.nhs_number}" if person.nhs_number else "No NHS number recorded"
            )
            known = [*person.known_as, *person.aliases]
            if known:
                card.add_text("Known as " + ", ".join(f"“{k}”" for k in known))
            if person.address:
                card.add_text(person.address)
            if person.previous_names:
                card.add_text("Previously " + ", ".join(person.previous_names), role="muted")
            for phone in person.phones:
                card.add(PhoneButton(phone, "(own phone)"))
        return card

    def _staleness_text(self, record: PatientRecord) -> str | None:
        """A label when the cache may be behind the central record."""
        if record.last_refreshed is None:
            return "This cache has never synced: the information may be incomplete."
        age = datetime.now(UTC) - record.last_refreshed
        ttl = getattr(self._session, "cache_ttl", None) if self._session is not None else None
        limit = min(STALE_AFTER, ttl / 2) if isinstance(ttl, timedelta) else STALE_AFTER
        if age > limit:
            hours = int(age.total_seconds() // 3600)
            ago = f"{hours // 24} days" if hours >= 48 else f"{hours} hours"
            return f"Not synced for {ago}: this information may be out of date."
        return None

    def _crisis_plan_card(self, plan: CrisisPlanView | None) -> QWidget:
        card = SectionCard("Crisis plan: the rest", accessible_name="Crisis plan")
        if plan is None:
            card.add(label("No crisis plan is held for this person.", "muted"))
            return card
        if plan.stale:
            text = "Plan may be out of date"
            if plan.review_date:
                text += f": review was due {format_date(plan.review_date)}"
            card.add(label(text, "stale"))
        for section in plan.sections:
            if section.code == "who-to-contact" and section.text:
                if glance_contacts(section.text)[1]:  # cut short above: all of it here
                    card.add_heading(section.heading + " (all)")
                    card.add_text(section.text)
                    for number in _PHONE.findall(section.text):
                        card.add(PhoneButton(number.strip()))
        for section in plan.sections:
            if not section.text or section.code in GLANCE_SECTIONS:
                continue  # the three at a glance are above
            card.add_heading(section.heading)
            card.add_text(section.text)
            if section.code == "who-to-contact":
                for number in _PHONE.findall(section.text):
                    card.add(PhoneButton(number.strip()))
        card.add(label(_plan_meta(plan), "muted"))
        return card

    def _other_plan_card(self, plan: CrisisPlanView) -> QWidget:
        """Another Trust's current crisis plan, whole (a merged person, issue 14)."""
        card = SectionCard(
            f"Crisis plan from {plan.source}",
            accessible_name=f"Crisis plan from {plan.source}",
        )
        if plan.stale:
            card.add(label("Plan may be out of date", "stale"))
        for section in plan.sections:
            if not section.text:
                continue
            card.add_heading(section.heading)
            card.add_text(section.text)
            if section.code == "who-to-contact":
                for number in _PHONE.findall(section.text):
                    card.add(PhoneButton(number.strip()))
        card.add(label(_plan_meta(plan), "muted"))
        return card

    def _contacts_card(self, record: PatientRecord) -> QWidget:
        card = SectionCard("Who to call", accessible_name="Care team and contacts")
        contacts = list(record.contacts)
        if not contacts and not record.person.gp:
            card.add(label("No contacts held.", "muted"))
        for contact in contacts:
            role = " — ".join(r for r in (contact.role, contact.source) if r)
            card.add_text(contact.name + (f" — {role}" if role else ""), role="h3")
            for phone in contact.phones:
                card.add(PhoneButton(phone))
        if record.person.gp:
            card.add_text(f"{record.person.gp} — GP", role="h3")
            if record.person.gp_phone:
                card.add(PhoneButton(record.person.gp_phone))
        return card

    def _medical_card(self, record: PatientRecord) -> QWidget:
        card = SectionCard("Medication and allergies", accessible_name="Medication and allergies")
        card.add_heading("Allergies")
        if record.allergies:
            for allergy in record.allergies:
                extra = ", ".join(allergy.reactions)
                if allergy.criticality:
                    extra = f"{extra} ({allergy.criticality} criticality)".strip()
                extra = " — ".join(e for e in (extra, allergy.source) if e)
                card.add_text(f"⚠ {allergy.substance}" + (f" — {extra}" if extra else ""))
        else:
            card.add(label("No known allergies recorded.", "muted"))
        card.add_heading("Medication")
        if record.medications:
            for med in record.medications:
                extra = " — ".join(e for e in (med.dosage, med.source) if e)
                card.add_text(f"• {med.name}" + (f" — {extra}" if extra else ""))
        else:
            card.add(label("No current medication recorded.", "muted"))
        if record.conditions:
            card.add_heading("Conditions")
            for condition in record.conditions:
                extra = f" (since {uk_date(condition.onset)})" if condition.onset else ""
                extra += f" — {condition.source}" if condition.source else ""
                card.add_text(f"• {condition.name}{extra}")
        return card

    def _legal_card(self, record: PatientRecord) -> QWidget:
        card = SectionCard("Legal status", accessible_name="Legal status")
        legal = record.legal_status
        if legal is None:
            card.add(label("No legal status recorded.", "muted"))
        else:
            when = f" (as of {format_date(legal.as_of)})" if legal.as_of else ""
            card.add_text(legal.display + when)
        return card

    def _history_card(self, record: PatientRecord) -> QWidget:
        card = SectionCard("Last contacts", accessible_name="Last contacts")
        if not record.last_contacts:
            card.add(label("No recent contacts recorded.", "muted"))
        for item in record.last_contacts:
            card.add_text(f"{format_when(item.when)} — {item.description}", role="h3")
            details = [d for d in (item.provider, item.outcome) if d]
            if details:
                card.add_text(" · ".join(details), role="muted")
            if item.source == "this-device" or item.state:
                text = STATE_TEXT.get(item.state or "", item.state or "On this device")
                if item.reason:
                    text += f": {item.reason}"
                card.add(
                    label(text, "error" if item.state in ("rejected", "discarded") else "notice")
                )
        return card

    # -- for tests and the window ------------------------------------------------------------
    def alert_bands(self) -> list[AlertBand]:
        widget = self.scroll_area.widget()
        return widget.findChildren(AlertBand) if widget is not None else []


def _notice_bar(
    name: str | None, text_name: str, button: tuple[str, str]
) -> tuple[QFrame, QLabel, BigButton]:
    """A hidden notice strip above the record: a line of text and one button beside it
    (`button`: its text and accessible name)."""
    bar = QFrame()
    bar.setProperty("role", "notice")
    if name is not None:
        bar.setAccessibleName(name)
    row = QHBoxLayout(bar)
    row.setContentsMargins(16, 6, 12, 6)
    text = label("", None)
    text.setAccessibleName(text_name)
    row.addWidget(text, 1)
    action = BigButton(button[0], role="bar", accessible_name=button[1])
    row.addWidget(action)
    bar.hide()
    return bar, text, action

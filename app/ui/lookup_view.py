"""Look a person up online ("break the glass", issue 14 slice 7): the reason, the look-up form,
the hits, and the opening. docs/design/multi-trust.md section 7; hazard H18.

Three steps on one page, readable at 1280x800 and 800x1280. Unlike the record view's reason
sheet, this one sits at the top in portrait too: two of its steps are typed into, and the
on-screen keyboard takes the bottom of the screen.

1. The reason sheet (the record view's `ReasonSheet`, with these words and a box for the
   officer's own): emergency treatment (ETREAT) or break the glass (BTG), and why, both
   required. Nothing is looked up without them.
2. The form: NHS number, or family name and date of birth (given name optional). What was
   typed stays when the source refuses or cannot be reached, so nothing is lost.
3. The hits, with only enough to pick the person: name, date of birth, sex, town and the
   postcode's outward part, and a warning for a record marked inactive, deceased or replaced.
   The officer checks these with the person before opening one (hazard H1, H18: thin hits).

Opening a hit fetches that person's record (`use_cases.open_looked_up_op`) and hands the record
card to the window (`record_opened`), which shows it labelled "Looked up online — kept until
HH:MM". The record must be the picked person's (same source, same id): anything else is
refused here, never shown. Answers arrive only while wanted: cancelling, locking or starting
again drops what is in flight (`Latest`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.times import uk_date
from app.ui.ops import Latest, Runner
from app.ui.record_view import ReasonSheet
from app.ui.use_cases import look_up_op, open_looked_up_op
from app.ui.widgets import BigButton, PatientText, label

if TYPE_CHECKING:
    from app.services.lookup import LookupHit, LookupReason, LookupResult, LookupSource
    from app.services.records import PatientRecord

log = logging.getLogger("kerbside.ui")

STEP_REASON, STEP_FORM, STEP_HITS = 0, 1, 2
SEX_TEXT = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Sex unknown"}
MAX_WIDTH = 760


def hit_text(hit: LookupHit) -> str:
    """One hit as the officer reads it: name; date of birth, sex, area; warnings."""
    facts = [
        f"born {uk_date(hit.birth_date, unknown='DOB unknown')}",
        SEX_TEXT.get(hit.gender or "", "Sex not given"),
        hit.area or "no address given",
    ]
    warnings = [
        w
        for w, on in (
            ("recorded as deceased", hit.deceased),
            ("record marked inactive", hit.inactive),
            ("replaced by another record", hit.replaced),
        )
        if on
    ]
    text = f"{hit.name}\n{'  ·  '.join(facts)}"
    return text + (f"\n⚠ {'; '.join(warnings)}" if warnings else "")


class LookupReasonSheet(ReasonSheet):
    """The reason sheet for a look-up: the purpose (one tap) and the officer's words."""

    given = Signal(str, str)  # code, words

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            parent,
            title="Why do you need to look this person up online?",
            note="",
            accessible_name="Reason for the online look-up",
            cancel_name="Cancel the look-up",
        )
        self.problem = label("", "error")
        self.problem.setAccessibleName("Reason problem")
        self.problem.hide()
        self.words = QPlainTextEdit()
        self.words.setAccessibleName("Reason in your own words")
        self.words.setPlaceholderText("What is happening, in your own words (required)")
        self.words.setTabChangesFocus(True)
        self.words.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.words.setFixedHeight(96)
        self.words.textChanged.connect(self.problem.hide)
        index = self._col.indexOf(self.note) + 1
        self._col.insertWidget(index, self.words)
        self._col.insertWidget(index + 1, self.problem)
        self.chosen.connect(self._chosen)

    def ask(self, trust: str) -> None:
        """Fresh for a look-up at `trust`: no purpose chosen, no words."""
        from app.services.lookup import LOOKUP_PURPOSES

        self.note.setText(
            f"Recorded here and at {trust} with your reason before anything is asked. "
            "A record you open is kept on this tablet until the end of the shift, then erased."
        )
        self.words.clear()
        self.problem.hide()
        # No remembered default: breaking the glass is a choice made each time.
        self.populate(list(LOOKUP_PURPOSES), "")
        self.words.setFocus()

    def _chosen(self, code: str) -> None:
        words = self.words.toPlainText().strip()
        if not words:
            self.problem.setText("Say why you need this record, in your own words.")
            self.problem.show()
            self.words.setFocus()
            return
        self.given.emit(code, words)


class LookupView(QWidget):
    """The look-up page. `start` it for one source; it emits the opened record."""

    record_opened = Signal(object)  # PatientRecord of the picked hit
    cancelled = Signal()
    unreachable = Signal(str)  # the source's name: the look-up could not reach it

    def __init__(self, runner: Runner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Look up online")
        self._runner = runner
        self._session: Any = None
        self._source: LookupSource | None = None
        self._reason: LookupReason | None = None
        self._hits: list[LookupHit] = []
        self._searching = Latest()
        self._opening = Latest()
        self._opening_row: int | None = None  # the hit being opened, while it opens
        self._unreachable: set[str] = set()  # sources the last look-up could not reach

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        row = QHBoxLayout(body)
        row.setContentsMargins(16, 16, 16, 16)
        # One step shown at a time, each as tall as its own contents (a stacked widget is as
        # tall as its tallest page, and a short page's lines drift apart in it).
        steps = QWidget()
        steps.setMaximumWidth(MAX_WIDTH)
        steps.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        stack = QVBoxLayout(steps)
        stack.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        row.addWidget(steps, 100, Qt.AlignmentFlag.AlignTop)
        row.addStretch(1)

        self.reason_sheet = LookupReasonSheet()
        self.reason_sheet.given.connect(self._reason_given)
        self.reason_sheet.cancelled.connect(self.cancel)
        self._pages: list[QWidget] = [self.reason_sheet, self._build_form(), self._build_hits()]
        for page in self._pages:
            stack.addWidget(page)
        self._step = STEP_REASON
        self._show_step(STEP_REASON)

    # -- building ----------------------------------------------------------------------------
    def _field(
        self, into: QVBoxLayout | QHBoxLayout, title: str, placeholder: str = ""
    ) -> QLineEdit:
        """A titled one-line field (Enter searches), added to `into`."""
        box = QVBoxLayout()
        box.setSpacing(4)
        box.addWidget(label(title, "h3"))
        edit = QLineEdit()
        edit.setAccessibleName(title)
        edit.setPlaceholderText(placeholder)
        edit.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        edit.returnPressed.connect(self.search)
        box.addWidget(edit)
        into.addLayout(box, 1)
        return edit

    def _build_form(self) -> QWidget:
        page = QFrame()
        page.setProperty("role", "sheet")
        col = QVBoxLayout(page)
        col.setContentsMargins(20, 18, 20, 18)
        col.setSpacing(8)
        self.form_title = label("", "h2")
        col.addWidget(self.form_title)
        self.reason_line = PatientText("", role="muted")
        self.reason_line.setAccessibleName("Reason given")
        col.addWidget(self.reason_line)
        # Names side by side: the whole form and its button fit a landscape screen's page.
        self.nhs_number = self._field(col, "NHS number", "10 digits")
        col.addWidget(label("or", "muted"))
        names = QHBoxLayout()
        self.family = self._field(names, "Family name")
        self.given = self._field(names, "Given name (optional)")
        col.addLayout(names)
        born = QHBoxLayout()
        self.birth_date = self._field(born, "Date of birth", "DD/MM/YYYY")
        born.addStretch(1)
        col.addLayout(born)
        self.form_problem = label("", "error")
        self.form_problem.setAccessibleName("Look-up problem")
        self.form_problem.hide()
        col.addWidget(self.form_problem)
        buttons = QHBoxLayout()
        cancel = BigButton("Cancel", role="bar", accessible_name="Cancel the look-up")
        cancel.clicked.connect(self.cancel)
        self.search_button = BigButton("Search", accessible_name="Search online")
        self.search_button.setProperty("role", "primary")
        self.search_button.clicked.connect(self.search)
        buttons.addWidget(cancel, 1)
        buttons.addWidget(self.search_button, 2)
        col.addLayout(buttons)
        return page

    def _build_hits(self) -> QWidget:
        page = QFrame()
        page.setProperty("role", "sheet")
        col = QVBoxLayout(page)
        col.setContentsMargins(20, 18, 20, 18)
        col.setSpacing(10)
        self.hits_title = label("", "h2")
        self.hits_title.setAccessibleName("Look-up results")
        col.addWidget(self.hits_title)
        col.addWidget(
            label(
                "Check the name, date of birth and area with the person before you open a "
                "record. Only what you open is kept.",
                "muted",
            )
        )
        self.more_notice = label(
            "More people match: add the given name, or search by NHS number.", "notice"
        )
        self.more_notice.setAccessibleName("More people match")
        self.more_notice.hide()
        col.addWidget(self.more_notice)
        self._hit_box = QVBoxLayout()
        self._hit_box.setSpacing(8)
        col.addLayout(self._hit_box)
        self._hit_buttons: list[BigButton] = []
        self.hits_problem = label("", "error")
        self.hits_problem.setAccessibleName("Look-up problem")
        self.hits_problem.hide()
        col.addWidget(self.hits_problem)
        buttons = QHBoxLayout()
        cancel = BigButton("Cancel", role="bar", accessible_name="Cancel the look-up")
        cancel.clicked.connect(self.cancel)
        again = BigButton("Search again", role="bar", accessible_name="Search again")
        again.clicked.connect(self._search_again)
        buttons.addWidget(cancel, 1)
        buttons.addWidget(again, 1)
        col.addLayout(buttons)
        return page

    # -- which sources can be asked ------------------------------------------------------
    def offers(self, session: Any, connectivity: str | None) -> list[tuple[str, str, str | None]]:
        """(name, Trust, why not now or None) of each source a look-up may ask, home first:
        not while the tablet is offline (or still finding out), nor at a source the last
        look-up could not reach until the connection comes back."""
        from app.services.lookup import lookup_sources
        from app.ui.sync_worker import ONLINE, PROBING

        if session is None or session.closed:
            return []
        offers = []
        for source in lookup_sources(session):
            why = None
            if connectivity == PROBING:
                why = f"Checking the connection to {source.trust}…"
            elif connectivity != ONLINE or source.name in self._unreachable:
                why = f"No connection to {source.trust}"
            offers.append((source.name, source.trust, why))
        return offers

    def connectivity_changed(self, state: str) -> None:
        from app.ui.sync_worker import ONLINE

        if state == ONLINE:
            self._unreachable.clear()  # home answered again: every source is tried anew

    def start_for(self, session: Any, source_name: str) -> bool:
        """Start a look-up at the profile's source `source_name` (False: no such source)."""
        from app.services.lookup import lookup_sources

        source = next((s for s in lookup_sources(session) if s.name == source_name), None)
        if source is not None:
            self.start(session, source)
        return source is not None

    # -- the steps ---------------------------------------------------------------------------
    def start(self, session: Any, source: LookupSource) -> None:
        """A new look-up at `source`: the reason first, nothing typed or found before."""
        self.clear()
        self._session = session
        self._source = source
        self.form_title.setText(f"Look up a person at {source.trust}")
        self.search_button.setText(f"Search {source.trust}")
        self.reason_sheet.ask(source.trust)
        self._show_step(STEP_REASON)

    def clear(self) -> None:
        """Forget the look-up (cancelled, locked): answers in flight are dropped, and nothing
        typed or found stays on the page."""
        self._searching.drop()
        self._opening.drop()
        self._opening_row = None
        self._reason = None
        self._source = None
        for edit in (self.nhs_number, self.family, self.given, self.birth_date):
            edit.clear()
        self.reason_sheet.words.clear()
        self.reason_line.setText("")
        self._show_hits([], more=False)
        self.form_problem.hide()
        self.hits_problem.hide()
        self.search_button.setEnabled(True)  # a search dropped in flight gives no answer
        self._show_step(STEP_REASON)

    def cancel(self) -> None:
        self.clear()
        self.cancelled.emit()

    def _show_step(self, step: int) -> None:
        for i, page in enumerate(self._pages):
            page.setVisible(i == step)
        self._step = step

    def step(self) -> int:
        return self._step

    def focus_target(self) -> QWidget | None:
        if self.step() == STEP_REASON:
            return self.reason_sheet.words
        if self.step() == STEP_FORM:
            return self.nhs_number
        return self._hit_buttons[0] if self._hit_buttons else None

    def _reason_given(self, code: str, words: str) -> None:
        from app.services.lookup import LOOKUP_PURPOSES, LookupReason

        self._reason = LookupReason(code, words)
        self.reason_line.setText(f"Reason: {dict(LOOKUP_PURPOSES)[code]} — {words}")
        self._show_step(STEP_FORM)
        self.nhs_number.setFocus()

    def search(self) -> None:
        """Ask the source (on a worker); the form keeps what was typed whatever the answer."""
        from app.services.lookup import LookupQuery

        if self._source is None or self._reason is None or self._session is None:
            return
        number = self.nhs_number.text().strip()
        query = LookupQuery(
            nhs_number=number or None,
            family=None if number else self.family.text().strip() or None,
            given=None if number else self.given.text().strip() or None,
            birth_date=None if number else self.birth_date.text().strip() or None,
        )
        self.form_problem.hide()
        self.search_button.setEnabled(False)
        ticket = self._searching.next()
        look_up_op(self, self._session, self._source.name, query, self._reason).for_request(
            ticket
        ).on_success(self._found).on_failure(self._search_failed).run(self._runner)

    def _found(self, result: LookupResult) -> None:
        self.search_button.setEnabled(True)
        trust = self._source.trust if self._source else ""
        count = len(result.hits)
        self.hits_title.setText(
            f"Nobody found at {trust}"
            if not count
            else f"{count} {'person' if count == 1 else 'people'} found at {trust}"
        )
        self._show_hits(list(result.hits), more=result.more)
        self.hits_problem.hide()
        self._show_step(STEP_HITS)
        target = self.focus_target()
        if target is not None:
            target.setFocus()

    def _search_failed(self, exc: BaseException) -> None:
        self.search_button.setEnabled(True)
        self._failed(exc, self.form_problem)

    def _failed(self, exc: BaseException, where: QLabel) -> None:
        from app.services.known_errors import KNOWN_ERRORS
        from app.services.lookup import LookupFailed

        if not isinstance(exc, KNOWN_ERRORS):
            self._runner.report(exc)  # a bug: the crash handler
            return
        if isinstance(exc, LookupFailed) and exc.offline and self._source is not None:
            self._unreachable.add(self._source.name)
            self.unreachable.emit(self._source.name)
        where.setText(str(exc))
        where.show()

    def _show_hits(self, hits: list[LookupHit], *, more: bool) -> None:
        for button in self._hit_buttons:
            button.setParent(None)
            button.deleteLater()
        self._hit_buttons = []
        self._hits = hits
        for i, hit in enumerate(hits):
            born = uk_date(hit.birth_date, unknown="date of birth unknown")
            button = BigButton(hit_text(hit), accessible_name=f"Open {hit.name}, born {born}")
            button.setProperty("role", "card")
            button.setStyleSheet("text-align: left; padding: 10px 14px;")
            button.clicked.connect(lambda _=False, row=i: self.open_hit(row))
            self._hit_buttons.append(button)
            self._hit_box.addWidget(button)
        self.more_notice.setVisible(more)

    def hits(self) -> list[LookupHit]:
        return list(self._hits)

    def open_hit(self, row: int) -> None:
        """Open the record of the hit in `row` (one opening at a time; a second tap while it
        opens does nothing)."""
        if self._source is None or self._reason is None or self._session is None:
            return
        if not 0 <= row < len(self._hits) or self._opening_row is not None:
            return
        hit = self._hits[row]
        self._opening_row = row
        self.hits_problem.hide()
        for button in self._hit_buttons:
            button.setEnabled(False)
        ticket = self._opening.next()
        open_looked_up_op(self, self._session, self._source.name, hit, self._reason).for_request(
            ticket
        ).on_success(lambda record: self._opened(hit, record)).on_failure(self._open_failed).run(
            self._runner
        )

    def _opened(self, hit: LookupHit, record: PatientRecord) -> None:
        self._opening_row = None
        for button in self._hit_buttons:
            button.setEnabled(True)
        if record.person.patient_id != hit.patient_id:  # hazard H1: never another person
            log.error("a looked-up record came back for another person; not shown")
            self.hits_problem.setText("That record could not be shown: open it again.")
            self.hits_problem.show()
            return
        self.clear()
        self.record_opened.emit(record)

    def _open_failed(self, exc: BaseException) -> None:
        self._opening_row = None
        for button in self._hit_buttons:
            button.setEnabled(True)
        self._failed(exc, self.hits_problem)

    def _search_again(self) -> None:
        self.hits_problem.hide()
        self._show_step(STEP_FORM)
        self.nhs_number.setFocus()

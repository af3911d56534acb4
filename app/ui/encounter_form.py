"""The street-triage encounter form: big controls for one gloved hand, validated as you go,
autosaved as a draft in the encrypted cache, recorded through the runner's DB worker.

Why it is built this way:
- Choices are rows of big buttons (`SegmentedChoice`, `ChipSelect`), never combo boxes: a
  popup list needs a second precise tap, which fails in rain and gloves.
- Times are nudged (-1 h, -15, -5, +5 min, Now), never typed: a date picker is the fiddliest
  control there is. Shown in Europe/London, stored as UTC. End is "when saved" unless set.
- The form's state lives in its widgets, so the main window can swap it out on idle lock and
  back without losing anything.
- "Saved" appears only when `encounters.record` has returned, i.e. after COMMIT; the draft is
  removed in that same transaction.

The parts, one job each: the controls, section by section from the one form definition
(`encounter_sections.py`, on the compound controls of `encounter_controls.py` and the names of
`encounter_fields.py`); the answers as data (`encounter_answers.py`); what is still wrong and
where it is shown (`encounter_validation.py`); drafts kept and offered back
(`encounter_drafts.py`). This module puts them on one screen and runs the form's life: the
person it is about, each change, saving, discarding, and the keyboard focus.

No patient data leaves the widget: nothing is logged but ids and counts, the person's name is
shown in a non-selectable label, and nothing goes to the window title or clipboard.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QResizeEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import times
from app.services import encounters
from app.services.session import Session
from app.times import clock_text, parse_instant
from app.ui import theme
from app.ui.encounter_answers import EncounterAnswers
from app.ui.encounter_drafts import DraftKeeper, DraftOffer
from app.ui.encounter_fields import base_field
from app.ui.encounter_validation import (
    form_errors,
    save_bar_text,
    show_at_fields,
    show_service_errors,
)
from app.ui.identity import IdentityHeader
from app.ui.ops import Latest, Runner
from app.ui.use_cases import FormSubject, form_subject_op, recorded_answers_op, save_encounter_op
from app.ui.widgets import BigButton, label, set_role

log = logging.getLogger("kerbside.ui")


class EncounterForm(EncounterAnswers, QWidget):
    """Record one street-triage encounter.

    Args:
        session: the unlocked session (the form reads `user_id`; work opens its own Store).
        runner: the app's `ops.Runner`; saves and drafts go through its one-worker DB pool.
        patient: optionally `(patient_id, display_name)` when opened from a record card.
        offer_search: show a "Find in search" button that emits `patient_search_requested`.
        draft_id: continue this draft (from "Today's encounters") instead of a blank form.
        amend: the client id of a record the central record refused: the form opens with
            its answers and Save sends the correction (`resolve_rejected(..., "retry")`).
            No draft is kept in this mode: the record itself is safe in the outbox.

    Signals:
        saved(str): the client id of the recorded encounter, after COMMIT.
        draft_saved(str): the draft id, after the autosave committed.
        discarded(): the officer threw the form (and its draft) away.
        patient_search_requested(): the officer wants to pick the person from search; answer
            with `set_patient(patient_id, display_name)`.
        new_encounter_requested(): "Start another" after a save (the window may reuse us).
    """

    saved = Signal(str)
    draft_saved = Signal(str)
    discarded = Signal()
    patient_search_requested = Signal()
    new_encounter_requested = Signal()

    def __init__(
        self,
        session: Session,
        runner: Runner,
        *,
        patient: tuple[str, str] | tuple[str, str, int | None] | None = None,
        offer_search: bool = True,
        draft_id: str | None = None,
        amend: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("encounterForm")
        self.setAccessibleName("New encounter")
        self._session = session
        self._runner = runner
        self._loading = False  # filling widgets from a draft: not a user change
        # Whom the answers name, as read on a worker (`_read_subject`); None until answered.
        self._subject: FormSubject | None = None
        self._subject_asked: tuple[str, str, int] | None = None
        self._subject_reads = Latest()
        self._identity_from: FormSubject | None = None
        self._pick_again_if_gone = False  # correcting a record refused for its person
        self._show_errors = False  # after the first Save attempt
        self._errors: list[encounters.FieldError] = []
        self._saving = False
        self._saved_client_id: str | None = None
        self._amend = amend
        self._keeper = DraftKeeper(session, runner, self.data, self._may_keep_draft, self)
        self._keeper.kept.connect(self._draft_kept)
        self._keeper.not_kept.connect(
            lambda: self.draft_status.setText("Draft not kept: the cache is unavailable")
        )

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self._build_top_bar())
        self.draft_offer = DraftOffer(self._keeper, session, runner, resume_id=draft_id)
        self.draft_offer.resumed.connect(self._resume)
        outer.addWidget(self.draft_offer)
        # Who this record is about, fixed above the scrolling fields (app/ui/identity.py).
        self.identity = IdentityHeader()
        self.identity.change_requested.connect(self.patient_search_requested)
        outer.addWidget(self.identity)
        self._scroll = QScrollArea()
        self._scroll.setAccessibleName("Encounter fields")
        self._scroll.setWidgetResizable(True)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("workspace")
        centred = QHBoxLayout(body)
        centred.setContentsMargins(0, 0, 0, 0)
        holder = QWidget()
        holder.setMaximumWidth(1100)
        holder.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        sections = QVBoxLayout(holder)
        sections.setContentsMargins(20, 16, 20, 24)
        sections.setSpacing(16)
        team = encounters.team_of(session.profile)
        for signal in self.build_sections(
            sections, offer_search=offer_search, team=team.name if team is not None else ""
        ):
            signal.connect(self._changed)
        self.search_button.clicked.connect(self.patient_search_requested)
        sections.addStretch(1)
        centred.addStretch(1)
        centred.addWidget(holder, 100)
        centred.addStretch(1)
        self._scroll.setWidget(body)
        outer.addWidget(self._scroll, 1)
        self._saved_page = self._build_saved_page()
        self._saved_page.hide()
        outer.addWidget(self._saved_page, 1)
        outer.addWidget(self._build_save_bar())

        if patient is not None:
            self.set_patient(*patient)
        else:
            self.person_mode.set_value("nhs")
        self._sync_visibility()
        self._revalidate()
        if amend is not None:
            self._load_recorded(amend)
        else:
            self.draft_offer.look()

    # -- building ------------------------------------------------------------------------
    def _build_top_bar(self) -> QWidget:
        bar = QFrame()
        set_role(bar, "topbar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(20, 8, 20, 8)
        row.setSpacing(16)
        self.title = label("New encounter", "h2", wrap=False)
        row.addWidget(self.title)
        self.draft_status = label("Not saved yet", "muted", wrap=False)
        self.draft_status.setAccessibleName("Draft status")
        row.addWidget(self.draft_status, 1)
        self.discard_button = BigButton(
            "Discard", role="toggle", accessible_name="Discard this encounter"
        )
        self.discard_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # never the default key
        self.discard_button.clicked.connect(self._discard_clicked)
        row.addWidget(self.discard_button)
        return bar

    def _build_save_bar(self) -> QWidget:
        bar = QFrame()
        set_role(bar, "navbar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(20, 10, 20, 10)
        row.setSpacing(16)
        self.missing = label("", "muted")
        self.missing.setAccessibleName("What is still needed")
        row.addWidget(self.missing, 1)
        self.save_button = BigButton(
            "Save encounter", role="primary", accessible_name="Save encounter"
        )
        self.save_button.setMinimumHeight(64)
        self.save_button.setMinimumWidth(260)
        self.save_button.clicked.connect(self.save)
        row.addWidget(self.save_button)
        return bar

    def _build_saved_page(self) -> QWidget:
        page = QWidget()
        page.setAccessibleName("Encounter saved")
        col = QVBoxLayout(page)
        col.setContentsMargins(40, 40, 40, 40)
        col.setSpacing(20)
        col.addStretch(1)
        self.saved_title = label("Saved", "h1")
        self.saved_title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(self.saved_title)
        self.saved_detail = label("", "hint")
        self.saved_detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(self.saved_detail)
        again = BigButton("Start another encounter", accessible_name="Start another encounter")
        again.clicked.connect(self.new_encounter_requested)
        col.addWidget(again, 0, Qt.AlignmentFlag.AlignCenter)
        self._again_button = again
        col.addStretch(2)
        return page

    # -- the person ------------------------------------------------------------------------
    def set_patient(self, patient_id: str, display_name: str, source: int | None = None) -> None:
        """Record about this cached person (from the record card or a search pick): `source`'s
        (sid) Patient `patient_id`, None for the home source's. Another Trust's Patient: the
        record goes home by NHS number (docs/design/multi-trust.md section 6)."""
        self._patient_id = patient_id
        self._patient_source = source if source != 1 else None
        self._patient_source_name = None
        self._patient_display = display_name
        self.patient_name.setText(display_name or "Person picked from search")
        self.person_mode.set_value("known")
        self._show_identity()
        self._changed()

    def patient_ref(self) -> tuple[int, str] | None:
        """(sid, id) of the cached Patient this record is about, or None (not a known one)."""
        if self.person_mode.value() != "known" or not self._patient_id:
            return None
        return (self._subject_sid(), self._patient_id)

    def _asked_subject(self) -> tuple[str, str, int] | None:
        """Whom the answers name: the person picked (their source's Patient), or a complete
        typed NHS number (a home Patient)."""
        mode = self.person_mode.value()
        if mode == "known" and self._patient_id:
            return ("id", self._patient_id, self._subject_sid())
        if mode == "nhs":
            digits = "".join(ch for ch in self.nhs_number.text() if ch.isdigit())
            if len(digits) == 10:
                return ("nhs", digits, 1)
        return None

    def _read_subject(self) -> None:
        """Ask on a worker about the person the answers now name, when that changed; the
        newest question wins (a person picked again, a digit typed)."""
        asked = self._asked_subject()
        if asked == self._subject_asked:
            return
        self._subject_asked = asked
        self._subject = None
        if asked is None:
            self._subject_reads.drop()
            return
        ticket = self._subject_reads.next()
        form_subject_op(self, self._session, asked).for_request(ticket).on_success(
            self._subject_read
        ).run(self._runner)

    def _subject_read(self, subject: FormSubject) -> None:
        self._subject = subject
        self._sync_visibility()
        if self._pick_again_if_gone and subject.asked[0] == "id":
            self._pick_again_if_gone = False
            if subject.person is None:  # refused for that reason: pick them again, at once
                self.draft_status.setText(
                    "Correcting: pick the person again (or record as unknown); Save sends it again"
                )
                self.patient_search_requested.emit()

    def _answered_subject(self) -> FormSubject | None:
        """The worker's answer about whom the answers name now (None while it is asked)."""
        subject = self._subject
        if subject is None or subject.asked != self._asked_subject():
            return None
        return subject

    def _show_identity(self) -> None:
        """The fixed header names the person the record is about, or hides. Until the cache
        has answered, it shows the name the officer picked (never nobody, never someone else)."""
        if self.person_mode.value() != "known" or not self._patient_id:
            self.identity.clear()
            self._identity_from = None
            return
        subject = self._answered_subject()
        if subject is None:
            if self.identity.patient_id != self._patient_id:
                self.identity.set_pending(
                    patient_id=self._patient_id, name=self._patient_display or "Person picked"
                )
                self._identity_from = None
            return
        if self._identity_from is subject and self.identity.patient_id == self._patient_id:
            return
        self._identity_from = subject
        person = subject.person
        if person is None:  # removed from the cache since: say so rather than show a name
            self.identity.set_pending(
                patient_id=self._patient_id,
                name="Person no longer on this tablet",
                note="Pick them again from search, or record them as unknown",
            )
            return
        source = subject.asked[2]
        if source == 1:
            self.identity.show_person(person)
        else:  # another Trust's Patient: the header says whose record names them
            self.identity.show_person(
                person,
                members=((source, self._patient_id),),
                trusts=(subject.trust or "another Trust",),
                home_only=False,
            )
        self._patient_display = person.name
        self.patient_name.setText(person.name)

    def _subject_is_child(self) -> bool:
        """Is the person this record is about under 18, as far as the form can tell now?
        (`record` checks again against the cache on save: hazard H9.)"""
        mode = self.person_mode.value()
        if mode == "unknown":
            age = self.apparent_age.value()
            return age is not None and age < 18
        subject = self._answered_subject()
        if subject is None or subject.person is None:
            return False
        return encounters.is_child(subject.birth_date, self.start.value() or times.now())

    # -- the answers -------------------------------------------------------------------------
    def load_data(self, data: Mapping[str, Any]) -> None:
        """Fill the widgets from a draft (the JSON input shape); unknown keys are ignored."""
        self._loading = True
        try:
            self.fill(data)
        finally:
            self._loading = False
        self._sync_visibility()
        self._revalidate()

    def _load_recorded(self, client_id: str) -> None:
        """Open a refused record's answers for correction."""
        self.title.setText("Correct a refused record")
        self.discard_button.hide()

        def loaded(answers: dict[str, Any]) -> None:
            self.load_data(answers)
            self.draft_offer.close_offer()
            self.draft_status.setText("Correcting; Save sends it again")
            asked = self._asked_subject()
            if asked is not None and asked[0] == "id":
                # Refused because the person left the cache? Then pick them again, once known.
                self._pick_again_if_gone = True
                answered = self._answered_subject()
                if answered is not None:  # the same person was asked about before
                    self._subject_read(answered)

        recorded_answers_op(self, self._session, client_id).on_success(loaded).run(self._runner)

    def errors(self, now: datetime | None = None) -> list[encounters.FieldError]:
        """The service's validation of the current form, with "choose one" for unset choices."""
        return form_errors(self, now)

    # -- change handling -----------------------------------------------------------------
    def _changed(self, *_args: object) -> None:
        if self._loading:
            return
        self.draft_offer.close_offer()
        self._keeper.changed()
        self._sync_visibility()
        self._revalidate()

    def _sync_visibility(self) -> None:
        self._read_subject()
        self.show_rules(child=self._subject_is_child())
        self._show_identity()

    def _revalidate(self) -> None:
        self._errors = self.errors()
        unplaced = show_at_fields(self.fields, self._errors, shown=self._show_errors)
        missing, button = save_bar_text(self._errors, unplaced if self._show_errors else [])
        self.missing.setText(missing)
        self.save_button.setText(button)
        self.save_button.setAccessibleName(button)

    # -- drafts --------------------------------------------------------------------------
    def draft_id(self) -> str | None:
        return self._keeper.draft_id

    def flush_draft(self) -> None:
        """Autosave now if anything changed (the main window calls this before locking)."""
        self._keeper.flush()

    def _may_keep_draft(self) -> bool:
        return not self._saving and self._saved_client_id is None and self._amend is None

    def _draft_kept(self, draft_id: str) -> None:
        self.draft_status.setText(f"Draft kept {clock_text(times.now())}")
        self.draft_saved.emit(draft_id)

    def found_drafts(self) -> list[encounters.Draft]:
        return self.draft_offer.drafts()

    def resume_draft(self) -> None:
        """Continue the newest found draft in this form (its id is kept, so it is updated)."""
        self.draft_offer.resume()

    def _resume(self, draft: encounters.Draft) -> None:
        self.load_data(draft.data)
        self.draft_status.setText("Resumed unsaved encounter")

    def _discard_clicked(self) -> None:
        """Two taps: a single stray tap must not throw a record away."""
        if self.discard_button.property("armed"):
            self.discard()
            return
        self.discard_button.setProperty("armed", True)
        self.discard_button.setText("Tap again to discard")
        QTimer.singleShot(4000, self._disarm_discard)

    def _disarm_discard(self) -> None:
        self.discard_button.setProperty("armed", False)
        self.discard_button.setText("Discard")

    def discard(self) -> None:
        """Throw the form and its draft away."""
        self._keeper.discard()
        self._disarm_discard()
        self.discarded.emit()

    # -- saving --------------------------------------------------------------------------
    def save(self) -> None:
        """Validate, then record through the DB worker; "Saved" only once COMMIT returned."""
        if self._saving or self._saved_client_id is not None:
            return
        now = times.now()
        self._show_errors = True
        self._revalidate()
        if self._errors:
            self._scroll_to(self._errors[0].field)
            return
        inp = self.to_input(now)
        draft_id = self._keeper.draft_id
        self._keeper.stop()
        self._set_saving(True)
        save_encounter_op(
            self, self._session, inp, draft_id=draft_id, amend=self._amend
        ).on_success(self._saved).on_failure(self._save_failed).run(self._runner)

    def _saved(self, recorded: encounters.RecordedEncounter) -> None:
        self._saving = False
        self._saved_client_id = recorded.client_id
        self._keeper.draft_id = None  # removed in the same transaction
        when = parse_instant(recorded.created_at, naive="reject") or times.now()
        self.saved_title.setText("Saved")
        self.saved_detail.setText(
            f"Recorded at {clock_text(when)}. It will go to the central record at the "
            "next sync; until then it is kept, encrypted, on this device."
        )
        self.draft_status.setText("Saved")
        self._scroll.hide()
        self._saved_page.show()
        self.save_button.setText("Saved ✓")
        focus = QApplication.focusWidget()
        self.save_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        self.discard_button.hide()  # saved: nothing left to discard here
        if focus is None or focus is self or self.isAncestorOf(focus):
            self._again_button.setFocus(Qt.FocusReason.OtherFocusReason)  # not a hidden field
        self.missing.setText("")
        log.info("encounter %s saved", recorded.client_id)
        self.saved.emit(recorded.client_id)

    def _save_failed(self, exc: BaseException) -> None:
        self._set_saving(False)
        self._keeper.changed()  # keep the work as a draft whatever happened
        if isinstance(exc, encounters.InvalidEncounter):
            self._revalidate()
            self.missing.setText(show_service_errors(self.fields, exc.errors))
            if exc.errors:
                self._scroll_to(exc.errors[0].field)
            return
        self.missing.setText(
            "Not saved: "
            + (
                str(exc)
                if isinstance(exc, (encounters.InvalidInput,))
                else "the cache could not be written"
            )
        )
        self._runner.report(exc)

    def _set_saving(self, saving: bool) -> None:
        self._saving = saving
        self._scroll.setEnabled(not saving)
        self.save_button.setEnabled(not saving)
        if saving:
            self.save_button.setText("Saving…")

    def saved_client_id(self) -> str | None:
        return self._saved_client_id

    # -- focus and scrolling -------------------------------------------------------------
    def focus_first_field(self) -> None:
        """Keyboard focus on the form's first field, where the officer starts: the NHS
        number or the description while empty, else the chosen "who is this about" button
        at the top (Tab goes on down the form, scrolling as it goes); "Start another" once
        saved. Never scrolls: the top of the form, who it is about, stays in view."""
        if self._saved_page.isVisibleTo(self):
            self._again_button.setFocus(Qt.FocusReason.OtherFocusReason)
            return
        mode = self.person_mode.value()
        fields: dict[str, QLineEdit | QPlainTextEdit] = {
            "nhs": self.nhs_number,
            "unknown": self.description,
        }
        first = fields.get(mode or "")
        if first is not None and first.isVisibleTo(self) and not _text_of(first).strip():
            first.setFocus(Qt.FocusReason.OtherFocusReason)
        elif mode is not None:
            self.person_mode.button(mode).setFocus(Qt.FocusReason.OtherFocusReason)
        else:
            self.person_mode.setFocus(Qt.FocusReason.OtherFocusReason)

    def reveal(self, widget: QWidget) -> None:
        """Scroll the form so that `widget` (one of its controls) is in view."""
        self._scroll.ensureWidgetVisible(widget)

    def _scroll_to(self, field: str) -> None:
        """Scroll to the field with the first problem and put the keyboard focus in it, so
        typing (or a tap on Next) fixes it at once."""
        key = base_field(field)
        widget = self.fields.get(key) or self.fields.get("patient.id")
        if widget is not None and widget.isVisibleTo(self):
            self._scroll.ensureWidgetVisible(widget, 0, 80)
            control = widget.control
            candidates = [control, *control.findChildren(QWidget)]
            target = next(
                (
                    w
                    for w in candidates
                    if w.focusPolicy() != Qt.FocusPolicy.NoFocus
                    and w.isVisibleTo(self)
                    and w.isEnabled()
                ),
                None,
            )
            if target is not None:
                target.setFocus(Qt.FocusReason.OtherFocusReason)

    # -- Qt events ---------------------------------------------------------------------------
    def hideEvent(self, event: QHideEvent) -> None:
        """Swapped out (idle lock, another screen): keep the work now, not in a second."""
        self.flush_draft()
        super().hideEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self.fit_columns(event.size().width())
        super().resizeEvent(event)

    def fit_columns(self, width: int | None = None) -> None:
        """Choice buttons a row for this width and text size (called on resize and when the
        larger-text setting changes)."""
        self.reflow((self.width() if width is None else width) / theme.text_scale())


def _text_of(edit: QLineEdit | QPlainTextEdit) -> str:
    return edit.text() if isinstance(edit, QLineEdit) else edit.toPlainText()

"""The street-triage encounter form: big controls for one gloved hand, validated as you go,
autosaved as a draft in the encrypted cache, recorded through the runner's DB worker.

Why it is built this way:
- Choices are rows of big buttons (`SegmentedChoice`, `ChipSelect`), never combo boxes: a
  popup list needs a second precise tap, which fails in rain and gloves.
- Times are nudged (-1 h, -15, -5, +5 min, Now), never typed: a date picker is the fiddliest
  control there is. Shown in Europe/London, stored as UTC. End is "when saved" unless set.
- Validation is the service's own `encounters.validate` (no second set of rules here). It is
  pure and cheap, so it runs after each change; errors appear next to their field once the
  officer has tried to save, and the Save bar always says what is still needed.
- The form's state lives in its widgets, so the main window can swap it out on idle lock and
  back without losing anything. Drafts are autosaved 1 s after a change and on hide, through
  the runner's one-worker DB pool (never racing the save), and offered back after a crash.
- "Saved" appears only when `encounters.record` has returned, i.e. after COMMIT; the draft is
  removed in that same transaction.

No patient data leaves the widget: nothing is logged but ids and counts, the person's name is
shown in a non-selectable label, and nothing goes to the window title or clipboard.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

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
from app.fhir import (
    CONVEYANCE_CODES,
    OUTCOME_CODES,
    PLACE_OF_SAFETY_CODES,
    REFERRAL_CODES,
    RISK_TOPICS,
)
from app.services import encounters
from app.services.session import Session
from app.services.today import draft_person
from app.times import clock_text, iso_instant, parse_instant, short_day_text
from app.ui import theme
from app.ui.encounter_controls import AgeField, Field, TextBox, TimeField, line_edit, london_text
from app.ui.encounter_fields import FIELD_LABELS, FIELD_ORDER, FORM_ITEMS, base_field, error_text
from app.ui.identity import IdentityHeader
from app.ui.ops import Op, OpChanges, Runner
from app.ui.widgets import (
    BigButton,
    ChipSelect,
    PatientText,
    SectionCard,
    SegmentedChoice,
    label,
    set_role,
)

log = logging.getLogger("kerbside.ui")

AUTOSAVE_DELAY_MS = 1000
MISSING_SHOWN = 3  # field names in the Save bar before "and N more"
T = TypeVar("T")


# Choice codes and their labels come from the one form definition (encounters.FORM); these
# are the form's own controls that are not coded answers of the record.
YES_NO = {"yes": "Yes", "no": "No"}
SEX_LABELS = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Not known"}
PERSON_MODES = {"known": "From record", "nhs": "NHS number", "unknown": "Unknown"}

S136_LIMIT = timedelta(hours=24)  # a doctor may extend by 12; the form shows the first 24
CHILD_NOTE = (
    "A police station cannot be the place of safety: this person is under 18 "
    "(Mental Health Act 1983 s136A)."
)
DWELLING_NOTE = (
    "Section 136 cannot be used in a dwelling: a home, flat or room where anyone lives, or its "
    "garden, yard, garage or outbuildings (Mental Health Act 1983 s136(1))."
)


# -- the form -------------------------------------------------------------------------------
class EncounterForm(QWidget):
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
        patient: tuple[str, str] | None = None,
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
        self._draft_id: str | None = None
        self._dirty = False  # changed since the last autosave was queued
        self._pristine = True  # untouched since opened (a found draft may still be resumed)
        self._loading = False  # filling widgets from a draft: not a user change
        self._show_errors = False  # after the first Save attempt
        self._saving = False
        self._saved_client_id: str | None = None
        self._patient_id: str | None = None
        self._patient_display = ""
        self._drafts: list[encounters.Draft] = []
        self._resume_id = draft_id
        self._amend = amend
        self.fields: dict[str, Field] = {}

        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.flush_draft)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self._build_top_bar())
        self._banner = self._build_draft_banner()
        outer.addWidget(self._banner)
        # Who this record is about, fixed above the scrolling fields (app/ui/identity.py).
        self.identity = IdentityHeader()
        self.identity.change_requested.connect(self.patient_search_requested)
        outer.addWidget(self.identity)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("workspace")
        centred = QHBoxLayout(body)
        centred.setContentsMargins(0, 0, 0, 0)
        holder = QWidget()
        holder.setMaximumWidth(1100)
        holder.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._body = QVBoxLayout(holder)
        self._body.setContentsMargins(20, 16, 20, 24)
        self._body.setSpacing(16)
        self._build_sections(offer_search)
        self._body.addStretch(1)
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
            self._look_for_drafts()

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

    def _build_draft_banner(self) -> QWidget:
        banner = QFrame()
        set_role(banner, "notice")
        row = QHBoxLayout(banner)
        row.setContentsMargins(20, 8, 20, 8)
        self._banner_text = label("", None)
        row.addWidget(self._banner_text, 1)
        self.resume_button = BigButton(
            "Resume", role="primary", accessible_name="Resume the unsaved encounter"
        )
        self.resume_button.clicked.connect(self.resume_draft)
        self.drop_draft_button = BigButton(
            "Discard it", role="toggle", accessible_name="Discard the unsaved encounter"
        )
        self.drop_draft_button.clicked.connect(self._drop_found_draft)
        row.addWidget(self.resume_button)
        row.addWidget(self.drop_draft_button)
        banner.hide()
        return banner

    def _field(
        self, name: str, control: QWidget, title: str | None = None, hint: str | None = None
    ) -> Field:
        field = Field(title or FIELD_LABELS.get(name, name), control, hint=hint)
        self.fields[name] = field
        return field

    def _watch(self, *signals: Any) -> None:
        for signal in signals:
            signal.connect(self._changed)

    def _build_sections(self, offer_search: bool) -> None:
        # Person
        card = SectionCard("Person")
        self.person_mode = SegmentedChoice(
            list(PERSON_MODES.items()), accessible_name="Who is this record about"
        )
        card.add(self.person_mode)
        self._known_box = QWidget()
        known = QHBoxLayout(self._known_box)
        known.setContentsMargins(0, 0, 0, 0)
        self.patient_name = PatientText("", role="h3")
        known.addWidget(self.patient_name, 1)
        card.add(self._field("patient.id", self._known_box, "Person from the record"))
        self.nhs_number = line_edit("patient.nhs_number", "e.g. 943 476 5870")
        self.nhs_number.setInputMethodHints(Qt.InputMethodHint.ImhDigitsOnly)
        self.nhs_number.setMaxLength(14)
        nhs_row = QWidget()
        nhs_layout = QHBoxLayout(nhs_row)
        nhs_layout.setContentsMargins(0, 0, 0, 0)
        nhs_layout.addWidget(self.nhs_number, 1)
        self.search_button = BigButton(
            "Find in search", role="toggle", accessible_name="Find the person in search"
        )
        self.search_button.clicked.connect(self.patient_search_requested)
        nhs_layout.addWidget(self.search_button)
        # Only once it has a parent: showing a parentless widget makes it a window of its
        # own, which takes the activation from the main window (and its shortcuts with it).
        self.search_button.setVisible(offer_search)
        card.add(self._field("patient.nhs_number", nhs_row))
        # Unknown person
        self._unknown_box = QWidget()
        unknown = QVBoxLayout(self._unknown_box)
        unknown.setContentsMargins(0, 0, 0, 0)
        unknown.addWidget(
            label(
                "A provisional record is made from this description; the "
                "central record links it to the person later.",
                "muted",
            )
        )
        self.description = TextBox(
            "Description of the person",
            min_height=96,
            placeholder="Build, height, hair, clothing, marks…",
        )
        unknown.addWidget(self._field("patient.unidentified.description", self.description))
        self.apparent_age = AgeField()
        unknown.addWidget(self._field("patient.unidentified.apparent_age", self.apparent_age))
        self.sex = SegmentedChoice(list(SEX_LABELS.items()), accessible_name="Sex")
        unknown.addWidget(self._field("patient.unidentified.sex", self.sex))
        self.place_found = QLineEdit()
        self.place_found.setAccessibleName("Where found")
        self.place_found.setMaxLength(500)
        self.place_found.setPlaceholderText("If different from the location below")
        self.place_found.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        unknown.addWidget(self._field("patient.unidentified.place_found", self.place_found))
        card.add(self._unknown_box)
        self._body.addWidget(card)
        self._watch(
            self.person_mode.changed,
            self.nhs_number.textChanged,
            self.description.textChanged,
            self.apparent_age.changed,
            self.sex.changed,
            self.place_found.textChanged,
        )

        # When and where
        card = SectionCard("When and where")
        self.start = TimeField("Start", optional=False)
        card.add(self._field("start", self.start, "Start (UK time)"))
        self.end = TimeField("End", optional=True)
        card.add(self._field("end", self.end, "End (UK time)"))
        self.response_mode = SegmentedChoice(
            FORM_ITEMS["response_mode"].choices,
            accessible_name="Response mode",
        )
        self.response_mode.set_value("face-to-face")
        card.add(self._field("response_mode", self.response_mode, "Response"))
        self.team = line_edit("team", "Your street-triage team")
        default_team = encounters.team_of(self._session.profile)
        self.team.setText(default_team.name if default_team is not None else "")
        card.add(self._field("team", self.team))
        self.location = line_edit("location", "Street, landmark or address")
        card.add(self._field("location", self.location))
        self.location_type = SegmentedChoice(
            FORM_ITEMS["location_type"].choices, accessible_name="Public place or dwelling"
        )
        set_role(self.location_type, "big-toggle")
        card.add(self._field("location_type", self.location_type))
        self.police_incident_ref = line_edit("police_incident_ref", "e.g. WMP-2026-11-20-1042")
        card.add(self._field("police_incident_ref", self.police_incident_ref))
        self._body.addWidget(card)
        self._watch(
            self.start.changed,
            self.end.changed,
            self.response_mode.changed,
            self.team.textChanged,
            self.location.textChanged,
            self.location_type.changed,
            self.police_incident_ref.textChanged,
        )

        # Situation
        card = SectionCard("Situation")
        self.presenting_situation = TextBox(
            "Presenting situation", min_height=96, placeholder="What is happening, in a line or two"
        )
        card.add(self._field("presenting_situation", self.presenting_situation))
        self.known_to_services = SegmentedChoice(
            FORM_ITEMS["known_to_services"].choices, accessible_name="Known to services"
        )
        card.add(self._field("known_to_services", self.known_to_services))
        self.crisis_plan_consulted = SegmentedChoice(
            list(YES_NO.items()), accessible_name="Crisis plan consulted"
        )
        card.add(self._field("crisis_plan_consulted", self.crisis_plan_consulted))
        self._body.addWidget(card)
        self._watch(
            self.presenting_situation.textChanged,
            self.known_to_services.changed,
            self.crisis_plan_consulted.changed,
        )

        # Risk
        card = SectionCard("Risk")
        self.risk: dict[str, SegmentedChoice] = {}
        for name, (_code, text) in RISK_TOPICS.items():
            choice = SegmentedChoice(FORM_ITEMS[name].choices, accessible_name=text)
            self.risk[name] = choice
            card.add(self._field(name, choice, text))
            self._watch(choice.changed)
        self._body.addWidget(card)

        # Section 136
        card = SectionCard("Mental Health Act section 136")
        self.section_136 = SegmentedChoice(
            [("no", "Not used"), ("yes", "Section 136 used")], accessible_name="Section 136 used"
        )
        self.section_136.set_value("no")
        card.add(self._field("section_136", self.section_136, "Section 136 used"))
        self.dwelling_note = label(DWELLING_NOTE, "notice")
        self.dwelling_note.setAccessibleName("Section 136 not available in a dwelling")
        card.add(self.dwelling_note)
        self._s136_box = QWidget()
        s136 = QVBoxLayout(self._s136_box)
        s136.setContentsMargins(0, 0, 0, 0)
        # When: the 24-hour limit runs from arrival (from detention until then), shown live.
        self.s136_detained_at = TimeField("Time of detention", optional=False, unset="Not set")
        s136.addWidget(self._field("s136_detained_at", self.s136_detained_at))
        self.s136_arrived_at = TimeField(
            "Arrival at the place of safety", optional=False, unset="Not arrived yet"
        )
        s136.addWidget(self._field("s136_arrived_at", self.s136_arrived_at))
        self.s136_limit = label("", "notice")
        self.s136_limit.setAccessibleName("24-hour detention limit")
        s136.addWidget(self.s136_limit)
        self.health_professional_consulted = SegmentedChoice(
            list(YES_NO.items()), accessible_name="Health professional consulted"
        )
        s136.addWidget(
            self._field("health_professional_consulted", self.health_professional_consulted)
        )
        self.consulted_with = line_edit("consulted_with", "Name and role, e.g. CPN on the car")
        s136.addWidget(self._field("consulted_with", self.consulted_with))
        self.place_of_safety = SegmentedChoice(
            list(PLACE_OF_SAFETY_CODES.items()), accessible_name="Place of safety"
        )
        s136.addWidget(self._field("place_of_safety", self.place_of_safety))
        self.child_note = label(CHILD_NOTE, "notice")
        self.child_note.setAccessibleName("Police station not available for a child")
        s136.addWidget(self.child_note)
        self.conveyance = SegmentedChoice(
            list(CONVEYANCE_CODES.items()), accessible_name="Conveyance"
        )
        s136.addWidget(self._field("conveyance", self.conveyance))
        card.add(self._s136_box)
        self._body.addWidget(card)
        self._watch(
            self.section_136.changed,
            self.health_professional_consulted.changed,
            self.consulted_with.textChanged,
            self.place_of_safety.changed,
            self.conveyance.changed,
            self.s136_detained_at.changed,
            self.s136_arrived_at.changed,
        )

        # Outcome
        card = SectionCard("Outcome")
        self.outcome = SegmentedChoice(
            list(OUTCOME_CODES.items()), columns=1, accessible_name="Outcome"
        )
        card.add(self._field("outcome", self.outcome, "Outcome (choose one)"))
        self.referrals = ChipSelect(
            list(REFERRAL_CODES.items()), columns=3, accessible_name="Referrals"
        )
        card.add(self._field("referrals", self.referrals, "Referrals (any that apply)"))
        self._body.addWidget(card)
        self._watch(self.outcome.changed, self.referrals.changed)

        # Narrative
        card = SectionCard("Narrative")
        self.narrative = TextBox(
            "Narrative", min_height=200, placeholder="What happened, what was decided and why"
        )
        card.add(self._field("narrative", self.narrative, "Narrative"))
        self._body.addWidget(card)
        self._watch(self.narrative.textChanged)

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
    def set_patient(self, patient_id: str, display_name: str) -> None:
        """Record about this cached person (from the record card or a search pick)."""
        self._patient_id = patient_id
        self._patient_display = display_name
        self.patient_name.setText(display_name or "Person picked from search")
        self.person_mode.set_value("known")
        self._show_identity()
        self._changed()

    def _show_identity(self) -> None:
        """The fixed header names the cached person the record is about, or hides."""
        if self.person_mode.value() != "known" or not self._patient_id:
            self.identity.clear()
            return
        if self.identity.patient_id == self._patient_id:
            return
        from app.services.records import person_of

        person = person_of(self._session, self._patient_id)
        if person is None:  # removed from the cache since: say so rather than show a name
            self.identity.set_identity(
                patient_id=self._patient_id,
                name="Person no longer on this tablet",
                birth_date=None,
                age=None,
                nhs_number=None,
                sex=None,
            )
            return
        self.identity.show_person(person)
        self._patient_display = person.name
        self.patient_name.setText(person.name)

    # -- reading and filling the widgets -------------------------------------------------
    def data(self) -> dict[str, Any]:
        """The form as the JSON input shape of `kerbside record` (what drafts hold).

        Unset fields are left out rather than guessed; s136 details are kept in the widgets
        but left out while s136 is not used, as the service requires.
        """
        out: dict[str, Any] = {}
        mode = self.person_mode.value()
        if mode == "known" and self._patient_id:
            out["patient"] = {"id": self._patient_id}
        elif mode == "nhs":
            out["patient"] = {"nhs_number": self.nhs_number.text().strip()}
        elif mode == "unknown":
            person: dict[str, Any] = {
                "description": self.description.toPlainText(),
                "sex": self.sex.value(),
                "apparent_age": self.apparent_age.value(),
            }
            if self.place_found.text().strip():
                person["place_found"] = self.place_found.text().strip()
            out["patient"] = {"unidentified": {k: v for k, v in person.items() if v is not None}}
        out["start"] = _iso(self.start.value())
        if self.end.value() is not None:
            out["end"] = _iso(self.end.value())
        for name, edit in (
            ("location", self.location),
            ("police_incident_ref", self.police_incident_ref),
        ):
            out[name] = edit.text()
        out["team"] = self.team.text().strip()  # kept even when cleared: "" records no team
        out["presenting_situation"] = self.presenting_situation.toPlainText()
        out["narrative"] = self.narrative.toPlainText()
        for name, choice in (
            ("response_mode", self.response_mode),
            ("location_type", self.location_type),
            ("known_to_services", self.known_to_services),
            ("outcome", self.outcome),
            *self.risk.items(),
        ):
            if choice.value() is not None:
                out[name] = choice.value()
        if self.crisis_plan_consulted.value() is not None:
            out["crisis_plan_consulted"] = self.crisis_plan_consulted.value() == "yes"
        s136 = self.section_136.value() == "yes" and self.section_136.isEnabled()
        out["section_136"] = s136
        if s136:
            hpc = self.health_professional_consulted.value()
            if hpc is not None:
                out["health_professional_consulted"] = hpc == "yes"
            if hpc == "yes" and self.consulted_with.text().strip():
                out["consulted_with"] = self.consulted_with.text().strip()
            for name, choice in (
                ("place_of_safety", self.place_of_safety),
                ("conveyance", self.conveyance),
            ):
                if choice.value() is not None:
                    out[name] = choice.value()
            for name, field in (
                ("s136_detained_at", self.s136_detained_at),
                ("s136_arrived_at", self.s136_arrived_at),
            ):
                if field.value() is not None:
                    out[name] = _iso(field.value())
        out["referrals"] = self.referrals.values()
        return out

    def load_data(self, data: Mapping[str, Any]) -> None:
        """Fill the widgets from a draft (the JSON input shape); unknown keys are ignored."""
        self._loading = True
        try:
            patient = data.get("patient") or {}
            if "id" in patient:
                self._patient_id = str(patient["id"])
                self.patient_name.setText(self._patient_display or "Person picked before")
                self.person_mode.set_value("known")
            elif "unidentified" in patient:
                person = patient["unidentified"] or {}
                self.person_mode.set_value("unknown")
                self.description.setPlainText(str(person.get("description", "")))
                age = person.get("apparent_age")
                self.apparent_age.set_value(age if isinstance(age, int) else None)
                self.sex.set_value(person.get("sex"))
                self.place_found.setText(str(person.get("place_found", "")))
            else:
                self.person_mode.set_value("nhs")
                self.nhs_number.setText(str(patient.get("nhs_number", "")))
            self.start.set_value(parse_instant(data.get("start"), naive="reject"))
            self.end.set_value(parse_instant(data.get("end"), naive="reject"))
            self.location.setText(str(data.get("location", "")))
            self.police_incident_ref.setText(str(data.get("police_incident_ref", "")))
            if "team" in data:  # else keep the profile's team the form opened with
                self.team.setText(str(data["team"] or ""))
            self.presenting_situation.setPlainText(str(data.get("presenting_situation", "")))
            self.narrative.setPlainText(str(data.get("narrative", "")))
            for name, choice in (
                ("response_mode", self.response_mode),
                ("location_type", self.location_type),
                ("known_to_services", self.known_to_services),
                ("outcome", self.outcome),
                ("place_of_safety", self.place_of_safety),
                ("conveyance", self.conveyance),
                *self.risk.items(),
            ):
                choice.set_value(data.get(name))
            for name, choice in (
                ("crisis_plan_consulted", self.crisis_plan_consulted),
                ("health_professional_consulted", self.health_professional_consulted),
            ):
                value = data.get(name)
                choice.set_value(None if value is None else ("yes" if value else "no"))
            self.section_136.set_value("yes" if data.get("section_136") else "no")
            self.consulted_with.setText(str(data.get("consulted_with", "")))
            self.s136_detained_at.set_value(
                parse_instant(data.get("s136_detained_at"), naive="reject")
            )
            self.s136_arrived_at.set_value(
                parse_instant(data.get("s136_arrived_at"), naive="reject")
            )
            self.referrals.set_values(data.get("referrals") or ())
        finally:
            self._loading = False
        self._sync_visibility()
        self._revalidate()

    def to_input(self, now: datetime | None = None) -> encounters.EncounterInput:
        """The form as an EncounterInput; unset required values get neutral stand-ins that
        `errors()` then reports as missing (so validate can still check everything else)."""
        now = now or times.now()
        data = self.data()
        patient = data.get("patient") or {}
        person: encounters.PatientChoice
        if "id" in patient:
            person = encounters.KnownPatient(patient["id"])
        elif "unidentified" in patient:
            raw = patient["unidentified"]
            person = encounters.UnidentifiedPerson(
                description=raw.get("description", ""),
                apparent_age=raw.get("apparent_age", -1),
                sex=raw.get("sex", ""),
                place_found=raw.get("place_found"),
            )
        else:
            person = encounters.PatientByNhsNumber(patient.get("nhs_number", ""))
        optional = {name: data[name] for name in (
            "location_type", "response_mode", "known_to_services", "crisis_plan_consulted",
            *RISK_TOPICS, "health_professional_consulted", "consulted_with", "place_of_safety",
            "conveyance") if name in data}  # fmt: skip
        return encounters.EncounterInput(
            patient=person,
            start=self.start.value() or now,
            end=self.end_at(now),
            location=data["location"],
            police_incident_ref=data["police_incident_ref"],
            presenting_situation=data["presenting_situation"],
            section_136=data["section_136"],
            outcome=data.get("outcome", "other"),
            narrative=data["narrative"],
            referrals=tuple(data["referrals"]),
            team=data["team"] or None,
            s136_detained_at=self.s136_detained_at.value() if data["section_136"] else None,
            s136_arrived_at=self.s136_arrived_at.value() if data["section_136"] else None,
            **optional,
        )

    def errors(self, now: datetime | None = None) -> list[encounters.FieldError]:
        """The service's validation of the current form, with "choose one" for unset choices."""
        now = now or times.now()
        missing: list[encounters.FieldError] = []
        if self.person_mode.value() == "known" and not self._patient_id:
            missing.append(encounters.FieldError("patient.id", "is required: pick the person"))
        if self.person_mode.value() == "nhs" and not self.nhs_number.text().strip():
            missing.append(encounters.FieldError("patient.nhs_number", "is required"))
        if self.person_mode.value() == "unknown":
            if self.apparent_age.value() is None:
                missing.append(
                    encounters.FieldError(
                        "patient.unidentified.apparent_age", "is required: your best guess"
                    )
                )
            if self.sex.value() is None:
                missing.append(
                    encounters.FieldError("patient.unidentified.sex", "is required: choose one")
                )
        if self.outcome.value() is None:
            missing.append(encounters.FieldError("outcome", "is required: choose one"))
        stood_in = {e.field for e in missing}
        found = [
            e for e in encounters.validate(self.to_input(now), now=now) if e.field not in stood_in
        ]
        return sorted(missing + found, key=lambda e: _order(e.field))

    def end_at(self, now: datetime) -> datetime:
        """The end time to record: as set, else "now" (at least a minute after the start,
        so a record saved straight after opening is not refused for ending as it began)."""
        end = self.end.value()
        if end is not None:
            return end
        start = self.start.value() or now
        return max(now, start + timedelta(minutes=1))

    def _load_recorded(self, client_id: str) -> None:
        """Open a refused record's answers for correction."""
        session = self._session
        self.title.setText("Correct a refused record")
        self.discard_button.hide()

        def loaded(answers: dict[str, Any]) -> None:
            self.load_data(answers)
            self._pristine = False
            self.draft_status.setText("Correcting; Save sends it again")
            if self._person_is_gone():  # refused for that reason: pick them again, at once
                self.draft_status.setText(
                    "Correcting: pick the person again (or record as unknown); Save sends it again"
                )
                self.patient_search_requested.emit()

        Op(
            self,
            lambda: session.on_worker(lambda s: encounters.recorded_answers(s, client_id)),
        ).on_success(loaded).run(self._runner)

    def _person_is_gone(self) -> bool:
        """The record is about a cached person who is no longer on this tablet."""
        if self.person_mode.value() != "known" or not self._patient_id:
            return False
        from app.services.records import person_of

        return person_of(self._session, self._patient_id) is None

    # -- change handling -----------------------------------------------------------------
    def _changed(self, *_args: object) -> None:
        if self._loading:
            return
        if self._pristine:
            self._pristine = False
            self._banner.hide()
        self._dirty = True
        self._autosave.start()
        self._sync_visibility()
        self._revalidate()

    def _sync_visibility(self) -> None:
        mode = self.person_mode.value()
        self.fields["patient.id"].setVisible(mode == "known")
        self.fields["patient.nhs_number"].setVisible(mode == "nhs")
        self._unknown_box.setVisible(mode == "unknown")
        self.person_mode.button("known").setVisible(self._patient_id is not None)
        self._show_identity()
        dwelling = self.location_type.value() == "dwelling"
        self.section_136.setEnabled(not dwelling)
        self.dwelling_note.setVisible(dwelling)
        if dwelling and self.section_136.value() == "yes":
            self.section_136.set_value("no")  # details stay in the widgets if it changes back
        s136 = self.section_136.value() == "yes" and not dwelling
        self._s136_box.setVisible(s136)
        self._show_s136_limit()
        # Known up front, so shown up front: not an error after Save (hazard H9).
        child = self._subject_is_child()
        self.place_of_safety.set_enabled_value("police-station", not child)
        self.child_note.setVisible(child)
        if child and self.place_of_safety.value() == "police-station":
            self.place_of_safety.set_value(None)
        self.fields["consulted_with"].setVisible(
            self.health_professional_consulted.value() == "yes"
        )

    def _show_s136_limit(self, now: datetime | None = None) -> None:
        """The 24-hour limit while it runs: from arrival at the place of safety, or from the
        detention while the person is not there yet (MHA 1983 s136(2A))."""
        arrived, detained = self.s136_arrived_at.value(), self.s136_detained_at.value()
        start = arrived or detained
        if start is None:
            self.s136_limit.setText("Set the time of detention: the 24-hour limit runs from it.")
            return
        ends = start + S136_LIMIT
        left = ends - (now or times.now())
        clock, day = london_text(ends)
        basis = "arrival" if arrived is not None else "detention, until arrival"
        if left.total_seconds() <= 0:
            self.s136_limit.setText(f"The 24-hour limit ended at {clock} {day} (from {basis}).")
            return
        hours, minutes = divmod(int(left.total_seconds() // 60), 60)
        self.s136_limit.setText(
            f"24-hour limit: until {clock} {day} (from {basis}), {hours} h {minutes} min left."
        )

    def _subject_is_child(self) -> bool:
        """Is the person this record is about under 18, as far as the form can tell now?"""
        mode = self.person_mode.value()
        if mode == "unknown":
            age = self.apparent_age.value()
            return age is not None and age < 18
        on = self.start.value() or times.now()
        if mode == "nhs":
            digits = "".join(ch for ch in self.nhs_number.text() if ch.isdigit())
            return encounters.cached_person_is_child(self._session, on, nhs_number=digits)
        patient_id = self._patient_id if mode == "known" else None
        return encounters.cached_person_is_child(self._session, on, patient_id=patient_id)

    def _revalidate(self) -> None:
        errors = self.errors()
        by_field: dict[str, list[str]] = {}
        unplaced: list[str] = []
        for error in errors:
            key = base_field(error.field)
            target = key if key in self.fields else ("patient.id" if key == "patient" else None)
            text = error_text(error.field, error.message)
            if target is None:
                unplaced.append(text)
            else:
                by_field.setdefault(target, []).append(text)
        for name, field in self.fields.items():
            shown = by_field.get(name) if self._show_errors else None
            field.show_error("\n".join(shown) if shown else None)
        if errors:
            names: list[str] = []
            for error in errors:
                name = FIELD_LABELS.get(base_field(error.field), error.field)
                if name not in names:
                    names.append(name)
            # A few names, then a count: the whole list grew the Save bar to five lines in
            # portrait, pushing the form itself off a wet screen.
            shown = names[:MISSING_SHOWN]
            more = len(names) - len(shown)
            self.missing.setText(
                "Still needed: " + ", ".join(shown) + (f" and {more} more" if more else "")
            )
            self.save_button.setText(f"Save · {len(names)} to fix")
        else:
            self.missing.setText("Ready to save")
            self.save_button.setText("Save encounter")
        if unplaced and self._show_errors:
            self.missing.setText("\n".join(unplaced))
        self.save_button.setAccessibleName(self.save_button.text())
        self._errors = errors

    # -- drafts --------------------------------------------------------------------------
    def draft_id(self) -> str | None:
        return self._draft_id

    def flush_draft(self) -> None:
        """Autosave now if anything changed (the main window calls this before locking)."""
        self._autosave.stop()
        if (
            not self._dirty
            or self._saving
            or self._saved_client_id is not None
            or self._amend is not None
        ):
            return
        self._dirty = False
        if self._draft_id is None:
            self._draft_id = encounters.new_draft_id()
        draft_id, data, session = self._draft_id, self.data(), self._session

        def work() -> str:
            session.on_worker(lambda s: encounters.save_draft(s, draft_id, data))
            return draft_id

        def done(saved_id: str) -> None:
            self.draft_status.setText(f"Draft kept {clock_text(times.now())}")
            self.draft_saved.emit(saved_id)

        def failed(exc: BaseException) -> None:
            self._dirty = True  # try again on the next change
            self.draft_status.setText("Draft not kept: the cache is unavailable")
            self._runner.report(exc)

        log.debug("autosaving draft %s", draft_id)
        Op(self, work, changes=OpChanges()).on_success(done).on_failure(failed).run(self._runner)

    def _look_for_drafts(self) -> None:
        """Offer a draft left by a crash (or an earlier form) while this form is untouched."""
        session = self._session

        def found(drafts: list[encounters.Draft]) -> None:
            self._drafts = [d for d in drafts if d.draft_id != self._draft_id]
            wanted = [d for d in self._drafts if d.draft_id == self._resume_id]
            if wanted and self._pristine:
                self._drafts.remove(wanted[0])
                self._drafts.insert(0, wanted[0])
                self._resume_id = None
                self.resume_draft()
                return
            if not self._drafts or not self._pristine:
                return
            newest = self._drafts[0]
            when = parse_instant(newest.updated_at, naive="reject")
            more = len(self._drafts) - 1
            text = f"An unsaved encounter about {draft_person(self._session, newest.data)}"
            if when is not None:
                text += f", last changed {clock_text(when)} {short_day_text(when)}"
            if more:
                text += f" (and {more} older)"
            self._banner_text.setText(text + ".")
            self._banner.show()

        Op(self, lambda: session.on_worker(encounters.load_drafts)).on_success(found).run(
            self._runner
        )

    def found_drafts(self) -> list[encounters.Draft]:
        return list(self._drafts)

    def resume_draft(self) -> None:
        """Continue the newest found draft in this form (its id is kept, so it is updated)."""
        if not self._drafts:
            return
        draft = self._drafts.pop(0)
        self._draft_id = draft.draft_id
        self.load_data(draft.data)
        self._pristine = False
        self._banner.hide()
        self.draft_status.setText("Resumed unsaved encounter")

    def _drop_found_draft(self) -> None:
        if not self._drafts:
            self._banner.hide()
            return
        draft = self._drafts.pop(0)
        session = self._session
        Op(
            self,
            lambda: session.on_worker(lambda s: encounters.discard_draft(s, draft.draft_id)),
            changes=OpChanges(drafts=True),
        ).on_success(lambda _r: self._look_for_drafts()).run(self._runner)
        self._banner.hide()

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
        self._autosave.stop()
        self._dirty = False
        draft_id, session = self._draft_id, self._session
        self._draft_id = None
        self._disarm_discard()
        if draft_id is not None:
            Op(
                self,
                lambda: session.on_worker(lambda s: encounters.discard_draft(s, draft_id)),
                changes=OpChanges(drafts=True),
            ).run(self._runner)
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
        draft_id, session = self._draft_id, self._session
        self._autosave.stop()
        self._dirty = False
        self._set_saving(True)

        amend = self._amend

        def work() -> encounters.RecordedEncounter:
            if amend is not None:

                def correct(s: Session) -> encounters.RecordedEncounter:
                    encounters.resolve_rejected(s, amend, "retry", corrected=inp)
                    return encounters.RecordedEncounter(amend, _iso(times.now()) or "", None, False)

                return session.on_worker(correct)
            return session.on_worker(lambda s: encounters.record(s, inp, draft_id=draft_id))

        Op(self, work, changes=OpChanges(outbox=True, drafts=True)).on_success(
            self._saved
        ).on_failure(self._save_failed).run(self._runner)

    def _saved(self, recorded: encounters.RecordedEncounter) -> None:
        self._saving = False
        self._saved_client_id = recorded.client_id
        self._draft_id = None
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
        self._dirty = True
        self._autosave.start()  # keep the work as a draft whatever happened
        if isinstance(exc, encounters.InvalidEncounter):
            self._show_service_errors(exc.errors)
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

    def _show_service_errors(self, errors: Sequence[encounters.FieldError]) -> None:
        """Errors only `record` can find (the person is not in the cache, age rules)."""
        self._revalidate()
        for error in errors:
            key = base_field(error.field)
            target = key if key in self.fields else "patient.id"
            self.fields[target].show_error(error_text(error.field, error.message))
        self.missing.setText(
            "Not saved: " + "; ".join(error_text(e.field, e.message) for e in errors)
        )
        if errors:
            self._scroll_to(errors[0].field)

    def _set_saving(self, saving: bool) -> None:
        self._saving = saving
        self._scroll.setEnabled(not saving)
        self.save_button.setEnabled(not saving)
        if saving:
            self.save_button.setText("Saving…")

    def saved_client_id(self) -> str | None:
        return self._saved_client_id

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
        # Widths in "normal text" pixels: with larger text on, fewer buttons fit a row.
        normal = (self.width() if width is None else width) / theme.text_scale()
        wide, middle = normal >= 1100, normal >= 700
        self.outcome.set_columns(2 if wide else 1)
        self.referrals.set_columns(3 if wide else 2 if middle else 1)
        # Four places of safety in one row were cut to "alth-based place of saf" in portrait.
        self.place_of_safety.set_columns(4 if wide else 2 if middle else 1)


def _text_of(edit: QLineEdit | QPlainTextEdit) -> str:
    return edit.text() if isinstance(edit, QLineEdit) else edit.toPlainText()


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return iso_instant(when)


def _order(field: str) -> int:
    key = base_field(field)
    return FIELD_ORDER.index(key) if key in FIELD_ORDER else len(FIELD_ORDER)

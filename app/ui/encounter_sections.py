"""The encounter form's sections: one builder per card, each control made from its item in the
one form definition (`encounters.FORM`: type, label, choices and their order), and the rules
that show, hide or disable controls as the answers change.

`EncounterSections` is the form's "Ui" class in Qt Designer's multiple-inheritance sense:
`EncounterForm` inherits it, so `form.nhs_number` is the control itself, for the window, the
screenshots and the tests alike. It builds and shows widgets only: it reads no service and
keeps no form state but the person picked from the record, the value of "From record".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from app import times
from app.ui.encounter_controls import AgeField, Field, TextBox, TimeField, line_edit, london_text
from app.ui.encounter_fields import FIELD_LABELS, FORM_ITEMS, FORM_SECTIONS
from app.ui.widgets import (
    BigButton,
    ChipSelect,
    PatientText,
    SectionCard,
    SegmentedChoice,
    label,
    set_role,
)

# The form's own controls that are not coded answers of the record.
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

Built = tuple[SectionCard, list[Any]]  # a card, and the signals that mean "the officer changed it"


def choice(
    link_id: str, *, spoken: str | None = None, columns: int | None = None
) -> SegmentedChoice:
    """One answer out of the item's coded choices, in the definition's order. `spoken`: what a
    screen reader calls it where that is not the question's text."""
    item = FORM_ITEMS[link_id]
    return SegmentedChoice(item.choices, accessible_name=spoken or item.text, columns=columns)


def yes_no(link_id: str, options: dict[str, str] = YES_NO) -> SegmentedChoice:
    """A boolean item as two big buttons (none chosen: not answered)."""
    return SegmentedChoice(list(options.items()), accessible_name=FORM_ITEMS[link_id].text)


def time_field(link_id: str, *, optional: bool = False, unset: str | None = None) -> TimeField:
    return TimeField(FORM_ITEMS[link_id].text, optional=optional, unset=unset)


def text_box(link_id: str, *, min_height: int, placeholder: str) -> TextBox:
    return TextBox(FORM_ITEMS[link_id].text, min_height=min_height, placeholder=placeholder)


NO_SOURCE = 0  # a draft names a source this tablet no longer has: no sid is 0


class EncounterSections:
    """Every control of the form, by the name of the field it answers."""

    fields: dict[str, Field]
    _patient_id: str | None  # the person picked from the record ("From record")
    _patient_source: int | None  # whose Patient id it is (a source's sid; None: home)
    # A draft's `patient.source` as written: kept when that source has left this tablet
    # (`_patient_source` is then NO_SOURCE, which names nobody: never home's namesake).
    _patient_source_name: str | None
    _patient_display: str
    _session: Any
    # Person
    person_mode: SegmentedChoice
    patient_name: PatientText
    nhs_number: QLineEdit
    search_button: QPushButton
    unknown_box: QWidget
    description: TextBox
    apparent_age: AgeField
    sex: SegmentedChoice
    place_found: QLineEdit
    # When and where
    start: TimeField
    end: TimeField
    response_mode: SegmentedChoice
    team: QLineEdit
    location: QLineEdit
    location_type: SegmentedChoice
    police_incident_ref: QLineEdit
    # Situation and risk
    presenting_situation: TextBox
    known_to_services: SegmentedChoice
    crisis_plan_consulted: SegmentedChoice
    risk: dict[str, SegmentedChoice]
    # Mental Health Act section 136
    section_136: SegmentedChoice
    dwelling_note: QLabel
    s136_box: QWidget
    s136_detained_at: TimeField
    s136_arrived_at: TimeField
    s136_limit: QLabel
    health_professional_consulted: SegmentedChoice
    consulted_with: QLineEdit
    place_of_safety: SegmentedChoice
    child_note: QLabel
    conveyance: SegmentedChoice
    # Outcome and narrative
    outcome: SegmentedChoice
    referrals: ChipSelect
    narrative: TextBox

    def _subject_sid(self) -> int:
        """The sid of the source whose Patient `_patient_id` is (1: home)."""
        return 1 if self._patient_source is None else self._patient_source

    def build_sections(self, body: QVBoxLayout, *, offer_search: bool, team: str) -> list[Any]:
        """Add every card to `body`, in the form's order; the signals to watch for changes."""
        self.fields = {}
        self._patient_id = None
        self._patient_source = None
        self._patient_source_name = None
        self._patient_display = ""
        watched: list[Any] = []
        for card, signals in (
            self._person_section(offer_search),
            self._when_where_section(team),
            self._situation_section(),
            self._risk_section(),
            self._s136_section(),
            self._outcome_section(),
            self._narrative_section(),
        ):
            body.addWidget(card)
            watched += signals
        return watched

    def _field(
        self, name: str, control: QWidget, title: str | None = None, hint: str | None = None
    ) -> Field:
        field = Field(title or FIELD_LABELS.get(name, name), control, hint=hint)
        self.fields[name] = field
        return field

    # -- one builder per section -----------------------------------------------------------
    def _person_section(self, offer_search: bool) -> Built:
        """Who the record is about: a cached person, an NHS number, or a description (not in
        FORM: the person is the record's subject, not one of its answers)."""
        card = SectionCard("Person")
        self.person_mode = SegmentedChoice(
            list(PERSON_MODES.items()), accessible_name="Who is this record about"
        )
        card.add(self.person_mode)
        known_box = QWidget()
        known = QHBoxLayout(known_box)
        known.setContentsMargins(0, 0, 0, 0)
        self.patient_name = PatientText("", role="h3")
        known.addWidget(self.patient_name, 1)
        card.add(self._field("patient.id", known_box, "Person from the record"))
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
        nhs_layout.addWidget(self.search_button)
        # Only once it has a parent: showing a parentless widget makes it a window of its
        # own, which takes the activation from the main window (and its shortcuts with it).
        self.search_button.setVisible(offer_search)
        card.add(self._field("patient.nhs_number", nhs_row))
        # Unknown person
        self.unknown_box = QWidget()
        self.unknown_box.setAccessibleName("Unknown person")
        unknown = QVBoxLayout(self.unknown_box)
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
        card.add(self.unknown_box)
        return card, [
            self.person_mode.changed,
            self.nhs_number.textChanged,
            self.description.textChanged,
            self.apparent_age.changed,
            self.sex.changed,
            self.place_found.textChanged,
        ]

    def _when_where_section(self, team: str) -> Built:
        card = SectionCard(FORM_SECTIONS["when-where"].text)
        self.start = time_field("start")
        card.add(self._field("start", self.start, "Start (UK time)"))
        self.end = time_field("end", optional=True)
        card.add(self._field("end", self.end, "End (UK time)"))
        self.response_mode = choice("response_mode", spoken="Response mode")
        self.response_mode.set_value("face-to-face")
        card.add(self._field("response_mode", self.response_mode))
        self.team = line_edit("team", "Your street-triage team")
        self.team.setText(team)
        card.add(self._field("team", self.team))
        self.location = line_edit("location", "Street, landmark or address")
        card.add(self._field("location", self.location))
        self.location_type = choice("location_type", spoken=FIELD_LABELS["location_type"])
        set_role(self.location_type, "big-toggle")
        card.add(self._field("location_type", self.location_type))
        self.police_incident_ref = line_edit("police_incident_ref", "e.g. WMP-2026-11-20-1042")
        card.add(self._field("police_incident_ref", self.police_incident_ref))
        return card, [
            self.start.changed,
            self.end.changed,
            self.response_mode.changed,
            self.team.textChanged,
            self.location.textChanged,
            self.location_type.changed,
            self.police_incident_ref.textChanged,
        ]

    def _situation_section(self) -> Built:
        card = SectionCard(FORM_SECTIONS["situation"].text)
        self.presenting_situation = text_box(
            "presenting_situation", min_height=96, placeholder="What is happening, in a line or two"
        )
        card.add(self._field("presenting_situation", self.presenting_situation))
        self.known_to_services = choice("known_to_services", spoken="Known to services")
        card.add(self._field("known_to_services", self.known_to_services))
        self.crisis_plan_consulted = yes_no("crisis_plan_consulted")
        card.add(self._field("crisis_plan_consulted", self.crisis_plan_consulted))
        return card, [
            self.presenting_situation.textChanged,
            self.known_to_services.changed,
            self.crisis_plan_consulted.changed,
        ]

    def _risk_section(self) -> Built:
        section = FORM_SECTIONS["risk"]
        card = SectionCard(section.text)
        self.risk = {item.link_id: choice(item.link_id) for item in section.items}
        for name, topic in self.risk.items():
            card.add(self._field(name, topic))
        return card, [topic.changed for topic in self.risk.values()]

    def _s136_section(self) -> Built:
        card = SectionCard(FORM_SECTIONS["section-136"].text)
        self.section_136 = yes_no("section_136", {"no": "Not used", "yes": "Section 136 used"})
        self.section_136.set_value("no")
        card.add(self._field("section_136", self.section_136))
        self.dwelling_note = label(DWELLING_NOTE, "notice")
        self.dwelling_note.setAccessibleName("Section 136 not available in a dwelling")
        card.add(self.dwelling_note)
        self.s136_box = QWidget()
        self.s136_box.setAccessibleName("Section 136 details")
        s136 = QVBoxLayout(self.s136_box)
        s136.setContentsMargins(0, 0, 0, 0)
        # When: the 24-hour limit runs from arrival (from detention until then), shown live.
        self.s136_detained_at = time_field("s136_detained_at", unset="Not set")
        s136.addWidget(self._field("s136_detained_at", self.s136_detained_at))
        self.s136_arrived_at = time_field("s136_arrived_at", unset="Not arrived yet")
        s136.addWidget(self._field("s136_arrived_at", self.s136_arrived_at))
        self.s136_limit = label("", "notice")
        self.s136_limit.setAccessibleName("24-hour detention limit")
        s136.addWidget(self.s136_limit)
        self.health_professional_consulted = yes_no("health_professional_consulted")
        s136.addWidget(
            self._field("health_professional_consulted", self.health_professional_consulted)
        )
        self.consulted_with = line_edit("consulted_with", "Name and role, e.g. CPN on the car")
        s136.addWidget(self._field("consulted_with", self.consulted_with))
        self.place_of_safety = choice("place_of_safety")
        s136.addWidget(self._field("place_of_safety", self.place_of_safety))
        self.child_note = label(CHILD_NOTE, "notice")
        self.child_note.setAccessibleName("Police station not available for a child")
        s136.addWidget(self.child_note)
        self.conveyance = choice("conveyance")
        s136.addWidget(self._field("conveyance", self.conveyance))
        card.add(self.s136_box)
        return card, [
            self.section_136.changed,
            self.health_professional_consulted.changed,
            self.consulted_with.textChanged,
            self.place_of_safety.changed,
            self.conveyance.changed,
            self.s136_detained_at.changed,
            self.s136_arrived_at.changed,
        ]

    def _outcome_section(self) -> Built:
        card = SectionCard(FORM_SECTIONS["outcome"].text)
        self.outcome = choice("outcome", columns=1)
        card.add(self._field("outcome", self.outcome, "Outcome (choose one)"))
        item = FORM_ITEMS["referrals"]
        self.referrals = ChipSelect(item.choices, columns=3, accessible_name=item.text)
        card.add(self._field("referrals", self.referrals, "Referrals (any that apply)"))
        return card, [self.outcome.changed, self.referrals.changed]

    def _narrative_section(self) -> Built:
        card = SectionCard(FORM_SECTIONS["notes"].text)
        self.narrative = text_box(
            "narrative", min_height=200, placeholder="What happened, what was decided and why"
        )
        card.add(self._field("narrative", self.narrative))
        return card, [self.narrative.textChanged]

    # -- what the answers show, hide and rule out --------------------------------------------
    def show_rules(self, *, child: bool) -> None:
        """Show the controls the answers call for: the chosen way of naming the person, s136
        only outside a dwelling (its details kept if it changes back), no police station as
        the place of safety for a child (known up front, so shown up front: hazard H9)."""
        mode = self.person_mode.value()
        self.fields["patient.id"].setVisible(mode == "known")
        self.fields["patient.nhs_number"].setVisible(mode == "nhs")
        self.unknown_box.setVisible(mode == "unknown")
        self.person_mode.button("known").setVisible(self._patient_id is not None)
        dwelling = self.location_type.value() == "dwelling"
        self.section_136.setEnabled(not dwelling)
        self.dwelling_note.setVisible(dwelling)
        if dwelling and self.section_136.value() == "yes":
            self.section_136.set_value("no")  # details stay in the widgets if it changes back
        self.s136_box.setVisible(self.section_136.value() == "yes" and not dwelling)
        self.show_s136_limit()
        self.place_of_safety.set_enabled_value("police-station", not child)
        self.child_note.setVisible(child)
        if child and self.place_of_safety.value() == "police-station":
            self.place_of_safety.set_value(None)
        self.fields["consulted_with"].setVisible(
            self.health_professional_consulted.value() == "yes"
        )

    def show_s136_limit(self, now: datetime | None = None) -> None:
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

    def reflow(self, normal_width: float) -> None:
        """Choice buttons a row for this width, in "normal text" pixels (with larger text on,
        fewer buttons fit a row)."""
        wide, middle = normal_width >= 1100, normal_width >= 700
        self.outcome.set_columns(2 if wide else 1)
        self.referrals.set_columns(3 if wide else 2 if middle else 1)
        # Four places of safety in one row were cut to "alth-based place of saf" in portrait.
        self.place_of_safety.set_columns(4 if wide else 2 if middle else 1)

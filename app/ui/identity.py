"""The fixed identity header: who the screen below is about, always in view.

A record scrolled down to its medication, or an encounter form scrolled to its outcome, must
still say whose it is: the wrong-person hazard (docs/clinical-safety/hazard-log.md, H1) comes
from a screen that shows one person's details with nothing on screen naming them. So the record
and the form put this header above their scroll areas, never inside them: name, date of birth
and age, NHS number as 3 3 4, sex, a child badge under 18, and "Change person".

It holds the patient id it shows (`patient_id`), so tests and the window can check that the
header, the record and the form agree. A person several Trusts know (issue 14) is the set of
their records (`members`, (sid, id) pairs): the header then lists the Trusts, and when their
records disagree on name, date of birth or sex it says so in red, in the header itself, where
it cannot be scrolled away (hazard H23).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QWidget

from app.times import uk_date
from app.ui.widgets import BigButton, PatientText, label

CHILD_AGE = 18


def identity_facts(
    birth_date: date | str | None, age: int | None, nhs_number: str | None, sex: str | None
) -> str:
    """ "Born 15/06/1990 (35 years) · NHS 943 476 5870 · Female": the second line."""
    from app.nhs_number import format_nhs_number

    born = f"Born {uk_date(birth_date, unknown='date unknown')}" + (
        f" ({age} years)" if age is not None else ""
    )
    digits = "".join(ch for ch in (nhs_number or "") if ch.isdigit())
    nhs = f"NHS {format_nhs_number(digits)}" if len(digits) == 10 else "No NHS number"
    sex_text = (sex or "sex not recorded").capitalize()
    # Non-breaking inside each fact: an NHS number split over two lines is misread.
    return "  ·  ".join(fact.replace(" ", "\u00a0") for fact in (born, nhs, sex_text))


class IdentityHeader(QFrame):
    """Name, date of birth and age, NHS number, sex, child badge; "Change person".

    Signals:
        change_requested(): the officer tapped "Change person".
    """

    change_requested = Signal()
    compare_requested = Signal()  # "Compare": show what each Trust records

    def __init__(self, *, change_text: str = "Change person", parent: QWidget | None = None):
        super().__init__(parent)
        self.setProperty("role", "identity")
        self.setAccessibleName("Person shown")
        self.patient_id: str | None = None
        self.members: tuple[tuple[int, str], ...] = ()  # (sid, id) of each Trust's record
        # Name and facts beside "Change person"; the Trusts and the red notice under both, the
        # header's whole width: with larger text on and two Trusts that disagree, keeping them
        # beside the button too made the header half the record pane.
        grid = QGridLayout(self)
        grid.setContentsMargins(16, 8, 12, 8)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(10)
        self.name = PatientText("", role="h2")
        self.name.setAccessibleName("Name")
        top.addWidget(self.name, 1)
        self.child_badge = label("CHILD (under 18)", "child", wrap=False)
        self.child_badge.setAccessibleName("Child: under 18")
        self.child_badge.hide()
        top.addWidget(self.child_badge, 0, Qt.AlignmentFlag.AlignTop)
        grid.addLayout(top, 0, 0)
        self.facts = PatientText("", role="h3")
        self.facts.setAccessibleName("Date of birth, NHS number and sex")
        grid.addWidget(self.facts, 1, 0)
        self.change_button = BigButton(
            change_text, role="bar", accessible_name="Change person: find someone else"
        )
        self.change_button.clicked.connect(self.change_requested)
        grid.addWidget(self.change_button, 0, 1, 2, 1, Qt.AlignmentFlag.AlignVCenter)
        self.trusts = label("", "muted")
        self.trusts.setAccessibleName("Trusts that know this person")
        self.trusts.hide()
        grid.addWidget(self.trusts, 2, 0, 1, 2)
        self.disagree = QFrame()
        self.disagree.setProperty("role", "error")
        self.disagree.setAccessibleName("Sources disagree")
        dis = QHBoxLayout(self.disagree)
        dis.setContentsMargins(10, 4, 6, 4)
        dis.setSpacing(8)
        self.disagree_text = label("", None)
        self.disagree_text.setAccessibleName("Sources disagree on")
        dis.addWidget(self.disagree_text, 1)
        self.compare_button = BigButton(
            "Compare", role="bar", accessible_name="Compare what each Trust records"
        )
        self.compare_button.clicked.connect(self.compare_requested)
        dis.addWidget(self.compare_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.disagree.hide()
        grid.addWidget(self.disagree, 3, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        self.hide()

    def show_person(
        self,
        person: Any,
        *,
        members: tuple[tuple[int, str], ...] = (),
        trusts: tuple[str, ...] = (),
        home_only: bool = True,
    ) -> None:
        """Show a `records.PersonView` (or anything with its attribute names); `members`: the
        person's records ((sid, id), home first), `trusts`: the Trusts that hold them, named
        when there is more than one or the one is not home (`home_only` False)."""
        self.set_identity(
            patient_id=person.patient_id,
            name=person.name,
            birth_date=person.birth_date,
            age=person.age,
            nhs_number=person.nhs_number,
            sex=person.gender,
        )
        self.members = tuple(members)
        if trusts and (len(trusts) > 1 or not home_only):
            self.trusts.setText("Known to: " + ", ".join(trusts))
            self.trusts.show()
        disagreements = tuple(getattr(person, "disagreements", ()) or ())
        if disagreements:
            self.disagree_text.setText(
                "⚠ Sources disagree: " + ", ".join(disagreements) + ". Check who this is."
            )
            self.disagree.show()

    def set_identity(
        self,
        *,
        patient_id: str | None,
        name: str,
        birth_date: date | str | None,
        age: int | None,
        nhs_number: str | None,
        sex: str | None,
    ) -> None:
        self.patient_id = patient_id
        self.members = ()  # one record: `patient_id` says who (show_person names the set)
        self.trusts.hide()
        self.disagree.hide()
        self.name.setText(name or "Name not recorded")
        self.facts.setText(identity_facts(birth_date, age, nhs_number, sex))
        self.child_badge.setVisible(age is not None and age < CHILD_AGE)
        self.show()

    def set_pending(
        self, *, patient_id: str, name: str, note: str = "Reading their details on this tablet…"
    ) -> None:
        """The person picked, by the name the officer tapped, while their details are read (or
        when they are no longer held): it claims no date of birth, NHS number or sex."""
        self.patient_id = patient_id
        self.name.setText(name or "Person picked")
        self.facts.setText(note)
        self.child_badge.hide()
        self.members = ()
        self.trusts.hide()
        self.show()

    def clear(self) -> None:
        self.patient_id = None
        self.members = ()
        self.trusts.hide()
        self.disagree.hide()
        self.name.setText("")
        self.facts.setText("")
        self.child_badge.hide()
        self.hide()

    def is_child(self) -> bool:
        return not self.child_badge.isHidden()

    def shows_disagreement(self) -> bool:
        return not self.disagree.isHidden()

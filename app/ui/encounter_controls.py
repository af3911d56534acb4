"""The encounter form's compound controls: big nudge-button times on London's clock, an
apparent age, labelled text lines and boxes, and the field frame that shows a label, a hint and
an inline error. Widgets only: no services, no form state."""

from __future__ import annotations

from datetime import datetime, timedelta

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIntValidator
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import times
from app.services import encounters
from app.times import clock_text, short_day_text
from app.ui.encounter_fields import FIELD_LABELS, FORM_ITEMS
from app.ui.widgets import (
    BigButton,
    label,
)


def london_text(when: datetime) -> tuple[str, str]:
    """(`21:04`, `Thu 15 Jun`) on London's clock, as the time fields show them."""
    return clock_text(when), short_day_text(when)


class TimeField(QWidget):
    """A time shown big in Europe/London, moved with big nudge buttons.

    `optional=True` (the end time) starts as "when saved" and has a button back to that.
    """

    changed = Signal()

    def __init__(
        self,
        name: str,
        *,
        optional: bool,
        unset: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`unset`: start empty, shown as this text, until the officer sets it ("Now" or the
        nudges): for times only they know, such as the moment of an s136 detention."""
        super().__init__(parent)
        self._name = name
        self._optional = optional
        self._unset = unset
        self._value: datetime | None = None if optional or unset else times.now()
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        self._shown = label("", "h2", wrap=False)
        self._shown.setAccessibleName(name)
        col.addWidget(self._shown)
        row = QHBoxLayout()
        row.setSpacing(8)
        self.buttons: dict[str, QPushButton] = {}
        for key, text, minutes in (("-60", "−1 h", -60), ("-15", "−15 min", -15),
                                   ("-5", "−5 min", -5), ("+5", "+5 min", 5)):  # fmt: skip
            button = BigButton(text, role="toggle", accessible_name=f"{name} {text}")
            button.clicked.connect(lambda _=False, m=minutes: self.nudge(m))
            self.buttons[key] = button
            row.addWidget(button)
        now_text = "At save" if optional else "Now"
        now_button = BigButton(now_text, role="toggle", accessible_name=f"{name}: {now_text}")
        now_button.clicked.connect(self.reset)
        self.buttons["now"] = now_button
        row.addWidget(now_button)
        col.addLayout(row)
        self._refresh()

    def value(self) -> datetime | None:
        """UTC, or None for "when saved"."""
        return self._value

    def set_value(self, when: datetime | None) -> None:
        keep_empty = when is None and (self._optional or self._unset is not None)
        self._value = None if keep_empty else (when or times.now())
        self._refresh()

    def nudge(self, minutes: int) -> None:
        base = self._value or times.now()
        self._value = (base + timedelta(minutes=minutes)).replace(second=0, microsecond=0)
        self._refresh()
        self.changed.emit()

    def reset(self) -> None:
        self._value = None if self._optional else times.now()
        self._refresh()
        self.changed.emit()

    def _refresh(self) -> None:
        if self._value is None:
            self._shown.setText(self._unset or "When you save")
            return
        clock, day = london_text(self._value)
        self._shown.setText(f"{clock}   {day}")


class AgeField(QWidget):
    """Apparent age: a number with big -5/-1/+1/+5 steps (typing also works)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        self.edit = QLineEdit()
        self.edit.setValidator(QIntValidator(0, encounters.MAX_APPARENT_AGE, self))
        self.edit.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.edit.setPlaceholderText("age")
        self.edit.setMaximumWidth(120)
        self.edit.setAccessibleName("Apparent age in years")
        self.edit.textChanged.connect(lambda _t: self.changed.emit())
        for step in (-5, -1):
            row.addWidget(self._step_button(step))
        row.addWidget(self.edit)
        for step in (1, 5):
            row.addWidget(self._step_button(step))
        row.addStretch(1)

    def _step_button(self, step: int) -> QPushButton:
        text = f"{step:+d}".replace("-", "−")
        button = BigButton(text, role="toggle", accessible_name=f"Apparent age {text}")
        button.clicked.connect(lambda _=False: self.step(step))
        return button

    def step(self, delta: int) -> None:
        current = self.value()
        start = 30 if current is None else current  # a mid guess beats counting up from 0
        self.set_value(
            max(0, min(encounters.MAX_APPARENT_AGE, start + (0 if current is None else delta)))
        )

    def value(self) -> int | None:
        text = self.edit.text().strip()
        return int(text) if text.isdigit() else None

    def set_value(self, age: int | None) -> None:
        self.edit.setText("" if age is None else str(age))


def line_edit(name: str, placeholder: str = "") -> QLineEdit:
    """A one-line field for the form item `name`, named as its label reads (a screen
    reader says "Police incident reference", never the key)."""
    edit = QLineEdit()
    edit.setAccessibleName(FIELD_LABELS[name])
    edit.setPlaceholderText(placeholder)
    edit.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)  # no copy menu (SEC 14)
    item = FORM_ITEMS.get(name)
    if item is not None and item.max_length:
        edit.setMaxLength(item.max_length)
    return edit


class TextBox(QPlainTextEdit):
    """Multi-line text that never copies out and tabs to the next field."""

    def __init__(self, name: str, *, min_height: int, placeholder: str = "") -> None:
        super().__init__()
        self.setAccessibleName(name)
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.setMinimumHeight(min_height)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(min_height)


class Field(QWidget):
    """A label, the control, and the error line under it (hidden until there is an error)."""

    def __init__(self, title: str, control: QWidget, *, hint: str | None = None) -> None:
        super().__init__()
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 4, 0, 4)
        col.setSpacing(6)
        self.title = label(title, "h3")
        col.addWidget(self.title)
        if hint:
            col.addWidget(label(hint, "muted"))
        col.addWidget(control)
        self.control = control
        self.error = label("", "error")
        self.error.setAccessibleName(f"{title}: problem")
        self.error.hide()
        col.addWidget(self.error)

    def show_error(self, text: str | None) -> None:
        """Show or hide the error; once a field has shown one, its line keeps its space when
        the error goes, so the form does not jump under the finger while it is fixed."""
        if text:
            policy = self.error.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            self.error.setSizePolicy(policy)
        self.error.setText(text or self.error.text())  # hidden, it keeps its height
        self.error.setVisible(bool(text))

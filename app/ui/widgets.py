"""Shared touch widgets: big buttons, the PIN pad, alert badges and bands, section cards.

Every widget here takes an accessible name, keeps its touch target at least 48 px and styles
itself through the `role` (and `kind`) dynamic properties the theme's style sheet matches.
Patient text goes in `PatientText`, which cannot be selected or copied (SECURITY.md 14).
Other UI modules may add widgets here; keep them free of services and data access.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme


def set_role(widget: QWidget, role: str, **props: Any) -> None:
    """Set the style role (and extra properties such as kind) and re-polish the widget."""
    widget.setProperty("role", role)
    for key, value in props.items():
        widget.setProperty(key, value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)


class BigButton(QPushButton):
    """A push button sized for a gloved finger, with an accessible name."""

    def __init__(
        self,
        text: str,
        *,
        role: str = "big",
        accessible_name: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(text, parent)
        self.setProperty("role", role)
        self.setAccessibleName(accessible_name or text.replace("&", ""))
        self.setMinimumHeight(theme.MIN_TARGET_PX)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAutoDefault(False)


class PatientText(QLabel):
    """A label for patient data: word-wrapped, not selectable, no context menu to copy from."""

    def __init__(
        self, text: str = "", *, role: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(text, parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.setWordWrap(True)
        if role:
            self.setProperty("role", role)


def label(
    text: str, role: str | None = None, *, wrap: bool = True, parent: QWidget | None = None
) -> QLabel:
    """A plain (non-patient) label with a style role."""
    lab = QLabel(text, parent)
    lab.setTextFormat(Qt.TextFormat.PlainText)
    lab.setWordWrap(wrap)
    if role:
        lab.setProperty("role", role)
    return lab


class PinDots(QLabel):
    """Masked PIN entry: one filled dot per digit, never the digits."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "pindots")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(64)
        self.set_count(0)

    def set_count(self, count: int) -> None:
        self.setText("●" * count if count else "○ ○ ○ ○ ○ ○")
        self.setAccessibleName(f"PIN, {count} digit{'s' if count != 1 else ''} entered")


class PinPad(QWidget):
    """Digits 0-9, delete and OK as big keys. The owner keeps the PIN; this only reports keys."""

    digit_pressed = Signal(str)
    delete_pressed = Signal()
    ok_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setSpacing(12)
        grid.setContentsMargins(0, 0, 0, 0)
        self.keys: dict[str, QPushButton] = {}
        layout = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "del", "0", "ok"]
        for index, key in enumerate(layout):
            if key == "del":
                button = BigButton("⌫ Delete", role="pinkey", accessible_name="Delete digit")
                button.clicked.connect(self.delete_pressed)
            elif key == "ok":
                button = BigButton("OK", role="pinkey", accessible_name="Unlock")
                button.setProperty("accent", True)
                button.clicked.connect(self.ok_pressed)
            else:
                button = BigButton(key, role="pinkey", accessible_name=f"Digit {key}")
                button.clicked.connect(lambda _=False, d=key: self.digit_pressed.emit(d))
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # typing goes to the unlock view
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            self.keys[key] = button
            grid.addWidget(button, index // 3, index % 3)


def paint_alert_icon(painter: QPainter, rect: QRectF, kind: str, colour: QColor) -> None:
    """A shape per alert kind (circle, triangle, shield, square) with a mark inside, so the
    kind reads in greyscale and to colour-blind eyes as well as by colour."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    pen = QPen(colour, max(2.0, rect.width() / 10))
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    shape = theme.ALERT_KIND_SHAPE.get(kind, "square")
    r = rect.adjusted(2, 2, -2, -2)
    if shape == "circle":
        painter.drawEllipse(r)
    elif shape == "triangle":
        painter.drawPolygon(
            QPolygonF(
                [
                    QPointF(r.center().x(), r.top()),
                    QPointF(r.right(), r.bottom()),
                    QPointF(r.left(), r.bottom()),
                ]
            )
        )
    elif shape == "octagon":  # a stop sign: staff safety
        cut = r.width() * 0.29
        painter.drawPolygon(
            QPolygonF(
                [
                    QPointF(r.left() + cut, r.top()),
                    QPointF(r.right() - cut, r.top()),
                    QPointF(r.right(), r.top() + cut),
                    QPointF(r.right(), r.bottom() - cut),
                    QPointF(r.right() - cut, r.bottom()),
                    QPointF(r.left() + cut, r.bottom()),
                    QPointF(r.left(), r.bottom() - cut),
                    QPointF(r.left(), r.top() + cut),
                ]
            )
        )
    elif shape == "shield":
        path = QPainterPath()
        path.moveTo(r.center().x(), r.top())
        path.lineTo(r.right(), r.top() + r.height() * 0.2)
        path.cubicTo(
            r.right(),
            r.top() + r.height() * 0.7,
            r.center().x() + r.width() * 0.1,
            r.bottom(),
            r.center().x(),
            r.bottom(),
        )
        path.cubicTo(
            r.center().x() - r.width() * 0.1,
            r.bottom(),
            r.left(),
            r.top() + r.height() * 0.7,
            r.left(),
            r.top() + r.height() * 0.2,
        )
        path.closeSubpath()
        painter.drawPath(path)
    else:
        painter.drawRect(r)
    # The exclamation mark inside.
    cx = r.center().x()
    top = r.top() + r.height() * (0.38 if shape == "triangle" else 0.25)
    painter.drawLine(QPointF(cx, top), QPointF(cx, r.top() + r.height() * 0.62))
    painter.setBrush(colour)
    dot = r.height() * 0.06
    painter.drawEllipse(QPointF(cx, r.top() + r.height() * 0.77), dot, dot)
    painter.restore()


class AlertIcon(QWidget):
    def __init__(self, kind: str, size: int = 32, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.setFixedSize(QSize(size, size))
        self.setAccessibleName(theme.ALERT_KIND_TEXT.get(kind, "Alert"))

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        colour = QColor(theme.current().alert(self.kind).fg)
        paint_alert_icon(painter, QRectF(self.rect()), self.kind, colour)


class AlertBadge(QFrame):
    """A compact alert: icon + short label on the kind's colour (search rows, headers)."""

    def __init__(self, kind: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("role", "alert")
        self.setProperty("kind", kind if kind in theme.ALERT_KIND_TEXT else "other")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 10, 4)
        row.setSpacing(6)
        row.addWidget(AlertIcon(kind, 22))
        lab = PatientText(text)
        lab.setWordWrap(False)
        lab.setStyleSheet("font-weight: bold;")
        row.addWidget(lab)
        self.setAccessibleName(f"{theme.ALERT_KIND_TEXT.get(kind, 'Alert')}: {text}")


class AlertBand(QFrame):
    """An alert at the top of a record: one compact line (icon, kind, label) that cannot be
    missed and reads without colour; tapping it shows the detail (since when). A staff-safety
    alert always shows its plain-English meaning (`subtitle`): it changes how staff attend.
    Compact, three alerts leave room for the crisis plan on one screen (issue 11 item 4)."""

    def __init__(
        self,
        kind: str,
        label_text: str,
        detail: str | None = None,
        parent: QWidget | None = None,
        *,
        subtitle: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(parent)
        kind = kind if kind in theme.ALERT_KIND_TEXT else "other"
        self.kind = kind
        self.setProperty("role", "alert")
        self.setProperty("kind", kind)
        self.setMinimumHeight(theme.MIN_TARGET_PX)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 4, 12, 4)
        row.setSpacing(12)
        row.addWidget(AlertIcon(kind, 30), 0, Qt.AlignmentFlag.AlignVCenter)
        text = QVBoxLayout()
        text.setSpacing(0)
        main = PatientText(f"{theme.ALERT_KIND_TEXT[kind].upper()}: {label_text}")
        main.setStyleSheet("font-size: 17pt; font-weight: bold;")
        text.addWidget(main)
        self.subtitle = PatientText(subtitle or "")
        text.addWidget(self.subtitle)
        # A merged person's alert says whose record holds it (issue 14), always in view.
        self.source = PatientText(f"From {source}" if source else "")
        text.addWidget(self.source)
        self.detail = PatientText(detail or "")
        text.addWidget(self.detail)
        self._has_detail = bool(detail)
        row.addLayout(text, 1)
        # Only now, with a parent: shown without one, a label is a window of its own (it
        # took the activation, and the focus-loss lock locked the app).
        self.subtitle.setVisible(bool(subtitle))
        self.source.setVisible(bool(source))
        self.detail.hide()
        self.setAccessibleName(
            f"Alert, {theme.ALERT_KIND_TEXT[kind]}: {label_text}"
            + (f". {subtitle}" if subtitle else "")
            + (f". From {source}" if source else "")
        )
        if self._has_detail:
            self.setCursor(Qt.CursorShape.PointingHandCursor)

    def mousePressEvent(self, event: Any) -> None:
        """A tap shows or hides the detail (since when)."""
        if self._has_detail:
            self.detail.setVisible(not self.detail.isVisible())
        super().mousePressEvent(event)


class SectionCard(QFrame):
    """A titled card; add rows with `add`/`add_text`."""

    def __init__(
        self, title: str, *, accessible_name: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setProperty("role", "card")
        self.setAccessibleName(accessible_name or title)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(18, 14, 18, 16)
        self.body.setSpacing(8)
        self.title = label(title, "h2")
        self.body.addWidget(self.title)

    def add(self, widget: QWidget) -> QWidget:
        self.body.addWidget(widget)
        return widget

    def add_heading(self, text: str) -> QLabel:
        head = label(text, "h3")
        self.body.addWidget(head)
        return head

    def add_text(self, text: str, role: str | None = None) -> PatientText:
        lab = PatientText(text, role=role)
        self.body.addWidget(lab)
        return lab


class _Toggles(QWidget):
    """What every choice control shares: one checkable big toggle per (value, text) option,
    named for screen readers as "<control>: <option>", in a button group (exclusive for
    one-of-a-few), laid out `columns` a row and re-flowed by `set_columns`."""

    def __init__(
        self,
        options: Sequence[tuple[Any, str]],
        *,
        accessible_name: str,
        columns: int,
        spacing: int = 8,
        exclusive: bool = True,
        expanding: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setAccessibleName(accessible_name)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(spacing)
        self._group = QButtonGroup(self)
        self._group.setExclusive(exclusive)
        self._values: list[Any] = [value for value, _ in options]
        self.buttons: list[QPushButton] = []
        for index, (_value, text) in enumerate(options):
            button = BigButton(text, role="toggle", accessible_name=f"{accessible_name}: {text}")
            button.setCheckable(True)
            if expanding:
                button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            self._group.addButton(button, index)
            self.buttons.append(button)
        self._columns = max(1, columns)
        self._place()

    def _place(self) -> None:
        for index, button in enumerate(self.buttons):
            self._grid.addWidget(button, index // self._columns, index % self._columns)

    def set_columns(self, columns: int) -> None:
        """Re-flow (e.g. one column in portrait, two in landscape)."""
        columns = max(1, columns)
        if columns != self._columns:
            self._columns = columns
            for button in self.buttons:
                self._grid.removeWidget(button)
            self._place()

    def button(self, value: Any) -> QPushButton:
        return self.buttons[self._values.index(value)]


class ToggleGroup(_Toggles):
    """Exclusive big toggles (a segmented control); `changed` carries the chosen value.
    Options are (value, text) pairs, as `SegmentedChoice` takes them; the first starts chosen."""

    changed = Signal(object)

    def __init__(
        self,
        options: Sequence[tuple[object, str]],
        *,
        accessible_name: str,
        columns: int = 0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            options,
            accessible_name=accessible_name,
            columns=columns or len(options),
            spacing=6,
            expanding=False,
            parent=parent,
        )
        if self.buttons:
            self.buttons[0].setChecked(True)
        self._group.idClicked.connect(lambda i: self.changed.emit(self._values[i]))

    def value(self) -> object:
        index = self._group.checkedId()
        return self._values[index] if index >= 0 else None

    def set_value(self, value: object) -> None:
        if value in self._values:
            self.button(value).setChecked(True)


def rule() -> QFrame:
    """A thin separator line."""
    line = QFrame()
    line.setProperty("role", "rule")
    return line


class SegmentedChoice(_Toggles):
    """One choice out of a few as a grid of big toggles; unlike `ToggleGroup` it may start
    (and be reset to) no choice, so a form can tell "not answered" from an answer.

    A tap on the chosen button keeps it chosen: a stray double tap must not clear an answer.
    `changed` (the value, or None) fires on taps only, never on `set_value`.
    """

    changed = Signal(object)

    def __init__(
        self,
        options: Sequence[tuple[str, str]],
        *,
        accessible_name: str,
        columns: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            options,
            accessible_name=accessible_name,
            columns=columns or len(options),
            parent=parent,
        )
        self._group.idClicked.connect(lambda i: self.changed.emit(self._values[i]))

    def value(self) -> str | None:
        index = self._group.checkedId()
        return self._values[index] if index >= 0 else None

    def set_value(self, value: str | None) -> None:
        if value not in self._values:
            self._group.setExclusive(False)  # the only way to uncheck an exclusive group
            for button in self.buttons:
                button.setChecked(False)
            self._group.setExclusive(True)
            return
        self.button(value).setChecked(True)

    def set_enabled_value(self, value: str, enabled: bool) -> None:
        self.button(value).setEnabled(enabled)


class ChipSelect(_Toggles):
    """Any number of choices as big toggles; a check mark shows the chosen ones without
    relying on colour. `changed` (the chosen values, in option order) fires on taps only."""

    changed = Signal(list)

    def __init__(
        self,
        options: Sequence[tuple[str, str]],
        *,
        accessible_name: str,
        columns: int = 3,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            options,
            accessible_name=accessible_name,
            columns=columns,
            exclusive=False,
            parent=parent,
        )
        self._texts = dict(options)
        for value, button in zip(self._values, self.buttons, strict=True):
            button.toggled.connect(lambda _on, v=value: self._relabel(v))
            button.clicked.connect(lambda _=False: self.changed.emit(self.values()))
            self._relabel(value)

    def _relabel(self, value: str) -> None:
        button = self.button(value)
        button.setText(("✓ " if button.isChecked() else "+ ") + self._texts[value])

    def values(self) -> list[str]:
        return [v for v, b in zip(self._values, self.buttons, strict=True) if b.isChecked()]

    def set_values(self, values: Sequence[str]) -> None:
        for value, button in zip(self._values, self.buttons, strict=True):
            button.setChecked(value in values)

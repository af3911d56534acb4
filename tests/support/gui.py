"""Driving the real window as an officer does: controls found by their accessible names,
taps and typing, and reading back what the window, the cache and the server show. Shared by
the journey, the refused-record and the no-leaks tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.fhir import FIELD_RECORD_ID_SYSTEM, NHS_NUMBER_SYSTEM
from tests.conftest import TEST_PIN

LEFT = Qt.MouseButton.LeftButton


# -- finding and using controls as a user does --------------------------------------------------


def _visible(root: QWidget, kinds: tuple[type[QWidget], ...], name: str) -> list[Any]:
    return [
        w
        for kind in kinds
        for w in root.findChildren(kind)
        if w.accessibleName() == name and w.isVisible()
    ]


def named(qtbot: QtBot, root: QWidget, kinds: tuple[type[QWidget], ...], name: str) -> Any:
    """The one visible widget of these kinds with this accessible name (a widget just added
    to a shown layout becomes visible on the next turn of the event loop, so wait a little)."""
    try:
        qtbot.waitUntil(lambda: len(_visible(root, kinds, name)) == 1, timeout=3_000)
    except Exception:
        found = len(_visible(root, kinds, name))
        raise AssertionError(f"{found} visible widgets named {name!r}") from None
    return _visible(root, kinds, name)[0]


def on_screen(root: QWidget, name: str) -> bool:
    """Is a widget with this accessible name on screen now (no waiting: also for "not")?"""
    return bool(_visible(root, (QWidget,), name))


def shown_text(qtbot: QtBot, root: QWidget, name: str) -> str:
    """The text an officer reads in the visible widget with this accessible name: a label's,
    a button's or a field's own text, else its visible labels' texts, one a line."""
    widget = named(qtbot, root, (QWidget,), name)
    if isinstance(widget, (QLabel, QAbstractButton, QLineEdit)):
        return str(widget.text())
    if isinstance(widget, QPlainTextEdit):
        return widget.toPlainText()
    return "\n".join(
        lab.text() for lab in widget.findChildren(QLabel) if lab.isVisible() and lab.text()
    )


def tap(qtbot: QtBot, root: QWidget, name: str) -> None:
    button = named(qtbot, root, (QAbstractButton,), name)
    assert button.isEnabled(), f"{name!r} is disabled"
    qtbot.mouseClick(button, LEFT)


def type_into(qtbot: QtBot, root: QWidget, name: str, text: str) -> None:
    edit = named(qtbot, root, (QLineEdit, QPlainTextEdit), name)
    edit.setFocus()
    qtbot.keyClicks(edit, text)


def pin(qtbot: QtBot, window: Any, digits: str) -> None:
    """Tap the digits and OK on the PIN pad. Unlike `tap`, a disabled key is tapped too and
    does nothing, as on the tablet: the lockout wait is tested by tapping through it."""
    for key in [*(f"Digit {digit}" for digit in digits), "Unlock"]:
        qtbot.mouseClick(named(qtbot, window.unlock_view, (QAbstractButton,), key), LEFT)


def unlock(qtbot: QtBot, window: Any) -> None:
    pin(qtbot, window, TEST_PIN)
    qtbot.waitUntil(lambda: not window.is_locked, timeout=10_000)


def search(qtbot: QtBot, window: Any, text: str) -> list[Any]:
    box = named(qtbot, window, (QLineEdit,), "Search for a person")
    box.setFocus()
    box.selectAll()
    qtbot.keyClick(box, Qt.Key.Key_Delete)
    qtbot.keyClicks(box, text)
    view = window.search_view
    qtbot.waitUntil(lambda: not view.is_searching() and bool(view.hits()), timeout=5_000)
    return view.hits()


def tap_result(qtbot: QtBot, window: Any, patient_id: str) -> None:
    view = window.search_view
    row = next(i for i, h in enumerate(view.hits()) if h.id == patient_id)
    rect = view.results.visualRect(view.model.index(row))
    qtbot.mouseClick(view.results.viewport(), LEFT, pos=rect.center())


def sync_now(qtbot: QtBot, window: Any, *, timeout: int = 30_000) -> Any:
    """Tap "Sync now" on the Sync page; the report, or None if the run failed."""
    tap(qtbot, window, "Sync page")
    controller = window.sync_controller
    outcome: list[Any] = []
    controller.sync_finished.connect(outcome.append)
    controller.sync_failed.connect(lambda message: outcome.append(message))
    tap(qtbot, window, "Sync now")
    qtbot.waitUntil(lambda: bool(outcome) and not controller.is_running, timeout=timeout)
    return outcome[0]


def fill_encounter(qtbot: QtBot, form: QWidget, *, incident: str, narrative: str) -> None:
    type_into(qtbot, form, "Location", "Bus station, Moor Street")
    type_into(qtbot, form, "Police incident reference", incident)
    type_into(qtbot, form, "Presenting situation", "Distressed, talking of jumping")
    tap(qtbot, form, "Outcome: Referred to crisis team")
    type_into(qtbot, form, "Narrative", narrative)


def save_encounter(qtbot: QtBot, window: Any) -> str:
    form = window.encounter_form
    with qtbot.waitSignal(form.saved, timeout=10_000) as saved:
        tap(qtbot, form, "Save encounter")
    return str(saved.args[0])


def today_states(qtbot: QtBot, window: Any, wanted: Callable[[list[str]], bool]) -> list[str]:
    panel = window.sync_panel
    panel.refresh()
    qtbot.waitUntil(lambda: wanted(panel.today.states()), timeout=10_000)
    return list(panel.today.states())


# -- the server's side --------------------------------------------------------------------------


def server_encounters(reference: Any, client_id: str) -> list[dict[str, Any]]:
    """Encounters the centre holds under this field record's identifier (FHIR search)."""
    with reference.session(admin=True) as http:
        resp = http.get(
            f"{reference.base_url}/Encounter",
            params={"identifier": f"{FIELD_RECORD_ID_SYSTEM}|{client_id}"},
            timeout=30,
        )
    resp.raise_for_status()
    return [
        e["resource"]
        for e in resp.json().get("entry", ())
        if e.get("search", {}).get("mode", "match") == "match"
    ]


def other_patient(cohort_dir: Path, not_id: str) -> tuple[str, str]:
    """Another cohort person with an NHS number: (id, NHS number)."""
    for line in (cohort_dir / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        nhs = next(
            (
                i["value"]
                for i in patient.get("identifier", ())
                if i.get("system") == NHS_NUMBER_SYSTEM
            ),
            None,
        )
        if patient["id"] != not_id and nhs:
            return patient["id"], nhs
    raise AssertionError("no second patient with an NHS number")


def clipped(root: QWidget) -> list[str]:
    """Every visible text-bearing widget under `root` whose text does not fit its box."""
    found = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible():
            continue
        if isinstance(widget, QLabel) and widget.text() and not widget.pixmap():
            rect = widget.contentsRect()
            if widget.wordWrap():
                need = widget.heightForWidth(widget.width())
                if need > widget.height() + 1:
                    found.append(
                        f"label {widget.text()[:40]!r}: needs {need} px high, has {widget.height()}"
                    )
            else:
                wide = widget.fontMetrics().horizontalAdvance(widget.text().split("\n")[0])
                if wide > rect.width() + 1:
                    found.append(f"label {widget.text()[:40]!r}: {wide} px in {rect.width()}")
        elif isinstance(widget, QAbstractButton) and widget.text():
            hint = widget.sizeHint().width()
            if hint > widget.width() + 1:
                found.append(
                    f"button {widget.text()[:40]!r}: needs {hint} px, has {widget.width()}"
                )
    return found

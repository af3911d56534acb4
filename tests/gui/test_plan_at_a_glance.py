"""The plan in one look (issue 11 item 4, hazards H4 and H5).

On the cohort's most alert-heavy person with a crisis plan, at 1280x800 and 800x1280, day and
night: every alert and the three plan headings an officer acts on (what helps, who to contact,
preferred place of safety) with the first lines under them are on screen without scrolling.
Staff-safety alerts come first in their own colour with a plain-English meaning; every alert
card stands out from the page by at least 3:1 in both modes (computed from the palettes the
app draws with).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QLabel, QPushButton, QWidget
from pytestqt.qtbot import QtBot

from app.fhir import ALERT_KINDS
from app.ui import theme
from app.ui.record_view import _PHONE, GLANCE_SECTIONS
from app.ui.widgets import AlertBand
from tests.gui.conftest import WindowFactory, unlock

SIZES = ((1280, 800), (800, 1280))
GLANCE = ("What helps", "Who to contact", "Preferred place of safety / treatment")


def _most_alerted(cohort_dir: Path) -> str:
    planned = {
        json.loads(line)["subject"]["reference"].split("/", 1)[1]
        for line in (cohort_dir / "CarePlan.ndjson").read_text().splitlines()
    }
    counts: dict[str, int] = {}
    for line in (cohort_dir / "Flag.ndjson").read_text().splitlines():
        flag = json.loads(line)
        pid = flag["subject"]["reference"].split("/", 1)[1]
        if flag.get("status") == "active" and pid in planned:
            counts[pid] = counts.get(pid, 0) + 1
    return max(sorted(counts), key=lambda pid: counts[pid])


def _most_contacts(cohort_dir: Path) -> str:
    """The person whose active plan's "who to contact" holds the most phone numbers (about
    five: coordinator, crisis line, two relatives, GP), most alerts first on a tie: the
    plan most likely to push "Preferred place" below the fold (hazard H5)."""
    alerts: dict[str, int] = {}
    for line in (cohort_dir / "Flag.ndjson").read_text().splitlines():
        flag = json.loads(line)
        pid = flag["subject"]["reference"].split("/", 1)[1]
        if flag.get("status") == "active":
            alerts[pid] = alerts.get(pid, 0) + 1
    best: dict[str, tuple[int, int]] = {}
    for line in (cohort_dir / "CarePlan.ndjson").read_text().splitlines():
        plan = json.loads(line)
        if plan.get("status") != "active":
            continue
        pid = plan["subject"]["reference"].split("/", 1)[1]
        texts = {
            activity["detail"]["code"]["coding"][0]["code"]: activity["detail"]["description"]
            for activity in plan.get("activity", [])
        }
        if set(GLANCE_SECTIONS) <= set(texts):
            best[pid] = (len(_PHONE.findall(texts["who-to-contact"])), alerts.get(pid, 0))
    return max(sorted(best), key=lambda pid: best[pid])


def _on_screen(widget: QWidget, viewport: QWidget) -> bool:
    top_left = widget.mapTo(viewport, widget.rect().topLeft())
    return viewport.rect().contains(QRect(top_left, widget.size()))


@pytest.mark.parametrize("who", ["most-alerts", "most-contacts"])
@pytest.mark.parametrize("mode", ["day", "night"])
@pytest.mark.parametrize("size", SIZES, ids=["landscape", "portrait"])
def test_alerts_and_the_first_plan_headings_need_no_scrolling(
    qtbot: QtBot,
    make_window: WindowFactory,
    gui_profile: Path,
    cohort_dir: Path,
    size: tuple[int, int],
    mode: str,
    who: str,
) -> None:
    pid = (_most_alerted if who == "most-alerts" else _most_contacts)(cohort_dir)
    window = make_window(gui_profile, size=size)
    unlock(qtbot, window)
    window.set_night_mode(mode == "night")
    try:
        window.open_patient(pid)  # as a tap on the result
        qtbot.waitUntil(window.record_view.showing_reason_sheet, timeout=5_000)
        window.record_view.reason_sheet.buttons()[0].click()
        qtbot.waitUntil(lambda: window.record_view.shown_record_id() == pid, timeout=5_000)
        view = window.record_view
        viewport = view.scroll_area.viewport()
        bands = view.alert_bands()
        if who == "most-alerts":
            assert len(bands) >= 2, "the most alert-heavy person should have several alerts"
        for band in bands:
            assert _on_screen(band, viewport), f"alert below the fold at {size} {mode}"
        page = view.scroll_area.widget()
        labels = {w.text(): w for w in page.findChildren(QLabel) if w.text() in GLANCE}
        assert labels, "no crisis plan headings at a glance"
        if who == "most-contacts":  # chosen for having all three
            assert set(labels) == set(GLANCE), f"plan headings at a glance: {sorted(labels)}"
        for text, heading in labels.items():
            assert _on_screen(heading, viewport), (
                f"{text!r} below the fold at {size} {mode}: "
                f"{heading.mapTo(viewport, heading.rect().bottomLeft()).y()} > {viewport.height()}"
            )
        if who == "most-contacts":  # the rest of the contacts: one tap away, all of them
            more = [b for b in page.findChildren(QPushButton) if b.text().startswith("+")]
            assert len(more) == 1, "no '+N more' under a long 'who to contact'"
            if os.environ.get("KERBSIDE_GLANCE_SHOT"):
                window.grab().save(f"{os.environ['KERBSIDE_GLANCE_SHOT']}-{size[0]}-{mode}.png")
            view.scroll_area.ensureWidgetVisible(more[0])
            more[0].click()
            full = [w for w in page.findChildren(QLabel) if w.text() == "Who to contact (all)"]
            assert full and _on_screen(full[0], viewport), "'+N more' does not show them all"
            view.scroll_area.verticalScrollBar().setValue(0)
        kinds = [band.kind for band in bands]
        assert kinds == sorted(kinds, key=ALERT_KINDS.index), "staff safety is not first"
    finally:
        window.set_night_mode(False)


@pytest.mark.parametrize("palette", [theme.DAY_PALETTE, theme.NIGHT_PALETTE], ids=["day", "night"])
def test_every_alert_card_stands_out_from_the_page(palette: Any) -> None:
    for kind in ALERT_KINDS:
        colours = palette.alert(kind)
        for page in (palette.bg, palette.surface):
            ratio = theme.contrast_ratio(colours.bg, page)
            assert ratio >= 3.0, f"{palette.name} {kind}: card {colours.bg} on {page} {ratio:.2f}"
        text = theme.contrast_ratio(colours.fg, colours.bg)
        assert text >= 4.5, f"{palette.name} {kind}: text {text:.2f}"


def test_staff_safety_alerts_have_their_own_look_and_meaning(qtbot: QtBot) -> None:
    from app.fhir import staff_safety_note

    band = AlertBand(
        "staff",
        "Do not visit alone",
        "Since 01/02/2024",
        subtitle=staff_safety_note("Do not visit alone"),
    )
    qtbot.addWidget(band)
    band.show()
    assert band.subtitle.isVisible() and "two staff" in band.subtitle.text()
    assert "STAFF SAFETY" in band.accessibleName().upper()
    for name in ("MAPPA", "MARAC", "Carries weapons"):
        assert staff_safety_note(name), name
    day, night = theme.DAY_PALETTE, theme.NIGHT_PALETTE
    for palette in (day, night):
        others = {palette.alert(k).bg for k in ALERT_KINDS if k != "staff"}
        assert palette.alert("staff").bg not in others
    assert theme.ALERT_KIND_SHAPE["staff"] not in {
        theme.ALERT_KIND_SHAPE[k] for k in ALERT_KINDS if k != "staff"
    }

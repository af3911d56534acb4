"""Find a person through the real window: typos, badges, empty and no-result states, the
"did you mean" chip, the NHS check-digit notice, filters, debounce and row height."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.fhir import ALERT_CODES
from app.ui.search_view import EMPTY_HINT, format_nhs
from tests.gui.conftest import WindowFactory, type_search, unlock, wait_for_results
from tests.support.gui import on_screen


def _typo(word: str) -> str:
    """Swap two letters in the middle: the commonest slip on a wet screen."""
    i = len(word) // 2
    return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]


def test_a_typo_still_finds_the_person_with_alert_badges(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    query = f"{alerted_person.given} {_typo(alerted_person.family)}"
    assert query.lower() != f"{alerted_person.given} {alerted_person.family}".lower()
    hits = type_search(qtbot, window, query)
    ids = [h.id for h in hits]
    assert alerted_person.id in ids[:3]
    hit = hits[ids.index(alerted_person.id)]
    kinds = {ALERT_CODES[c][1] for c in alerted_person.alert_codes if c in ALERT_CODES}
    assert kinds <= {a.kind for a in hit.alerts}
    assert hit.alerts
    # The row speaks its alerts (colour is never the only cue).
    row = ids.index(alerted_person.id)
    spoken = window.search_view.model.index(row).data(Qt.ItemDataRole.AccessibleTextRole)
    assert all(a.label in spoken for a in hit.alerts)


def test_empty_box_shows_what_can_be_typed(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    view = window.search_view
    assert on_screen(view, "Search hint")
    assert view.hint.text() == EMPTY_HINT
    for word in ("name", "nickname", "date of birth", "age", "NHS number", "postcode"):
        assert word in EMPTY_HINT


def test_no_match_says_so(qtbot: QtBot, gui_profile: Path, make_window: WindowFactory) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    assert type_search(qtbot, window, "Zzyzxqwv Qqqqxz") == []
    view = window.search_view
    assert on_screen(view, "No results")
    assert "No one" in view.no_results.text()


def test_did_you_mean_applies_with_one_tap(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    view = window.search_view
    type_search(qtbot, window, f"{alerted_person.family}x Zzyzxqwv")
    if not view.did_you_mean.isVisible():
        # This query matched well enough; a word that is nobody's name must offer a fix.
        type_search(qtbot, window, _typo(alerted_person.family) + "qq")
    if view.did_you_mean.isVisible():
        suggestion = view.did_you_mean.property("suggestion")
        qtbot.mouseClick(view.did_you_mean, Qt.MouseButton.LeftButton)
        assert view.box.text() == suggestion
    else:
        assert on_screen(view, "Search results") or on_screen(view, "No results")


def test_bad_nhs_check_digit_shows_the_notice(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    type_search(qtbot, window, "485 777 3456")  # the NHS manual's sample: check digit wrong
    view = window.search_view
    assert view.notice.isVisible()
    assert "check digit" in view.notice.text()


def test_sex_and_age_filters_narrow_the_results(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    view = window.search_view
    everyone = type_search(qtbot, window, alerted_person.given)
    assert everyone
    qtbot.mouseClick(view.filters_button, Qt.MouseButton.LeftButton)
    assert view.filters.isVisible()
    qtbot.mouseClick(view.sex.buttons[1], Qt.MouseButton.LeftButton)  # Female
    assert all(h.gender == "female" for h in wait_for_results(qtbot, window))
    qtbot.mouseClick(view.age.buttons[1], Qt.MouseButton.LeftButton)  # Under 18
    assert all(h.age is not None and h.age < 18 for h in wait_for_results(qtbot, window))
    assert "Female" in view.filters_button.text()
    view.clear_filters()
    view.search_now()
    assert len(wait_for_results(qtbot, window)) == len(everyone)


def test_results_come_as_you_type_after_a_short_pause(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    view = window.search_view
    qtbot.keyClicks(view.box, alerted_person.family[:4])
    assert view.is_searching() and view.hits() == []  # debounced, no button
    qtbot.waitUntil(lambda: bool(view.hits()), timeout=5_000)  # speed: tests/bench


def test_result_rows_are_tall_enough_for_a_gloved_finger(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    hits = type_search(qtbot, window, alerted_person.family)
    view = window.search_view
    for row in range(len(hits)):
        assert view.results.visualRect(view.model.index(row)).height() >= 64


def test_enter_opens_the_top_result(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory, alerted_person
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    type_search(qtbot, window, f"{alerted_person.given} {alerted_person.family}")
    qtbot.keyClick(window.search_view.box, Qt.Key.Key_Return)
    assert window.record_view.showing_reason_sheet()


def test_a_result_without_an_nhs_number_says_so_once() -> None:
    """The row and its spoken text label the number themselves: "NHS No NHS number" was
    shown for people without one."""
    assert format_nhs(None) == "No NHS number"
    assert format_nhs("") == "No NHS number"
    assert format_nhs("9434765919") == "NHS 943 476 5919"
    assert format_nhs("9434765919", label="NHS number") == "NHS number 943 476 5919"

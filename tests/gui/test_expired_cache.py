"""An expired cache locks patient data on screen (SECURITY.md 25, hazard H14): the verdict
is read on a worker with the header's counts (`Session.status`), so the search service
refuses too, for the moment before that answer lands.

The cache is made stale by moving its last refresh back, as a tablet left unsynced past its
time limit would have it; nothing races the wall clock (30 days back against a 72-hour limit).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from app.services.session import LAST_REFRESH
from app.services.session import unlock as open_cache
from app.times import iso_instant
from tests.conftest import TEST_PIN
from tests.gui.conftest import USER, WindowFactory, unlock
from tests.support.gui import named, on_screen, search, shown_text

LONG_AGO = iso_instant(datetime.now(UTC) - timedelta(days=30))


def _make_stale(profile: Path) -> None:
    session = open_cache(profile, USER, TEST_PIN)
    try:
        session.store.set_meta(LAST_REFRESH, LONG_AGO)
    finally:
        session.close()


def test_an_expired_cache_opens_on_a_locked_search_that_says_why(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    _make_stale(gui_profile)
    window = make_window(gui_profile)
    unlock(qtbot, window)
    reason = shown_text(qtbot, window, "Patient data locked")
    assert "time limit" in reason and "sync" in reason
    assert not named(qtbot, window, (QLineEdit,), "Search for a person").isEnabled()
    qtbot.waitUntil(lambda: "Synced" not in window.sync_summary_text(), timeout=5_000)


def test_a_search_on_a_cache_that_expired_while_open_is_refused_and_locks_the_screen(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    """The service refuses on the worker (no results, no audit entry of people shown),
    whatever the screen showed before its next status read."""
    window = make_window(gui_profile)
    unlock(qtbot, window)
    people = search(qtbot, window, "a")
    assert people and not on_screen(window, "Patient data locked")
    audited = len(window.session.store.audit_entries())
    window.session.store.set_meta(LAST_REFRESH, LONG_AGO)
    box = named(qtbot, window, (QLineEdit,), "Search for a person")
    qtbot.keyClicks(box, "b")
    qtbot.waitUntil(lambda: on_screen(window, "Patient data locked"), timeout=5_000)
    assert window.search_view.hits() == [] and not box.isEnabled()
    assert len(window.session.store.audit_entries()) == audited

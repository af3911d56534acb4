"""Locked means locked (issue 12 finding 8, SECURITY.md 30): the lock screen holds no open
cache and no data key; the same user's PIN derives the key again and reopens it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.errors import ProfileError
from app.store import Store
from tests.gui.conftest import WindowFactory, type_search, unlock


def test_the_lock_screen_closes_the_cache_and_drops_the_key(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    window = make_window(gui_profile)
    unlock(qtbot, window)
    session = window.session
    old_store = session.store
    window.lock()
    # The key itself, not a flag: SECURITY.md 30 is about what stays in memory, which no
    # screen can show.
    assert session.is_locked and session._data_key is None
    with pytest.raises(Exception, match="closed"):
        old_store.conn.execute("SELECT count(*) FROM sqlite_master")
    with pytest.raises(ProfileError, match="locked"):
        session.open_store()
    unlock(qtbot, window)  # derives the key from the PIN again
    assert window.session is session and not session.is_locked
    assert isinstance(session.store, Store) and session.store is not old_store
    assert type_search(qtbot, window, "a")  # the reopened cache answers a search


def test_a_broken_audit_chain_is_shown_on_unlock(
    qtbot: QtBot, gui_profile: Path, make_window: WindowFactory
) -> None:
    from app.services.records import ACCESS_REASONS, open_record
    from app.services.session import unlock as open_profile
    from tests.conftest import TEST_PIN

    with open_profile(gui_profile, "pc101", TEST_PIN) as s:
        pid = s.store.conn.execute("SELECT id FROM resource WHERE type = 'Patient'").fetchone()[0]
        open_record(s, pid, ACCESS_REASONS[0])
        open_record(s, pid, ACCESS_REASONS[0])
        s.store.conn.execute("DELETE FROM audit WHERE seq = 1")
    window = make_window(gui_profile)
    unlock(qtbot, window)
    assert window.error_bar.isVisible()
    assert "audit trail" in window.error_text.text()

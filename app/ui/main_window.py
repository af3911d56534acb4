"""The main window: lock layer, top bar, Find (search + record), Encounter and Sync pages.

Layout follows the window, not the device: at 1000 px wide or more the search list and the
record sit side by side; narrower (portrait tablet) shows one pane at a time with a back
button. The window title is always just "Kerbside" (task bars, switchers and screen sharing
show titles), and locking swaps the whole window to the lock screen at once.

Locking keeps the session open in memory (the data key stays in this process, as a phone's
"after first unlock" state does) so that unlocking returns the officer to the same patient,
page and draft; the same user's PIN is verified again by app.security, with its delays and
wipe. A different user gets a fresh session and a clean window.

Each unlocked session gets one `SyncController` (sync on its own thread, connectivity,
auto-sync) and the `SyncPanel` that shows it; both are stopped and dropped on lock, on a wipe
and on close, and rebuilt on unlock (a lock cancels a running sync; its committed pages stay,
so the next run continues). The encounter form is made on demand, one at a time: replacing it
keeps the old one's work as a draft, which the new form offers back.

Test hooks (kept stable for tests/gui and the journey test): `is_locked`, `session`,
`unlock_view`, `search_view`, `record_view`, `encounter_form`, `sync_panel`,
`sync_controller`, `current_page()`, `show_page()`, `is_landscape()`, `idle`, `lock()`,
`start_sync()`, `sync_summary_text()`, and the signals `locked`, `session_opened(Session)`,
`form_opened(EncounterForm)`, `sync_finished(SyncReport)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.services.session import profile_settings, save_profile_settings
from app.times import clock_text
from app.ui import theme
from app.ui.first_run_view import FirstRunView
from app.ui.help_view import HelpView
from app.ui.idle import DEFAULT_IDLE_MINUTES, IdleLock
from app.ui.lookup_view import LookupView
from app.ui.ops import Latest, Op, OpChanges, Runner
from app.ui.record_view import RecordView
from app.ui.search_view import SearchView
from app.ui.unlock_view import UnlockView
from app.ui.use_cases import DraftsFound, drafts_found_op, session_status_op
from app.ui.widgets import BigButton, PatientText, label

if TYPE_CHECKING:
    from app.services.session import Session, SessionStatus
    from app.ui.encounter_form import EncounterForm
    from app.ui.sync_panel import SyncPanel
    from app.ui.sync_worker import SyncController
    from sync import SyncReport

log = logging.getLogger("kerbside.ui")

TITLE = "Kerbside"
LANDSCAPE_MIN_WIDTH = 1000
PAGE_FIND, PAGE_ENCOUNTER, PAGE_SYNC = "find", "encounter", "sync"
PAGE_LOOKUP = "lookup"  # the online look-up: part of Find (its nav button stays lit)


class MainWindow(QMainWindow):
    """The whole app in one window.

    Args:
        profile_dir: the profile to unlock.
        runner: the app's `ops.Runner`.
        demo_pin: show this PIN on the unlock screen (demo only; implies `demo`).
        demo: show the DEMO banner (synthetic data, insecure keyring allowed).
        auto_sync: let the sync controller start runs by itself (on unlock when the central
            record answers, when connectivity returns, on its timer, after a save).
        sync_options: extra `SyncController` keyword arguments (tests: probe interval,
            `use_os_network_info=False`).
    """

    locked = Signal()
    session_opened = Signal(object)  # Session
    form_opened = Signal(object)  # EncounterForm
    sync_finished = Signal(object)  # sync.SyncReport, after the window refreshed its views
    sync_summary_changed = Signal(str)  # every text the header's sync state shows, in order
    closed = Signal()  # the window closed: session closed, sync stopped (the demo stops its
    # server on this)

    def __init__(
        self,
        profile_dir: Path,
        runner: Runner,
        *,
        demo_pin: str | None = None,
        demo: bool = False,
        auto_sync: bool = False,
        sync_options: Mapping[str, Any] | None = None,
        site: Any | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setAccessibleName(TITLE)
        self._profile_dir = profile_dir
        self._runner = runner
        self._demo = demo or demo_pin is not None
        self._auto_sync = auto_sync
        options: dict[str, Any] = (
            {} if auto_sync else {"sync_on_reconnect": False, "auto_sync_minutes": 0}
        )
        options.update(sync_options or {})
        self._sync_options = options
        self.session: Session | None = None
        self._is_locked = True
        self._portrait_pane = "search"
        self._page = PAGE_FIND
        self._encounter_form: EncounterForm | None = None
        self._sync_panel: SyncPanel | None = None
        self.sync_controller: SyncController | None = None
        self._picking_for_form = False
        self._landscape = True
        self._locked_at = ""  # HH:MM of the last lock, for the record left open across it
        # The cache's counts, last sync and freshness, read on a worker (`_refresh_status`);
        # None until the newest read answers: the header then claims nothing.
        self._status: SessionStatus | None = None
        self._status_reads = Latest()

        self._layers = QStackedWidget()
        self.setCentralWidget(self._layers)
        self.unlock_view = UnlockView(profile_dir, runner, demo_pin=demo_pin)
        self.unlock_view.unlocked.connect(self._on_unlocked)
        self.unlock_view.resumed.connect(self._on_resumed)
        self.unlock_view.wiped.connect(self._on_wiped)
        self.unlock_view.help_requested.connect(self.show_help)
        self._layers.addWidget(self.unlock_view)
        self._layers.addWidget(self._build_workspace())
        self.help_view = HelpView(
            profile_dir, runner, site_path=getattr(site, "path", None) if site else None
        )
        self.help_view.back_requested.connect(self.close_help)
        self.larger_text_button = self.help_view.larger_text_button
        self._show_larger_text(self.larger_text())
        self.larger_text_button.toggled.connect(self.set_larger_text)
        self._layers.addWidget(self.help_view)
        self._help_return: QWidget = self.unlock_view
        self._layers.setCurrentWidget(self.unlock_view)
        self.first_run_view: FirstRunView | None = None
        from app.services.site import needs_first_run

        if needs_first_run(profile_dir, site):
            self.first_run_view = FirstRunView(profile_dir, site, runner)
            self.first_run_view.enrolled.connect(self._on_first_enrolled)
            self.first_run_view.help_requested.connect(self.show_help)
            self._layers.addWidget(self.first_run_view)
            self._layers.setCurrentWidget(self.first_run_view)
            self._help_return = self.first_run_view

        app = QApplication.instance()
        assert isinstance(app, QApplication)
        self.idle = IdleLock(
            app, self._setting("idle_lock_minutes", DEFAULT_IDLE_MINUTES), parent=self
        )
        self.idle.lock_requested.connect(lambda _reason: self.lock())
        runner.error_shown.connect(self.show_error)
        runner.changes_applied.connect(self._on_changes)
        self._build_shortcuts()
        self.resize(1280, 800)
        QTimer.singleShot(0, self._prewarm)

    def _prewarm(self) -> None:
        """Load what unlock needs while the PIN is typed: plain modules on the runner's pool,
        Qt modules on this thread a little later (see _PREWARM_OFF_THREAD)."""
        Op(None, _prewarm_off_thread).on_failure(_prewarm_stopped).run(self._runner)
        QTimer.singleShot(_PREWARM_GUI_DELAY_MS, _prewarm_gui_modules)

    # -- building ----------------------------------------------------------------------------
    def _build_workspace(self) -> QWidget:
        ws = QWidget()
        ws.setObjectName("workspace")
        col = QVBoxLayout(ws)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        if self._demo:
            banner = label("DEMO — synthetic data only. Not for real patients.", "demo")
            banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
            banner.setAccessibleName("Demo mode: synthetic data only")
            col.addWidget(banner)
        col.addWidget(self._build_topbar())

        self.error_bar = QFrame()
        self.error_bar.setProperty("role", "error")
        eb = QHBoxLayout(self.error_bar)
        eb.setContentsMargins(12, 4, 8, 4)
        self.error_text = label("", None)
        self.error_text.setAccessibleName("Error message")
        eb.addWidget(self.error_text, 1)
        dismiss = BigButton("Dismiss", role="bar", accessible_name="Dismiss the error")
        dismiss.clicked.connect(lambda: self.error_bar.hide())
        eb.addWidget(dismiss)
        self.error_bar.hide()
        col.addWidget(self.error_bar)
        self._error_timer = QTimer(self)
        self._error_timer.setSingleShot(True)
        self._error_timer.setInterval(15_000)
        self._error_timer.timeout.connect(self.error_bar.hide)

        col.addWidget(self._build_draft_bar())

        self.pages = QStackedWidget()
        self.pages.setObjectName("pages")
        self.search_view = SearchView(self._runner)
        self.search_view.patient_chosen.connect(self.open_patient)
        self.search_view.unknown_person_requested.connect(self.start_unknown_person)
        self.search_view.query_edited.connect(self._detach_record)
        self.search_view.results_shown.connect(self._follow_record)
        self.search_view.lookup_requested.connect(self.start_lookup)
        self.record_view = RecordView(self._runner)
        self.record_view.back_requested.connect(self.go_back)
        self.record_view.encounter_requested.connect(self.start_encounter)
        self.record_view.record_shown.connect(self._on_record_shown)
        self.record_view.shown_changed.connect(self._follow_record)
        self.record_view.change_person_requested.connect(self.change_person)

        find = QWidget()
        self._find_row = QHBoxLayout(find)
        self._find_row.setContentsMargins(0, 0, 0, 0)
        self._find_row.setSpacing(0)
        self._find_row.addWidget(self.search_view, 5)  # up to its cap; the record gets the rest
        divider = QFrame()
        divider.setProperty("role", "rule")
        divider.setFixedWidth(2)
        divider.setMaximumHeight(16_777_215)
        self._divider = divider
        self._find_row.addWidget(divider)
        self._find_row.addWidget(self.record_view, 3)
        self.pages.addWidget(find)
        self._find_page = find

        self._encounter_slot = QWidget()
        self._encounter_slot.setAccessibleName("Encounter")
        slot = QVBoxLayout(self._encounter_slot)
        slot.setContentsMargins(0, 0, 0, 0)
        self._encounter_slot_layout = slot
        self._encounter_empty = self._build_encounter_start()
        slot.addWidget(self._encounter_empty)
        self.pages.addWidget(self._encounter_slot)
        self._sync_slot = QWidget()
        self._sync_slot.setAccessibleName("Sync")
        self._sync_slot_layout = QVBoxLayout(self._sync_slot)
        self._sync_slot_layout.setContentsMargins(0, 0, 0, 0)
        self.pages.addWidget(self._sync_slot)
        self.lookup_view = LookupView(self._runner)
        self.lookup_view.record_opened.connect(self._show_looked_up)
        self.lookup_view.cancelled.connect(lambda: self.show_page(PAGE_FIND))
        self.lookup_view.unreachable.connect(lambda _name: self._offer_lookup())
        self.pages.addWidget(self.lookup_view)
        col.addWidget(self.pages, 1)
        col.addWidget(self._build_navbar())
        return ws

    def _build_draft_bar(self) -> QWidget:
        """Right after unlock: an unsaved encounter (a crash, a flat battery, a lock that
        became a restart) is offered at once, naming whom it is about."""
        bar = QFrame()
        bar.setProperty("role", "notice")
        row = QHBoxLayout(bar)
        row.setContentsMargins(12, 6, 8, 6)
        self.draft_bar_text = PatientText("")
        self.draft_bar_text.setAccessibleName("Unsaved encounter found")
        row.addWidget(self.draft_bar_text, 1)
        self.draft_resume_button = BigButton(
            "Resume", role="primary", accessible_name="Resume the unsaved encounter"
        )
        self.draft_resume_button.clicked.connect(self._resume_offered_draft)
        row.addWidget(self.draft_resume_button)
        later = BigButton("Later", role="bar", accessible_name="Resume the encounter later")
        later.clicked.connect(bar.hide)
        row.addWidget(later)
        bar.hide()
        self.draft_bar = bar
        self._offered_draft: str | None = None
        self._draft_offers = Latest()  # a form opened or the session closed: the offer is void
        return bar

    def _offer_drafts(self, session: Session) -> None:
        """Look for drafts on a worker; offer the newest when the answer comes, unless a
        form was opened (it offers drafts itself) or the session closed meanwhile."""
        ticket = self._draft_offers.next()
        drafts_found_op(self, session).for_request(ticket).on_success(self._show_draft_offer).run(
            self._runner
        )

    def _show_draft_offer(self, found: DraftsFound) -> None:
        if not found.drafts:
            self.draft_bar.hide()
            self._offered_draft = None
            return
        newest = found.drafts[0]
        self._offered_draft = newest.draft_id
        count = len(found.drafts)
        more = f" (and {count - 1} more on the Sync page)" if count > 1 else ""
        self.draft_bar_text.setText(
            f"Unsaved encounter about {found.people[newest.draft_id]}{more}."
        )
        self.draft_bar.show()

    def _resume_offered_draft(self) -> None:
        self.draft_bar.hide()
        if self._offered_draft is not None:
            self.open_draft(self._offered_draft)
            self._offered_draft = None

    def _build_encounter_start(self) -> QWidget:
        """The Encounter page before a form is open: two big ways in."""
        page = QFrame()
        page.setObjectName("workspace")
        col = QVBoxLayout(page)
        col.setContentsMargins(32, 32, 32, 32)
        col.setSpacing(16)
        col.addStretch(1)
        title = label("Record an encounter", "h1")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(title)
        hint = label("Open the person's record and tap “Record encounter”, or start here.", "hint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(hint)
        self.new_form_button = BigButton(
            "New encounter", role="primary", accessible_name="Start a new encounter"
        )
        self.new_form_button.clicked.connect(lambda: self._open_form())
        self.unknown_button = BigButton(
            "Unknown person",
            accessible_name=("Start an encounter for a person who cannot be identified"),
        )
        self.unknown_button.clicked.connect(self.start_unknown_person)
        for button in (self.new_form_button, self.unknown_button):
            button.setMinimumWidth(320)
            col.addWidget(button, 0, Qt.AlignmentFlag.AlignCenter)
        col.addStretch(2)
        return page

    def _build_topbar(self) -> QWidget:
        bar = QFrame()
        bar.setProperty("role", "topbar")
        row = QHBoxLayout(bar)
        # Tight spacing: in portrait (800 px) the sync state, a refused count, Night, Help and
        # Lock must all fit with two-digit counts (tests/gui/test_never_clipped.py).
        row.setContentsMargins(8, 6, 8, 6)
        row.setSpacing(6)
        self.user_label = label("", "h3", wrap=False)
        self.user_label.setAccessibleName("Signed-in user")
        row.addWidget(self.user_label)
        row.addStretch(1)
        self.sync_summary = BigButton("Sync: —", role="bar", accessible_name="Sync status")
        self.sync_summary.clicked.connect(lambda: self.show_page(PAGE_SYNC))
        row.addWidget(self.sync_summary)
        self.refused_badge = BigButton("", role="alarm", accessible_name="Refused records")
        self.refused_badge.clicked.connect(lambda: self.show_page(PAGE_SYNC))
        self.refused_badge.hide()
        row.addWidget(self.refused_badge)
        self.night_button = BigButton("☾ Night", role="bar", accessible_name="Night mode")
        self.night_button.setCheckable(True)
        self.night_button.setChecked(self.night_mode())
        self.night_button.toggled.connect(self.set_night_mode)
        row.addWidget(self.night_button)
        self.help_button = BigButton("Help", role="bar", accessible_name="Help and About")
        self.help_button.clicked.connect(self.show_help)
        row.addWidget(self.help_button)
        self.lock_button = BigButton("Lock", role="bar", accessible_name="Lock now")
        self.lock_button.clicked.connect(self.lock)
        row.addWidget(self.lock_button)
        return bar

    def _build_navbar(self) -> QWidget:
        bar = QFrame()
        bar.setProperty("role", "navbar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self._nav = QButtonGroup(self)
        self._nav.setExclusive(True)
        self.nav_buttons: dict[str, BigButton] = {}
        for key, text in ((PAGE_FIND, "Find"), (PAGE_ENCOUNTER, "Encounter"), (PAGE_SYNC, "Sync")):
            button = BigButton(text, role="nav", accessible_name=f"{text} page")
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, k=key: self.show_page(k))
            self._nav.addButton(button)
            self.nav_buttons[key] = button
            row.addWidget(button, 1)
        self.nav_buttons[PAGE_FIND].setChecked(True)
        return bar

    def _build_shortcuts(self) -> None:
        def add(keys: str | QKeySequence.StandardKey, slot: Any) -> None:
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)

        add("Ctrl+F", lambda: self._when_unlocked(self.focus_search))
        add("Ctrl+L", self.lock)
        add("Ctrl+N", lambda: self._when_unlocked(self.new_encounter))
        add("Esc", lambda: self._when_unlocked(self.go_back))
        add("Ctrl+Shift+N", lambda: self.set_night_mode(not self.night_mode()))
        add("F5", lambda: self._when_unlocked(self.start_sync))
        add("F1", self.show_help)
        add("Ctrl+Q", self.close)
        add("Ctrl+1", lambda: self._when_unlocked(self.focus_search))
        add("Ctrl+2", lambda: self._when_unlocked(lambda: self.go_to_page(PAGE_ENCOUNTER)))
        add("Ctrl+3", lambda: self._when_unlocked(lambda: self.go_to_page(PAGE_SYNC)))

    @property
    def runner(self) -> Runner:
        """The app's background runner (tests and screenshots wait on it)."""
        return self._runner

    # -- settings ----------------------------------------------------------------------------
    def _profile_settings(self) -> dict[str, Any]:
        if self.session is not None:
            return self.session.profile.settings
        return profile_settings(self._profile_dir)

    def _setting(self, key: str, default: Any) -> Any:
        return self._profile_settings().get(key, default)

    def _save_setting(self, **values: Any) -> None:
        try:
            if self.session is not None:
                self.session.profile.update_settings(**values)
            else:
                save_profile_settings(self._profile_dir, **values)
        except Exception as exc:
            self._runner.report(exc)

    def night_mode(self) -> bool:
        return bool(self._setting("night_mode", False))

    def set_night_mode(self, on: bool) -> None:
        """Switch theme now and remember it in the profile (no PIN needed: not a secret)."""
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        theme.apply(app, theme.NIGHT if on else theme.DAY)
        if self.night_mode() != on:
            self._save_setting(night_mode=on)
        self.night_button.blockSignals(True)
        self.night_button.setChecked(on)
        self.night_button.setText("☀ Day" if on else "☾ Night")
        self.night_button.setAccessibleName("Day mode" if on else "Night mode")
        self.night_button.blockSignals(False)
        self.update()

    def _show_larger_text(self, on: bool) -> None:
        self.larger_text_button.blockSignals(True)
        self.larger_text_button.setChecked(on)
        self.larger_text_button.setText("Larger text: on" if on else "Larger text: off")
        self.larger_text_button.blockSignals(False)

    def larger_text(self) -> bool:
        return bool(self._setting("larger_text", False))

    def set_larger_text(self, on: bool) -> None:
        """Every font but the bars' at 125% (or back to 100%) now, remembered in the profile
        beside the night-mode choice (no PIN needed: not a secret)."""
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        mode = theme.NIGHT if self.night_mode() else theme.DAY
        theme.apply(app, mode, text_scale=theme.LARGER_TEXT if on else 1.0)
        if self.larger_text() != on:
            self._save_setting(larger_text=on)
        self._show_larger_text(on)
        for widget in self.findChildren(QWidget):  # wrapped labels need new heights
            if isinstance(widget, QLabel) and widget.wordWrap():
                widget.setWordWrap(False)  # drops the label's cached size for its old font
                widget.setWordWrap(True)
            widget.updateGeometry()
        self.record_view.reshow()  # its rows and columns depend on the text size
        if self._encounter_form is not None:
            self._encounter_form.fit_columns()
        self.update()

    # -- locking -----------------------------------------------------------------------------
    @property
    def is_locked(self) -> bool:
        return self._is_locked

    def _when_unlocked(self, action: Any) -> None:
        if not self._is_locked:
            action()

    def show_help(self) -> None:
        """Help over whatever is showing (the unlock screen included); Back returns to it."""
        current = self._layers.currentWidget()
        if current is not None and current is not self.help_view:
            self._help_return = current
        self._layers.setCurrentWidget(self.help_view)
        self.help_view.back_button.setFocus()

    def _on_first_enrolled(self, user: str, pin: str) -> None:
        """Enrolled on the first-run screen: unlock through the normal path, once."""
        self._layers.setCurrentWidget(self.unlock_view)
        self._help_return = self.unlock_view
        self.unlock_view.fresh()
        self.unlock_view.select_user(user)
        self.unlock_view.enter_pin(pin)

    def close_help(self) -> None:
        if self.first_run_view is not None and self._help_return is self.first_run_view:
            self._layers.setCurrentWidget(self.first_run_view)  # not enrolled yet
            return
        back = self.unlock_view if self._is_locked else self._help_return
        self._layers.setCurrentWidget(back)

    def lock(self) -> None:
        """Hide every piece of patient data now; keep the session and drafts for the return."""
        if self._is_locked:
            return
        self._is_locked = True
        from app import times

        self._locked_at = times.clock_text(times.now())
        self._status_reads.drop()
        self._status = None
        self.idle.disarm()
        self.search_view.clear()
        self.record_view.drop_answers()  # asked for before the lock: asked again after it
        if self._page == PAGE_LOOKUP:
            self.show_page(PAGE_FIND)  # the look-up and what it found go with the lock
        self.error_bar.hide()
        self._layers.setCurrentWidget(self.unlock_view)  # the form's hide keeps its draft
        self.setWindowTitle(TITLE)
        self.unlock_view.relock(self.session.user_id if self.session else "")
        self.repaint()  # the task switcher may capture the window right after this
        self._stop_sync_controller()  # after the screen is clear: it may wait for a request
        if self.session is not None:
            self._runner.finish_writes()  # the draft the hidden form just handed over
            self.search_view.set_session(None)  # its index of names goes with the connection
            self.session.lock()  # cache closed, data key dropped (SECURITY.md 30)
        self._show_sync_summary()
        self.locked.emit()

    def _on_unlocked(self, session: Session) -> None:
        if self.session is not None:
            self._close_session()  # a different user unlocked: start clean
        self.session = session
        self.user_label.setText(session.user_id)
        self.idle.set_minutes(
            float(session.profile.settings.get("idle_lock_minutes", DEFAULT_IDLE_MINUTES))
        )
        self.search_view.set_session(session)
        self.record_view.set_session(session)
        self._refresh_status()
        self._install_session_widgets(session)
        self._portrait_pane = "search"
        self.show_page(PAGE_FIND)
        self._enter_workspace()
        self._offer_drafts(session)
        if session.audit_broken:  # SECURITY.md 27: the officer and the centre both hear of it
            self.show_error(
                "This tablet's audit trail has been tampered with or damaged: it will not be "
                "uploaded, and the central record is told at the next sync."
            )
        self.session_opened.emit(session)

    def _on_resumed(self, data_key: bytes) -> None:
        if self.session is not None:
            try:
                self.session.resume(data_key)
            except Exception as exc:
                self._runner.report(exc)
                self._close_session()
                self.unlock_view.fresh()
                return
            self.search_view.set_session(self.session)
        self._refresh_status()
        if self.session is not None:
            self._start_sync_controller(self.session)
        # Whoever is in front of the officer now, the record left open is from before.
        self.record_view.detach(self._locked_at)
        self._enter_workspace()

    def _enter_workspace(self) -> None:
        self._is_locked = False
        self._layers.setCurrentIndex(1)
        self._apply_layout()
        self.idle.arm()
        self.focus_page()  # the unlock screen that had the focus is hidden now
        typed = self.unlock_view.take_typed_ahead()
        if typed and self._page == PAGE_FIND:  # the name typed straight after OK
            self.focus_search()
            self.search_view.box.insert(typed)

    def _on_wiped(self) -> None:
        self._close_session()

    def _refresh_status(self, then: Callable[[], None] | None = None) -> None:
        """Read the cache's status on a worker; `then` runs once it is applied (or the read
        failed, or was superseded by a lock). The newest read wins."""
        self._status = None
        ticket = self._status_reads.next()
        if self.session is None or self.session.is_locked:
            self._show_sync_summary()
            if then is not None:
                then()
            return

        def applied(status: SessionStatus) -> None:
            self._apply_status(status)
            if then is not None:
                then()

        def failed(exc: BaseException) -> None:
            self._runner.report(exc)
            if then is not None:
                then()

        session_status_op(self, self.session).for_request(ticket).on_success(applied).on_failure(
            failed
        ).run(self._runner)
        self._show_sync_summary()

    def _apply_status(self, status: SessionStatus) -> None:
        """An expired cache (or a clock behind the trusted mark) locks patient data, with the
        reason; the header shows the counts and last sync."""
        self._status = status
        self.search_view.set_locked(status.locked_reason)
        if status.locked_reason is not None:
            self.record_view.clear()
        self._show_sync_summary()

    def _close_session(self) -> None:
        self._draft_offers.drop()
        self.draft_bar.hide()
        self.draft_bar_text.setText("")
        self._remove_session_widgets()
        self.search_view.set_session(None)
        self.record_view.set_session(None)
        if self.session is not None:
            try:
                self.session.close()
            except Exception as exc:
                self._runner.report(exc)
        self.session = None
        self.user_label.setText("")
        self._status_reads.drop()
        self._status = None
        self._show_sync_summary()

    # -- per-session parts: sync controller, sync panel, encounter form -------------------
    def _install_session_widgets(self, session: Session) -> None:
        """Build the sync controller and panel for this session (the form comes on demand).

        Imported here, not at the top: sync and the encounter service pull in the store and
        `requests`, about a second of imports that the unlock screen does not need.
        """
        self._remove_session_widgets()
        self._start_sync_controller(session)

    def _start_sync_controller(self, session: Session) -> None:
        from app.ui.sync_panel import SyncPanel
        from app.ui.sync_worker import SyncController

        self._stop_sync_controller()
        controller = SyncController(session, self._runner, parent=self, **self._sync_options)
        controller.sync_started.connect(self._show_sync_summary)
        controller.progress_changed.connect(lambda *_: self._show_sync_summary())
        controller.running_changed.connect(lambda _r: self._show_sync_summary())
        controller.connectivity_changed.connect(lambda _s: self._show_sync_summary())
        controller.connectivity_changed.connect(self._offer_lookup)
        controller.sync_failed.connect(lambda _m: self._show_sync_summary())
        controller.sync_cancelled.connect(self._show_sync_summary)
        controller.sync_finished.connect(self._on_sync_finished)
        controller.cache_wiped.connect(self._on_cache_wiped)
        self.sync_controller = controller
        self._offer_lookup()
        panel = SyncPanel(
            session, self._runner, controller, can_correct=True, parent=self._sync_slot
        )
        panel.correct_requested.connect(self.open_correction)
        panel.draft_chosen.connect(self.open_draft)
        self._sync_panel = panel
        self._sync_slot_layout.addWidget(panel)
        self._show_sync_summary()
        controller.start()

    def _stop_sync_controller(self) -> None:
        """Stop timers and any run (waits for the sync thread), then drop controller and panel."""
        controller, self.sync_controller = self.sync_controller, None
        if controller is not None:
            controller.stop()
            controller.deleteLater()
        panel, self._sync_panel = self._sync_panel, None
        if panel is not None:
            panel.hide()
            panel.setParent(None)
            panel.deleteLater()

    def _remove_session_widgets(self) -> None:
        self._stop_sync_controller()
        self._drop_form()

    def _drop_form(self) -> None:
        form, self._encounter_form = self._encounter_form, None
        if form is not None:
            form.flush_draft()  # whatever was typed stays as a draft in the cache
            form.hide()
            form.setParent(None)
            form.deleteLater()
        self._encounter_empty.show()

    @property
    def encounter_form(self) -> EncounterForm | None:
        """The open encounter form, if any (tests, the journey test)."""
        return self._encounter_form

    @property
    def sync_panel(self) -> SyncPanel | None:
        """The sync screen of the unlocked session, if any."""
        return self._sync_panel

    def start_sync(self) -> None:
        """Sync now (F5, demo); a running sync is left alone."""
        if self.sync_controller is not None:
            self.sync_controller.start_sync()

    def sync_summary_text(self) -> str:
        return self.sync_summary.text()

    def _show_sync_summary(self) -> None:
        """The header's one-line sync state, and a red count of refused records.

        It never says "Synced" while a record is refused or waiting, or the central record
        cannot be reached (hazard H8: "Synced" beside a refused record reads as "all sent").
        """
        from app.ui.sync_worker import OFFLINE, ONLINE

        controller = self.sync_controller
        status = self._status
        if status is not None:  # unknown (being read): the badge stays as it was
            self.refused_badge.setText(f"⚠ {status.refused} refused")
            self.refused_badge.setAccessibleName(
                f"{status.refused} record{'s' if status.refused != 1 else ''} refused by the "
                "central record: open the Sync page"
            )
            self.refused_badge.setVisible(status.refused > 0)
        elif self.session is None or self.session.is_locked:
            self.refused_badge.hide()
        waiting = status.waiting if status is not None else 0
        refused = status.refused if status is not None else 0
        last = clock_text(status.last_sync) if status and status.last_sync else ""
        since = f" · last sync {last}" if last else ""
        if controller is None:
            text = "Sync: —"
        elif controller.is_running:
            text = "Syncing…"
            if controller.last_phase is not None:
                _phase, done, total = controller.last_phase
                if total > 0:
                    text = f"Syncing {min(100, int(100 * done / total))}%"
        elif controller.last_error is not None:
            text = "⚠ Sync failed"
        elif status is None:
            text = "◌ Checking…"  # counts not read yet: never "Synced" over a waiting record
        elif controller.connectivity == OFFLINE:
            text = "○ Offline" + (f" · {waiting} waiting" if waiting else since)
        elif waiting:
            text = f"◌ {waiting} waiting to send"
        elif controller.connectivity != ONLINE:
            text = "◌ Checking connection" + since
        elif refused:
            text = f"● Last sync {last}" if last else "● Not synced yet"
        else:
            text = f"● Synced {last}" if last else "● Not synced yet"
        self.set_sync_summary(text)

    def set_sync_summary(self, text: str) -> None:
        if text == self.sync_summary.text():
            return
        self.sync_summary.setText(text)
        self.sync_summary.setAccessibleName(f"Sync status: {text}")
        self.sync_summary_changed.emit(text)

    def _on_sync_finished(self, report: SyncReport) -> None:
        """Read the cache's status again, then refresh what the sync changed; `sync_finished`
        goes out once the window shows it."""

        def refreshed() -> None:
            if self.session is None:
                return
            if report.pulled or report.deleted or report.merged:
                self.search_view.refresh_index()  # the same query again (none while locked)
                self.record_view.reload()
            self.sync_finished.emit(report)

        self._refresh_status(then=refreshed)

    def _on_cache_wiped(self, reason: str) -> None:
        """The centre revoked this device and the cache is gone: drop the session at once."""
        log.warning("cache wiped by the central record; closing the session")
        self._is_locked = True
        self.idle.disarm()
        self.search_view.clear()
        self._layers.setCurrentWidget(self.unlock_view)
        self._close_session()
        self.unlock_view.show_wiped(reason)
        self.repaint()
        self.locked.emit()

    # -- the encounter form ------------------------------------------------------------------
    def _open_form(self, **kwargs: Any) -> EncounterForm:
        """Replace the form (the old one's work is kept as a draft) and show the new one."""
        from app.ui.encounter_form import EncounterForm

        assert self.session is not None
        self._draft_offers.drop()
        self.draft_bar.hide()  # the form offers drafts itself
        self._drop_form()
        # Made inside its slot: a child shown while the form had no parent would flash up
        # as a window of its own and take the activation (and the shortcuts) from this one.
        form = EncounterForm(self.session, self._runner, parent=self._encounter_slot, **kwargs)
        form.saved.connect(self._on_encounter_saved)
        form.discarded.connect(self._on_encounter_discarded)
        form.patient_search_requested.connect(self._pick_patient_for_form)
        form.new_encounter_requested.connect(lambda: self._open_form())
        self._encounter_form = form
        self._encounter_empty.hide()
        self._encounter_slot_layout.addWidget(form)
        form.show()  # now, not on the next turn of the event loop: it takes the focus below
        self._picking_for_form = False
        self.show_page(PAGE_ENCOUNTER)
        self.focus_page()
        self.form_opened.emit(form)
        return form

    def start_encounter(self, patient_id: str) -> None:
        """ "Record encounter" on a record: a form about this person."""
        if self.session is None:
            return
        # The person on the record pane is `source`'s Patient (issue 14): the form names that
        # Patient, never home's Patient of the same id (someone else, H1); the record goes
        # home by NHS number when only another Trust knows them (encounters._prepare).
        shown = self.record_view.shown_ref()
        source = shown[0] if shown is not None and shown[1] == patient_id else None
        form = self._encounter_form
        if (
            form is not None
            and form.saved_client_id() is None
            and form.patient_ref() == (source or 1, patient_id)
        ):
            self.show_page(PAGE_ENCOUNTER)  # the form already open for them, not a second draft
            return
        name = self._display_name(patient_id)
        self._open_form(patient=(patient_id, name, source))

    def start_unknown_person(self) -> None:
        """A person nobody can identify: a form in "Unknown" mode (a provisional record)."""
        if self.session is None:
            return
        form = self._open_form()
        form.person_mode.button("unknown").click()  # as the officer's tap: shows the fields

    def open_draft(self, draft_id: str) -> None:
        if self.session is not None:
            self._open_form(draft_id=draft_id)

    def open_correction(self, client_id: str) -> None:
        """A record the central record refused, opened for correction."""
        if self.session is not None:
            self._open_form(amend=client_id)

    def _display_name(self, patient_id: str) -> str:
        record = self.record_view.record
        if record is not None and record.person.patient_id == patient_id:
            return str(record.person.name)
        hit = self.search_view.hit_by_id(patient_id)
        return str(hit.display_name) if hit is not None else ""

    def _pick_patient_for_form(self) -> None:
        """The form asked for a person from search: the next tap on a result answers it."""
        self._picking_for_form = True
        self.focus_search()

    def _on_changes(self, changes: OpChanges) -> None:
        """After any write (the runner broadcasts it once): the header's sync summary and the
        open record's contacts follow the outbox; the sync panel listens for itself."""
        if not changes.outbox:
            return
        self._refresh_status()  # one more waiting: "Checking…" until read, never "Synced"
        if self.record_view.patient_id is not None:
            self.record_view.reload()

    def _on_encounter_saved(self, _client_id: str) -> None:
        if self.sync_controller is not None and self._auto_sync:
            from app.ui.sync_worker import ONLINE

            if self.sync_controller.connectivity == ONLINE:
                self.sync_controller.start_sync()  # send it now while there is signal

    def _on_encounter_discarded(self) -> None:
        self._drop_form()
        self.show_page(PAGE_FIND)

    # -- navigation --------------------------------------------------------------------------
    def show_page(self, page: str) -> None:
        """Switch the page (find, encounter, sync); leaving Find ends a search-for-the-form.

        The keyboard focus stays on a nav button the officer used (tap or Tab and Space);
        anywhere else, or nowhere, it goes to the page's first control (`focus_page`).
        """
        if page != PAGE_FIND:
            self._picking_for_form = False
        self._page = page
        if page != PAGE_LOOKUP:
            self.lookup_view.clear()  # leaving it ends the look-up: nothing found stays
        index = {PAGE_FIND: 0, PAGE_ENCOUNTER: 1, PAGE_SYNC: 2, PAGE_LOOKUP: 3}[page]
        self.pages.setCurrentIndex(index)
        self.nav_buttons[PAGE_FIND if page == PAGE_LOOKUP else page].setChecked(True)
        focused = QApplication.focusWidget()
        if focused is None or focused not in self.nav_buttons.values():
            self.focus_page()

    def go_to_page(self, page: str) -> None:
        """Ctrl+1/2/3: the page, with the focus on its first control."""
        self.show_page(page)
        self.focus_page()

    def focus_page(self) -> None:
        """Put the keyboard focus where the shown page starts: the search box on Find (or
        the record, in portrait), the form's first field, "Sync now".

        Without this, hiding or disabling the focused widget (a locked screen, a page
        switch, a button disabled while it works) leaves the focus on whatever is next in
        Qt's chain, or nowhere.
        """
        if self._is_locked:
            return
        targets: list[QWidget | None]
        if self._page == PAGE_FIND:
            if self._landscape or self._portrait_pane == "search":
                targets = [self.search_view.box, self.search_view.results]
            else:
                targets = [self.record_view.focus_target()]
        elif self._page == PAGE_LOOKUP:
            targets = [self.lookup_view.focus_target()]
        elif self._page == PAGE_ENCOUNTER:
            form = self._encounter_form
            if form is not None and form.isVisibleTo(self):
                form.focus_first_field()
                focused = QApplication.focusWidget()
                if focused is not None and form.isAncestorOf(focused):
                    return
            targets = [self.new_form_button]
        else:
            panel = self._sync_panel
            targets = [panel.sync_button, panel.cancel_button] if panel is not None else []
        for target in [*targets, self.nav_buttons.get(self._page)]:
            if target is not None and target.isVisibleTo(self) and target.isEnabled():
                target.setFocus(Qt.FocusReason.OtherFocusReason)
                return

    def current_page(self) -> str:
        return self._page

    def focus_search(self) -> None:
        self._portrait_pane = "search"
        self.show_page(PAGE_FIND)
        self._apply_layout()
        self.search_view.focus_search()

    def open_patient(self, patient_id: str, source: int | None = None) -> None:
        """A search result was chosen (`source`'s Patient `patient_id`; None: the home
        source's): open its record (reason, audit), or hand it to the form that asked for a
        person."""
        hit = self.search_view.hit_by_id(patient_id, source)
        form = self._encounter_form
        if self._picking_for_form and form is not None:
            self._picking_for_form = False
            form.set_patient(patient_id, hit.display_name if hit else "", source)
            self._follow_record()  # the list follows the pane
            self.show_page(PAGE_ENCOUNTER)
            return
        self.record_view.request_open(patient_id, hit.display_name if hit else None, source=source)
        self._portrait_pane = "record"
        self._apply_layout()

    def _on_record_shown(self, _patient_id: str) -> None:
        self._portrait_pane = "record"
        self._follow_record()
        self._apply_layout()

    # -- online look-up (issue 14 slice 7) -------------------------------------------------
    def _offer_lookup(self, state: str | None = None) -> None:
        """ "Look up online" per source under the results, disabled with the reason when a
        source cannot be reached (`LookupView.offers`); `state`: connectivity just changed."""
        if state is not None:
            self.lookup_view.connectivity_changed(state)
        connectivity = self.sync_controller.connectivity if self.sync_controller else None
        self.search_view.set_lookup_sources(self.lookup_view.offers(self.session, connectivity))

    def start_lookup(self, source_name: str) -> None:
        if self.session is not None and self.lookup_view.start_for(self.session, source_name):
            self.show_page(PAGE_LOOKUP)
            self.focus_page()

    def _show_looked_up(self, record: Any) -> None:
        """The record the look-up opened, on the record pane: the person picked (H1)."""
        self.show_page(PAGE_FIND)
        self.record_view.drop_answers()  # an opening asked for before must not replace it
        self.record_view.show_record(record)
        self._portrait_pane = "record"
        self._apply_layout()

    # -- one person at a time ----------------------------------------------------------------
    # The record pane, the highlighted result and the subject of a new encounter are the same
    # person, or nothing is shown (tests/gui/test_identity_state.py checks it after every step
    # of random UI actions). A new query detaches the record; the highlight follows the pane.
    def _detach_record(self) -> None:
        """The officer is searching again: the open record (or reason sheet) goes, so the
        new top result is never highlighted beside someone else's record."""
        if self.record_view.shown_id() is not None or self.record_view.record is not None:
            self.record_view.clear()
        if self._portrait_pane != "search":  # portrait: the results, not an empty record pane
            self._portrait_pane = "search"
            self._apply_layout()

    def _follow_record(self) -> None:
        """Highlight the row of the person on the record pane, or no row: by the Patient
        shown and its source, so a result merged or split since still finds its person."""
        shown = self.record_view.shown_ref()
        if shown is not None:
            source, patient_id = shown
            self.search_view.highlight(patient_id, source=source)

    def change_person(self) -> None:
        """ "Change person" on the record: close it and go back to the search box."""
        self.record_view.clear()
        self.focus_search()

    def encounter_subject(self) -> str | None:
        """Whom Ctrl+N would record about: the record on screen on the Find page, else None."""
        if self._page != PAGE_FIND or not self.record_view.isVisible():
            return None
        return self.record_view.shown_record_id()

    def go_back(self) -> None:
        if self._page != PAGE_FIND:
            self.show_page(PAGE_FIND)
        elif not self._landscape and self._portrait_pane == "record":
            self._portrait_pane = "search"
            self._apply_layout()
            self.search_view.focus_search()
        else:
            self.record_view.cancel_reason()

    def new_encounter(self) -> None:
        """Ctrl+N: a form about the person whose record is on screen, else a blank one."""
        pid = self.encounter_subject()
        if pid:
            self.start_encounter(pid)
        else:
            self._open_form()

    # -- errors ------------------------------------------------------------------------------
    def show_error(self, text: str) -> None:
        """The standard display for known errors: one line, dismissable, never patient data."""
        self.error_text.setText(text)
        self.error_bar.show()
        self._error_timer.start()

    # -- layout ------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._apply_layout()

    def is_landscape(self) -> bool:
        return self._landscape

    def _apply_layout(self) -> None:
        focused = QApplication.focusWidget()
        panes = (self.search_view, self.record_view)
        had_focus = [p for p in panes if focused is not None and p.isAncestorOf(focused)]
        self._landscape = self.width() >= LANDSCAPE_MIN_WIDTH
        self.record_view.set_back_visible(not self._landscape)
        self._show_panes()
        if had_focus and not had_focus[0].isVisibleTo(self) and self._page == PAGE_FIND:
            self.focus_page()  # portrait swapped panes: follow to the one now shown

    def _show_panes(self) -> None:
        if self._landscape:
            # A cap, not a fixed width: a fixed one made the window's minimum wider than a
            # portrait tablet, so turning it could not shrink the window to 800 px.
            self.search_view.setMinimumWidth(0)
            self.search_view.setMaximumWidth(max(480, int(self.width() * 0.44)))
            self.search_view.show()
            self._divider.show()
            self.record_view.show()
        else:
            self.search_view.setMinimumWidth(0)
            self.search_view.setMaximumWidth(16_777_215)
            record = self._portrait_pane == "record"
            self.search_view.setVisible(not record)
            self._divider.hide()
            self.record_view.setVisible(record)

    # -- closing -----------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        """Keep the form's work as a draft, stop sync, let writes finish, close the cache."""
        self.idle.detach()
        if self._encounter_form is not None:
            self._encounter_form.flush_draft()
        self._stop_sync_controller()
        self._runner.wait_until_idle(10_000)
        self._runner.shutdown()
        self._close_session()
        self.closed.emit()
        super().closeEvent(event)

    def setWindowTitle(self, title: str) -> None:
        """Always just "Kerbside": titles show in task bars and switchers (SECURITY.md 13)."""
        del title
        super().setWindowTitle(TITLE)


# What unlocking needs but the unlock screen does not: sync, search and the form pull in
# `requests`, the store and the nickname table (about 0.4 s). Loaded while the officer types
# the PIN, so the PIN leads straight to the search box (DESIGN.md 8: unlock under 0.7 s).
# Plain-Python modules load on a thread; modules that define Qt classes only on the GUI
# thread (PySide's import machinery is not thread-safe: importing one off-thread can crash).
_PREWARM_OFF_THREAD = ("app.services.search", "app.services.syncing")
_PREWARM_GUI_THREAD = ("app.ui.sync_worker", "app.ui.sync_panel", "app.ui.encounter_form")
_PREWARM_GUI_DELAY_MS = 400  # after the unlock screen has painted and settled


def _prewarm_off_thread() -> None:
    import importlib

    for name in _PREWARM_OFF_THREAD:
        importlib.import_module(name)
    from app.services.search import warm_up

    warm_up()


def _prewarm_stopped(exc: BaseException) -> None:
    """Only a head start: unlocking imports whatever is missing."""
    log.debug("prewarm stopped: %s", type(exc).__name__)


def _prewarm_gui_modules() -> None:
    import importlib

    for name in _PREWARM_GUI_THREAD:
        importlib.import_module(name)

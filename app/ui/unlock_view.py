"""The unlock screen: choose a user, type the PIN on a big pad (or the keyboard), unlock.

The slow half of unlocking (Argon2) runs on a worker through the runner; the cache is then
opened on the main thread, which is the thread that uses it. Wrong PINs, growing delays and
the wipe are decided by app.security; this screen only shows them: the attempts left, a
countdown with the pad disabled, and a clear screen when the cache has been wiped.

Two modes:
- fresh: no session yet; success emits `unlocked(Session)`.
- relock (`relock(user_id)`): the app was locked with its session kept open in memory (so the
  officer returns to the same patient and draft). The same user's PIN is verified again and
  `resumed` is emitted; a different user gets a fresh session through `unlocked`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.ui.ops import Runner
from app.ui.use_cases import derive_key_op
from app.ui.widgets import BigButton, PinDots, PinPad, label, set_role

log = logging.getLogger("kerbside.ui")

MAX_PIN_LENGTH = 16


class UnlockView(QWidget):
    unlocked = Signal(object)  # a new Session
    resumed = Signal(bytes)  # the locked session's user proved their PIN again: the data key
    wiped = Signal()  # the cache has been wiped (shown here; the window drops any session)
    first_painted = Signal()
    help_requested = Signal()  # Help / Check this tablet (no keyboard F1 on a tablet)

    def __init__(
        self,
        profile_dir: Path,
        runner: Runner,
        *,
        demo_pin: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("unlockView")
        self.setAccessibleName("Unlock Kerbside")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._profile_dir = profile_dir
        self._runner = runner
        self._pin = ""
        self._busy = False
        self._typed_ahead = ""
        self._wait_until = 0.0
        self._relock_user: str | None = None
        self._painted = False
        self._users: list[str] = []

        self._pages = QStackedWidget(self)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self._pages)
        self._pages.addWidget(self._build_unlock_page(demo_pin))
        self._pages.addWidget(self._build_message_page())

        self._countdown = QTimer(self)
        self._countdown.setInterval(250)
        self._countdown.timeout.connect(self._tick)
        self.reload()

    # -- building ----------------------------------------------------------------------------
    def _build_unlock_page(self, demo_pin: str | None) -> QWidget:
        page = QWidget()
        self._box = QBoxLayout(QBoxLayout.Direction.LeftToRight, page)
        self._box.setContentsMargins(32, 24, 32, 24)
        self._box.setSpacing(32)

        left = QVBoxLayout()
        left.setSpacing(14)
        title = label("Kerbside", "h1")
        heading = QHBoxLayout()
        heading.addWidget(title, 1)
        self.help_button = BigButton("Help", role="bar", accessible_name="Help and About")
        self.help_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.help_button.clicked.connect(self.help_requested.emit)
        heading.addWidget(self.help_button)
        left.addLayout(heading)
        if demo_pin:
            demo = label(f"DEMO — synthetic data. Demo PIN: {demo_pin}", "demo")
            demo.setAccessibleName(f"Demo PIN {' '.join(demo_pin)}")
            left.addWidget(demo)
        self._who = label("Who is unlocking?", "h2")
        left.addWidget(self._who)
        self._user_box = QVBoxLayout()
        self._user_box.setSpacing(10)
        left.addLayout(self._user_box)
        self._user_group = QButtonGroup(self)
        self._user_group.setExclusive(True)
        self._user_group.buttonClicked.connect(lambda _b: self._clear_pin())
        left.addStretch(1)
        self._status = label("", None)
        self._status.setAccessibleName("Unlock status")
        self._status.setMinimumHeight(48)
        left.addWidget(self._status)
        self._box.addLayout(left, 1)

        right = QVBoxLayout()
        right.setSpacing(12)
        self._dots = PinDots()
        right.addWidget(self._dots)
        self._pad = PinPad()
        self._pad.setAccessibleName("PIN pad")
        self._pad.digit_pressed.connect(self._add_digit)
        self._pad.delete_pressed.connect(self._delete_digit)
        self._pad.ok_pressed.connect(self.submit)
        right.addWidget(self._pad, 1)
        self._box.addLayout(right, 1)
        return page

    def _build_message_page(self) -> QWidget:
        page = QFrame()
        col = QVBoxLayout(page)
        col.setContentsMargins(48, 48, 48, 48)
        col.setSpacing(20)
        col.addStretch(1)
        self._msg_title = label("", "h1")
        self._msg_title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._msg_body = label("", "hint")
        self._msg_body.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(self._msg_title)
        col.addWidget(self._msg_body)
        self._msg_retry = BigButton("Try again", accessible_name="Try again")
        self._msg_retry.clicked.connect(self.reload)
        col.addWidget(self._msg_retry, 0, Qt.AlignmentFlag.AlignCenter)
        self.msg_check_button = BigButton(
            "Check this tablet", role="bar", accessible_name="Check this tablet"
        )
        self.msg_check_button.clicked.connect(self.help_requested.emit)
        col.addWidget(self.msg_check_button, 0, Qt.AlignmentFlag.AlignCenter)
        col.addStretch(2)
        return page

    # -- state -------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the profile (users, wiped?) without a PIN and show the right page."""
        from app.errors import KerbsideError
        from app.services.session import load_profile

        try:
            profile = load_profile(self._profile_dir)
        except KerbsideError as exc:
            self._show_message("Kerbside cannot start", str(exc), retry=True)
            return
        if profile.wiped:
            self._show_wiped()
            return
        self._set_users(profile.users)
        self._pages.setCurrentIndex(0)
        remaining = profile.locked_until - time.time()
        if remaining > 0:
            self._start_wait(remaining, "Too many wrong PINs.")
        else:
            self._set_status("", None)
        self._set_pad_enabled(not self._busy and remaining <= 0)

    def _set_users(self, users: list[str]) -> None:
        if users == self._users and self._user_group.buttons():
            return
        self._users = list(users)
        for button in self._user_group.buttons():
            self._user_group.removeButton(button)
            button.deleteLater()
        for user in users:
            button = BigButton(user, role="user", accessible_name=f"User {user}")
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self._user_group.addButton(button)
            self._user_box.addWidget(button)
        if len(users) == 1:
            self._user_group.buttons()[0].setChecked(True)
        self._who.setText("Who is unlocking?" if len(users) > 1 else "Signed-in user")

    def selected_user(self) -> str | None:
        button = self._user_group.checkedButton()
        return button.text() if button else None

    def select_user(self, user_id: str) -> None:
        for button in self._user_group.buttons():
            if button.text() == user_id:
                button.setChecked(True)

    def relock(self, user_id: str) -> None:
        """Show the lock screen for a session kept open in memory."""
        self._relock_user = user_id
        self.reload()
        self.select_user(user_id)
        self._clear_pin()
        self.setFocus()

    def fresh(self) -> None:
        """Show the unlock screen with no session behind it."""
        self._relock_user = None
        self.reload()
        self._clear_pin()
        self.setFocus()

    # -- PIN entry ---------------------------------------------------------------------------
    def _add_digit(self, digit: str) -> None:
        if not self._pad.isEnabled() or len(self._pin) >= MAX_PIN_LENGTH:
            return
        self._pin += digit
        self._dots.set_count(len(self._pin))

    def _delete_digit(self) -> None:
        self._pin = self._pin[:-1]
        self._dots.set_count(len(self._pin))

    def _clear_pin(self) -> None:
        self._pin = ""
        self._dots.set_count(0)

    def enter_pin(self, pin: str) -> None:
        """Type `pin` and submit, as taps on the pad would (demo auto-unlock, screenshots)."""
        for digit in pin:
            self._add_digit(digit)
        self.submit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        text = event.text()
        if self._busy and text and text.isprintable():
            # Typed while the PIN is checked: the start of a search, kept for the search box
            # (an officer types the name straight after OK; those keys used to be lost).
            self._typed_ahead += text
            return
        if text and text.isdigit() and len(text) == 1:
            self._add_digit(text)
        elif event.key() == Qt.Key.Key_Backspace:
            self._delete_digit()
        elif event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit()
        else:
            super().keyPressEvent(event)

    def take_typed_ahead(self) -> str:
        """What was typed while the PIN was being checked (once), for the search box."""
        text, self._typed_ahead = self._typed_ahead, ""
        return text

    def submit(self) -> None:
        """Check the PIN off the UI thread; the pad stays disabled until the answer."""
        if self._busy or not self._pad.isEnabled():
            return
        user = self.selected_user()
        if not user:
            self._set_status("Choose your user name first.", "error")
            return
        if not self._pin:
            self._set_status("Type your PIN.", "error")
            return
        pin, self._pin = self._pin, ""
        self._busy = True
        self._set_pad_enabled(False)
        self._set_status("Unlocking…", "muted")
        resume = self._relock_user == user
        derive_key_op(self, self._profile_dir, user, pin).on_success(
            lambda result: self._on_key(result, user, resume)
        ).on_failure(self._on_failure).run(self._runner)

    def _on_key(self, result: tuple[Any, bytes], user: str, resume: bool) -> None:
        from app.errors import KerbsideError
        from app.services.session import open_session

        self._busy = False
        self._dots.set_count(0)
        profile, data_key = result
        if resume:
            self._relock_user = None
            self._set_status("", None)
            self.resumed.emit(data_key)
            return
        try:
            session = open_session(profile, user, data_key)
        except KerbsideError as exc:
            self._set_status(str(exc), "error")
            self._set_pad_enabled(True)
            return
        self._relock_user = None
        self._set_status("", None)
        self.unlocked.emit(session)

    def _on_failure(self, exc: BaseException) -> None:
        from app.errors import CacheWiped, KerbsideError, KeyringRefused, LockedOut, UnlockFailed

        self._busy = False
        self._typed_ahead = ""  # not unlocked: nothing typed goes anywhere
        self._clear_pin()
        if isinstance(exc, CacheWiped):
            self._show_wiped()
            self.wiped.emit()
        elif isinstance(exc, LockedOut):
            self._start_wait(exc.retry_after_s, "Too many wrong PINs.")
        elif isinstance(exc, UnlockFailed):
            left = exc.attempts_left
            text = "Wrong PIN"
            if left is not None:
                text += f" — {left} attempt{'s' if left != 1 else ''} left before the wipe"
            if exc.retry_after_s > 0:
                self._start_wait(exc.retry_after_s, text + ".")
            else:
                self._set_status(text + ".", "error")
                self._set_pad_enabled(True)
        elif isinstance(exc, KeyringRefused):
            self._show_message("The device keychain is not available", str(exc), retry=True)
        elif isinstance(exc, KerbsideError):
            self._set_status(str(exc), "error")
            self._set_pad_enabled(True)
        else:
            self._set_pad_enabled(True)
            self._runner.report(exc)

    # -- waiting after wrong PINs ------------------------------------------------------------
    def _start_wait(self, seconds: float, reason: str) -> None:
        self._wait_until = time.monotonic() + seconds
        self._wait_reason = reason
        self._set_pad_enabled(False)
        self._tick()
        self._countdown.start()

    def _tick(self) -> None:
        left = self._wait_until - time.monotonic()
        if left <= 0:
            self._countdown.stop()
            self._set_status(f"{self._wait_reason} You can try again now.", "error")
            self._set_pad_enabled(True)
            return
        self._set_status(f"{self._wait_reason} Try again in {int(left + 0.999)} s.", "error")

    def wait_remaining_s(self) -> float:
        return max(0.0, self._wait_until - time.monotonic()) if self._countdown.isActive() else 0.0

    # -- display -----------------------------------------------------------------------------
    def _set_pad_enabled(self, enabled: bool) -> None:
        self._pad.setEnabled(enabled)
        for button in self._user_group.buttons():
            button.setEnabled(enabled)

    def pad_enabled(self) -> bool:
        return self._pad.isEnabled()

    def status_text(self) -> str:
        return self._status.text() if self._pages.currentIndex() == 0 else self._msg_body.text()

    def _set_status(self, text: str, role: str | None) -> None:
        self._status.setText(text)
        set_role(self._status, role or "")

    def _show_wiped(self) -> None:
        self.show_wiped()

    def show_wiped(self, reason: str | None = None) -> None:
        """The wiped screen; `reason` (one line, no patient data) says why when it is known,
        e.g. the central record revoked this device during a sync."""
        self._relock_user = None
        self._clear_pin()
        why = (
            f"{reason[:1].upper()}{reason[1:]}."
            if reason
            else "Too many wrong PINs were entered, or the device was withdrawn by the central "
            "record."
        )
        self._show_message(
            "This cache has been wiped",
            f"No patient data is left on this device. {why.rstrip('.')}. Ask your team lead "
            "to enrol it again, then sync at base.",
            retry=False,
        )

    def _show_message(self, title: str, body: str, *, retry: bool) -> None:
        self._countdown.stop()
        self._msg_title.setText(title)
        self._msg_body.setText(body)
        self._msg_retry.setVisible(retry)
        self._pages.setCurrentIndex(1)

    def showing_message(self) -> str | None:
        return self._msg_title.text() if self._pages.currentIndex() == 1 else None

    # -- layout ------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        portrait = event.size().width() < event.size().height() or event.size().width() < 900
        self._box.setDirection(
            QBoxLayout.Direction.TopToBottom if portrait else QBoxLayout.Direction.LeftToRight
        )
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()

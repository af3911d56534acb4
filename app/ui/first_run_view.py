"""First run on a provisioned tablet: the officer enrols with a user name and a PIN typed
twice; the central record, team and policies come from the site configuration IT wrote.

Shown by the window only when there is no profile yet and a site configuration exists. A
second officer on an existing profile is added by an enrolled user (`kerbside add-user`,
which needs that user's PIN), never from this screen, so it cannot be used to take over a
tablet that already holds a cache.

Enrolment runs on a worker (it asks the central record for its token endpoint and derives the
PIN key); `enrolled(user, pin)` then lets the window unlock through the normal unlock path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLineEdit, QVBoxLayout, QWidget

from app.ui.ops import Runner
from app.ui.use_cases import enrol_op
from app.ui.widgets import BigButton, label, set_role

MAX_PIN_LENGTH = 16


class FirstRunView(QFrame):
    enrolled = Signal(str, str)  # user, PIN: the window unlocks with them
    help_requested = Signal()

    def __init__(
        self, profile_dir: Path, site: Any, runner: Runner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("workspace")
        self.setAccessibleName("Set up Kerbside")
        self._profile_dir = profile_dir
        self._site = site
        self._runner = runner
        self._busy = False

        col = QVBoxLayout(self)
        col.setContentsMargins(48, 32, 48, 32)
        col.setSpacing(12)
        heading = QHBoxLayout()
        heading.addWidget(label("Set up Kerbside on this tablet", "h1"), 1)
        self.help_button = BigButton("Help", role="bar", accessible_name="Help and About")
        self.help_button.clicked.connect(self.help_requested.emit)
        heading.addWidget(self.help_button)
        col.addLayout(heading)
        where = urlsplit(site.url).hostname or site.url
        team = f"{site.team_name} · " if site.team_name else ""
        intro = label(
            f"{team}central record {where}. Choose your user name (your collar or staff "
            "number) and a PIN of at least "
            f"{site.policies.pin_min_length} digits that you will type to unlock.",
            "hint",
        )
        intro.setAccessibleName("About this set-up")
        self.intro = intro
        col.addWidget(intro)

        self.user_box = QLineEdit()
        self.user_box.setAccessibleName("Your user name")
        self.user_box.setPlaceholderText("User name")
        self.user_box.setMaxLength(64)
        self.pin_box = self._pin_field("Choose a PIN")
        self.pin_again_box = self._pin_field("Type the PIN again")
        for caption, box in (
            ("User name", self.user_box),
            ("PIN", self.pin_box),
            ("PIN again", self.pin_again_box),
        ):
            col.addWidget(label(caption, "h3"))
            col.addWidget(box)
        self.pin_again_box.returnPressed.connect(self.submit)

        self.status = label("", None)
        self.status.setAccessibleName("Set-up status")
        self.status.setMinimumHeight(48)
        col.addWidget(self.status)
        self.enrol_button = BigButton(
            "Enrol", role="primary", accessible_name="Enrol on this tablet"
        )
        self.enrol_button.clicked.connect(self.submit)
        col.addWidget(self.enrol_button, 0, Qt.AlignmentFlag.AlignLeft)
        col.addStretch(1)

    def _pin_field(self, name: str) -> QLineEdit:
        box = QLineEdit()
        box.setAccessibleName(name)
        box.setPlaceholderText(name)
        box.setEchoMode(QLineEdit.EchoMode.Password)
        box.setInputMethodHints(
            Qt.InputMethodHint.ImhDigitsOnly | Qt.InputMethodHint.ImhSensitiveData
        )
        box.setValidator(QRegularExpressionValidator(r"[0-9]{0,16}", box))
        box.setMaxLength(MAX_PIN_LENGTH)
        return box

    def _say(self, text: str, role: str | None) -> None:
        self.status.setText(text)
        set_role(self.status, role or "")

    def submit(self) -> None:
        if self._busy:
            return
        user = self.user_box.text().strip()
        pin = self.pin_box.text()
        if not user:
            self._say("Type your user name.", "error")
            return
        if not pin:
            self._say("Choose a PIN.", "error")
            return
        if pin != self.pin_again_box.text():
            self.pin_again_box.clear()
            self._say("The two PINs are different. Type the PIN again.", "error")
            return
        self._busy = True
        self.enrol_button.setEnabled(False)
        self._say("Enrolling… (contacting the central record)", "muted")
        enrol_op(self, self._profile_dir, self._site, user, pin).on_success(
            lambda _r: self._done(user, pin)
        ).on_failure(self._failed).run(self._runner)

    def _done(self, user: str, pin: str) -> None:
        self._busy = False
        self.pin_box.clear()
        self.pin_again_box.clear()
        self._say("", None)
        self.enrolled.emit(user, pin)

    def _failed(self, exc: BaseException) -> None:
        from app.services.known_errors import KNOWN_ERRORS

        self._busy = False
        self.enrol_button.setEnabled(True)
        self.pin_box.clear()
        self.pin_again_box.clear()
        if isinstance(exc, KNOWN_ERRORS):
            self._say(str(exc), "error")
        else:
            self._say("", None)
            self._runner.report(exc)

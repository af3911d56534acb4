"""Help: what this app is (About: the one version, from package metadata) and, for the
officer on the phone to IT, "Check this tablet" (the same checks as `kerbside doctor`).

Reachable before unlock (F1, the unlock screen's Help) because the things it checks, such as
the keychain, are exactly what stops an unlock.
"""

from __future__ import annotations

import platform

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QVBoxLayout, QWidget

from app.ui.widgets import BigButton, label
from app.version import version


class HelpView(QFrame):
    """The Help screen. `back_requested`: the officer is done here."""

    back_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("workspace")
        self.setAccessibleName("Help")
        col = QVBoxLayout(self)
        col.setContentsMargins(32, 24, 32, 24)
        col.setSpacing(12)

        top = QHBoxLayout()
        title = label("Help", "h1")
        top.addWidget(title, 1)
        self.back_button = BigButton("Back", role="bar", accessible_name="Close help")
        self.back_button.clicked.connect(self.back_requested.emit)
        top.addWidget(self.back_button)
        col.addLayout(top)

        col.addWidget(label("About Kerbside", "h2"))
        self.version_text = label(f"Kerbside {version()}", None)
        self.version_text.setAccessibleName("Kerbside version")
        self.version_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.version_text)
        self.platform_text = label(
            f"Python {platform.python_version()}, Qt for Python {pyside_version}, "
            f"{platform.system()} {platform.release()}",
            "hint",
        )
        self.platform_text.setAccessibleName("Platform versions")
        col.addWidget(self.platform_text)
        col.addStretch(1)

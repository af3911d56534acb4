"""Help: what this app is (About: the one version, from package metadata), the display
setting (larger text) and, for the officer on the phone to IT, "Check this tablet" (the same
checks as `kerbside doctor`).

Reachable before unlock (F1, the unlock screen's Help) because the things it checks, such as
the keychain, are exactly what stops an unlock.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from app.ui.ops import Runner
from app.ui.use_cases import doctor_op
from app.ui.widgets import BigButton, label, set_role
from app.version import version


class HelpView(QFrame):
    """The Help screen. `back_requested`: the officer is done here."""

    back_requested = Signal()
    checked = Signal(bool)  # the tablet check finished: all passed?

    def __init__(
        self,
        profile_dir: Path,
        runner: Runner,
        *,
        site_path: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._profile_dir = profile_dir
        self._runner = runner
        self._site_path = site_path
        self._checking = False
        self.check_rows: list[QLabel] = []
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

        col.addWidget(label("Display", "h2"))
        # Text size is set once and left: it lives here, not in the top bar, whose room goes
        # to the sync state and the refused count (they clipped in portrait beside it).
        self.larger_text_button = BigButton(
            "Larger text: off", role="bar", accessible_name="Larger text"
        )
        self.larger_text_button.setCheckable(True)
        display = QHBoxLayout()
        display.addWidget(self.larger_text_button)
        display.addStretch(1)
        col.addLayout(display)

        col.addWidget(label("Check this tablet", "h2"))
        row = QHBoxLayout()
        self.check_button = BigButton(
            "Check this tablet", role="primary", accessible_name="Check this tablet"
        )
        self.check_button.clicked.connect(self.run_check)
        row.addWidget(self.check_button)
        self.check_summary = label(
            "Checks the keychain, storage, clock, settings and the central record "
            "(the same checks as kerbside doctor).",
            "hint",
        )
        self.check_summary.setAccessibleName("Tablet check summary")
        row.addWidget(self.check_summary, 1)
        col.addLayout(row)
        results = QWidget()
        self._results = QVBoxLayout(results)
        self._results.setContentsMargins(0, 0, 0, 0)
        self._results.setSpacing(6)
        self._results.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(results)
        col.addWidget(scroll, 1)

    def run_check(self) -> None:
        """Run the doctor's checks off the UI thread (one of them waits for the network)."""
        if self._checking:
            return
        self._checking = True
        self.check_button.setEnabled(False)
        self.check_summary.setText("Checking…")
        doctor_op(self, self._profile_dir, self._site_path).on_success(self._show).on_failure(
            self._failed
        ).run(self._runner)

    def _show(self, results: list[Any]) -> None:
        self._checking = False
        self.check_button.setEnabled(True)
        for old in self.check_rows:
            self._results.removeWidget(old)
            old.deleteLater()
        self.check_rows = []
        for result in results:
            text = f"{'✓ Pass' if result.ok else '✗ Fail'} — {result.name}: {result.detail}"
            if not result.ok and result.remedy:
                text += f"\nWhat to do: {result.remedy}"
            row = label(text, None)
            set_role(row, "ok" if result.ok else "error")
            row.setAccessibleName(f"{result.name}: {'passed' if result.ok else 'failed'}")
            row.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self._results.insertWidget(self._results.count() - 1, row)
            self.check_rows.append(row)
        failed = [r.name for r in results if not r.ok]
        self.check_summary.setText(
            "Everything passed." if not failed else f"{len(failed)} failed: {', '.join(failed)}."
        )
        self.checked.emit(not failed)

    def _failed(self, exc: BaseException) -> None:
        self._checking = False
        self.check_button.setEnabled(True)
        self.check_summary.setText("The check could not run.")
        self._runner.report(exc)

"""The Qt binding must not leak references to Python's singletons.

PySide6 6.12.0 took one reference from `None` on every Qt call returning void; on Python 3.11
(where None is not immortal) a long shift aborts the app with `none_dealloc`. Whatever version
pyproject.toml allows must pass this before it ships.
"""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QCheckBox, QLineEdit
from pytestqt.qtbot import QtBot


def test_void_qt_calls_keep_the_singletons_alive(qtbot: QtBot) -> None:
    line, box = QLineEdit(), QCheckBox()
    qtbot.addWidget(line)
    qtbot.addWidget(box)
    before = (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False))
    for _ in range(200):
        line.setText("x")
        box.setChecked(True)
        box.isChecked()
        box.setEnabled(False)
    after = (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False))
    # A few references may come and go with the interpreter; a leak loses hundreds.
    assert all(b - a < 50 for b, a in zip(before, after, strict=True)), (before, after)

"""The QApplication, its crash handler and `run_gui`.

Startup imports only what the unlock screen needs (Qt widgets, the theme, the profile reader);
search, records, the store and sync are imported on first use, so a cold start reaches the
unlock screen fast (tests/bench/bench_startup.py).

The crash handler logs the exception type only: messages and tracebacks can hold patient data
(a value in a failed check, a name in a local variable's repr). The officer sees one line and
the app keeps running; saved records are already committed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from app.services.session import profile_settings
from app.ui import theme
from app.ui.main_window import MainWindow
from app.ui.ops import Runner

log = logging.getLogger("kerbside.ui")

CRASH_TEXT = (
    "Something went wrong inside Kerbside ({kind}). Saved records are safe; "
    "if it happens again, restart the app."
)


def create_application(argv: list[str] | None = None) -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    QApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    app = QApplication(argv if argv is not None else [sys.argv[0] if sys.argv else "kerbside"])
    app.setApplicationName("Kerbside")
    app.setApplicationDisplayName("Kerbside")
    app.setOrganizationName("Kerbside")
    app.setDesktopFileName("kerbside")
    # The title bar and task switcher icon where the desktop does not take it from the launcher
    # (X11 without a desktop entry, Windows' windowed entry before the exe's own icon loads).
    app.setWindowIcon(QIcon(str(files("app") / "resources" / "icons" / "kerbside.svg")))
    return app


class CrashHandler:
    """sys.excepthook and the runner's handler for bugs: type only in the log, one line shown."""

    def __init__(self) -> None:
        self.window: MainWindow | None = None
        self.count = 0

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        log.error("unexpected error: %s", type(exc).__name__)
        if self.window is not None:
            self.window.show_error(CRASH_TEXT.format(kind=type(exc).__name__))

    def excepthook(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        self(exc)


def build_window(
    profile_dir: Path,
    *,
    demo_pin: str | None = None,
    demo: bool = False,
    auto_sync: bool = False,
    install_excepthook: bool = True,
    sync_options: Mapping[str, Any] | None = None,
    site: Any | None = None,
) -> tuple[QApplication, Runner, MainWindow, CrashHandler]:
    """Everything `run_gui` shows, without entering the event loop (tests, screenshots)."""
    app = create_application()
    crash = CrashHandler()
    runner = Runner(app, crash_handler=crash)
    # No profile or an unreadable one: the day theme; the unlock screen explains.
    settings = profile_settings(profile_dir)
    night = bool(settings.get("night_mode", False))
    larger = bool(settings.get("larger_text", False))
    theme.apply(
        app, theme.NIGHT if night else theme.DAY, text_scale=theme.LARGER_TEXT if larger else 1.0
    )
    window = MainWindow(
        profile_dir,
        runner,
        demo_pin=demo_pin,
        demo=demo,
        auto_sync=auto_sync,
        sync_options=sync_options,
        site=site,
    )
    crash.window = window
    if install_excepthook:
        sys.excepthook = crash.excepthook
    return app, runner, window, crash


def run_gui(
    profile_dir: Path,
    *,
    demo_pin: str | None = None,
    demo: bool = False,
    auto_sync: bool = True,
    on_ready: Callable[[MainWindow], None] | None = None,
    site: Any | None = None,
) -> int:
    """Open the window on `profile_dir` and run until it closes; returns the exit code."""
    app, _runner, window, _crash = build_window(
        profile_dir, demo_pin=demo_pin, demo=demo, auto_sync=auto_sync, site=site
    )
    window.show()
    if on_ready is not None:
        on_ready(window)
    return int(app.exec())

"""Idle lock: lock after N minutes without input, and when the app is hidden or deactivated.

An application-wide event filter restarts the timer on any key, mouse, touch or wheel event,
so every screen counts as activity without each one having to report it. Losing the
foreground (task switcher, screen off, another window) locks at once: patient data must not
stay on a screen nobody is holding (SECURITY.md 14).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication

DEFAULT_IDLE_MINUTES = 5.0
DEACTIVATE_GRACE_MS = 700  # another window took the focus: lock unless it comes straight back

_ACTIVITY = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseMove,
        QEvent.Type.TouchBegin,
        QEvent.Type.TouchUpdate,
        QEvent.Type.Wheel,
        QEvent.Type.TabletPress,
    }
)


class IdleLock(QObject):
    """Emits `lock_requested` after `minutes` of no input or when the app leaves the front."""

    lock_requested = Signal(str)  # the reason: "idle" or "hidden"

    def __init__(
        self,
        app: QGuiApplication,
        minutes: float = DEFAULT_IDLE_MINUTES,
        *,
        lock_on_deactivate: bool = True,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._app = app
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self.lock_requested.emit("idle"))
        self.set_minutes(minutes)
        self._armed = False
        self._lock_on_deactivate = lock_on_deactivate
        self._was_active = app.applicationState() == Qt.ApplicationState.ApplicationActive
        self._away = QTimer(self)
        self._away.setSingleShot(True)
        self._away.setInterval(DEACTIVATE_GRACE_MS)
        self._away.timeout.connect(self._check_away)
        app.installEventFilter(self)
        app.applicationStateChanged.connect(self._on_state)
        self._attached = True

    def set_minutes(self, minutes: float) -> None:
        self._timer.setInterval(max(1, int(minutes * 60_000)))
        if self._timer.isActive():
            self._timer.start()

    @property
    def interval_ms(self) -> int:
        return self._timer.interval()

    def arm(self) -> None:
        """Start watching (after unlock)."""
        self._armed = True
        self._timer.start()

    def disarm(self) -> None:
        """Stop watching (while locked)."""
        self._armed = False
        self._timer.stop()
        self._away.stop()

    @property
    def armed(self) -> bool:
        return self._armed

    def remaining_ms(self) -> int:
        return self._timer.remainingTime() if self._timer.isActive() else -1

    @property
    def leaving(self) -> bool:
        """True while the app has lost the foreground and the grace period runs."""
        return self._away.isActive()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self._armed and event.type() in _ACTIVITY:
            self._timer.start()
        return False

    def _on_state(self, state: Qt.ApplicationState) -> None:
        active = state == Qt.ApplicationState.ApplicationActive
        if active:
            self._away.stop()
        elif self._armed and self._lock_on_deactivate:
            if state in (
                Qt.ApplicationState.ApplicationHidden,
                Qt.ApplicationState.ApplicationSuspended,
            ):
                self.lock_requested.emit("hidden")  # task switcher, screen off: at once
            elif self._was_active:
                # "Inactive" also flickers while windows are (re)activated, and some
                # platforms report it with our window still active: confirm first.
                self._away.start()
        self._was_active = active

    def _still_away(self) -> bool:
        from PySide6.QtWidgets import QApplication

        return (
            self._app.applicationState() != Qt.ApplicationState.ApplicationActive
            and QApplication.activeWindow() is None
        )

    def _check_away(self) -> None:
        if self._armed and self._still_away():
            self.lock_requested.emit("hidden")

    def detach(self) -> None:
        """Stop for good (the window closes): no input or platform state reaches it again."""
        self._app.removeEventFilter(self)
        if self._attached:
            self._app.applicationStateChanged.disconnect(self._on_state)
            self._attached = False
        self._timer.stop()
        self._away.stop()

"""The tablet UI: PySide6 widgets, theme and the background-work runner. The only layer that
imports QtWidgets; it calls app.services and never runs SQL or HTTP itself."""

"""The errors shown as one line (no traceback): the app's `KerbsideError` and sync's
`SyncError`. Defined once here for the CLI, the background runner and the sync controller;
anything else is a bug and goes to the crash handler."""

from __future__ import annotations

from app.errors import KerbsideError
from sync import SyncError

KNOWN_ERRORS: tuple[type[Exception], ...] = (KerbsideError, SyncError)

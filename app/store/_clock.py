"""The cache's timestamps: UTC text, millisecond precision (sortable as text)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.times import iso_instant


def utc_now() -> str:
    """Now as the cache stores it: UTC text, millisecond precision."""
    return iso_instant(datetime.now(UTC), timespec="milliseconds")

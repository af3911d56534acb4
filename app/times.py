"""Time, in one place: instants are stored as UTC ISO 8601 text ("…Z") and shown to officers in
Europe/London with UK day-first dates.

Why one module: the zone, the "Z" spelling and the display formats were each written out in
several screens and services, and they had started to differ (naive times read as UTC in one
place and refused in another, four ways to print HH:MM). Python 3.11's `fromisoformat` reads
"Z" itself, so nothing here rewrites it before parsing.

Nothing here imports Qt, the store or sync: every layer of `app/` may use it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
"""The officers' zone: "today", the times on screen and the dates people say."""

Timespec = Literal["seconds", "milliseconds"]


def now(*, timespec: Timespec = "seconds") -> datetime:
    """Now, aware UTC, cut to whole seconds (or milliseconds), as stored instants are."""
    moment = datetime.now(UTC)
    if timespec == "seconds":
        return moment.replace(microsecond=0)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_instant(raw: object, *, naive: Literal["utc", "reject"] = "utc") -> datetime | None:
    """An ISO 8601 instant ("…Z" or an offset) as an aware UTC datetime; None when `raw` is not
    text, not a date-time, or (with naive="reject") carries no zone.

    Stored values always carry a zone; input from outside (a draft, a form answer, an
    imported file) may not, and validation wants to refuse those rather than guess.
    """
    if not isinstance(raw, str) or not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if when.tzinfo is None:
        if naive == "reject":
            return None
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso_instant(when: datetime, *, timespec: Timespec = "seconds") -> str:
    """`2023-06-15T20:04:00Z`: the one spelling of an instant the cache and the wire use."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def in_london(when: datetime) -> datetime:
    """The same instant on London's clock (a naive value is taken as UTC)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(LONDON)


def london_today(now: datetime | None = None) -> date:
    """Today's date for an officer in London (not UTC's: they differ after 23:00 in summer)."""
    return in_london(now or datetime.now(UTC)).date()


def london_midnight(now: datetime | None = None) -> datetime:
    """Start of today in Europe/London, as a UTC instant ("today" is the officer's day)."""
    return datetime.combine(london_today(now), time(0), tzinfo=LONDON).astimezone(UTC)


def clock_text(when: datetime) -> str:
    """`21:04` on London's clock."""
    return f"{in_london(when):%H:%M}"


def short_day_text(when: datetime) -> str:
    """`Thu 15 Jun` on London's calendar: enough to tell yesterday from today on a screen."""
    return f"{in_london(when):%a %d %b}"


def uk_date(value: date | datetime | str | None, *, unknown: str = "unknown") -> str:
    """A date as people in the UK write it: `15/06/2023`; `06/2023` and `2023` for the partial
    FHIR dates (YYYY-MM, YYYY); an instant by its London date. Unreadable text comes back as is.
    """
    if value is None or value == "":
        return unknown
    if isinstance(value, datetime):
        return f"{in_london(value):%d/%m/%Y}"
    if isinstance(value, date):
        return f"{value:%d/%m/%Y}"
    if "T" in value:
        when = parse_instant(value)
        return uk_date(when) if when is not None else value
    parts = value.split("-")
    if len(parts) == 3:
        return f"{parts[2]}/{parts[1]}/{parts[0]}"
    if len(parts) == 2:
        return f"{parts[1]}/{parts[0]}"
    return value


def uk_date_time(value: datetime | date | str | None) -> str:
    """An instant as `15/06/2023 21:04` on London's clock; a plain date as `uk_date` gives it."""
    if isinstance(value, str) and "T" in value:
        when = parse_instant(value)
        if when is None:
            return value
        value = when
    if isinstance(value, datetime):
        return f"{in_london(value):%d/%m/%Y %H:%M}"
    return uk_date(value)


def uk_long_date(value: date | datetime) -> str:
    """`15 June 2023` (no leading zero): how a date reads in a sentence or to a screen reader."""
    day = in_london(value).date() if isinstance(value, datetime) else value
    return f"{day.day} {day:%B %Y}"

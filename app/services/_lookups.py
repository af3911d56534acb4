"""How long a record fetched by an online look-up is kept, and its erasure (issue 14 slice 7,
docs/design/multi-trust.md section 7, hazard H18).

A look-up brings one person's record that no sync would bring: it is kept only for the
purpose it was fetched for, then erased. The profile setting `lookup_keep` says until when:

- `shift` (the default): `lookup_keep_hours` (default 12, the longest street-triage shift)
  after the opening. The officer may be with the person for hours, and the app syncs on its
  own every 15 minutes and whenever the network returns: erasing at the next sync would take
  the record away in the middle of the encounter it was fetched for.
- `sync`: also erased by the next sync that completes (a Trust that wants the shortest
  keeping), with the same hours as the latest time.

`expire_lookups` runs when the cache is unlocked (`session.open_session`, `Session.resume`),
after each sync (`syncing.run_sync`) and when the app locks (the end of a shift ends in a
lock), so nothing is kept long past its time. A resource sync has brought since (the person
joined the cohort) has lost its look-up mark and stays (`Store.expire_lookups`).

The time is the trusted one: never earlier than the latest time the cache has seen
(`session.TRUSTED_TIME`), so a clock set back does not stretch a look-up's life.

No import of `app.services.session` here: it calls `expire_lookups` on unlock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app import times
from app.store import Store
from app.times import iso_instant, parse_instant

log = logging.getLogger("kerbside.services")

KEEP_SETTING = "lookup_keep"
KEEP_SHIFT = "shift"
KEEP_SYNC = "sync"
KEEP_CHOICES = (KEEP_SHIFT, KEEP_SYNC)
KEEP_HOURS_SETTING = "lookup_keep_hours"
DEFAULT_KEEP_HOURS = 12.0
MAX_KEEP_HOURS = 24.0  # a look-up is never kept past a day, whatever the profile says
TRUSTED_TIME_META = "trusted_time"  # session.TRUSTED_TIME (not imported: no cycle)


def keep_mode(settings: Mapping[str, Any]) -> str:
    mode = settings.get(KEEP_SETTING, KEEP_SHIFT)
    return mode if mode in KEEP_CHOICES else KEEP_SHIFT


def keep_hours(settings: Mapping[str, Any]) -> float:
    value = settings.get(KEEP_HOURS_SETTING, DEFAULT_KEEP_HOURS)
    try:
        hours = float(value)
    except (TypeError, ValueError):
        return DEFAULT_KEEP_HOURS
    return min(hours, MAX_KEEP_HOURS) if hours > 0 else DEFAULT_KEEP_HOURS


def keep_until(settings: Mapping[str, Any], now: datetime) -> datetime:
    """When a look-up made at `now` expires (whole seconds, rounded up)."""
    until = now + timedelta(hours=keep_hours(settings))
    return until.replace(microsecond=0) + (
        timedelta(seconds=1) if until.microsecond else timedelta()
    )


def stamp(when: datetime) -> str:
    """The form expiry times are stored and compared in (`Store.expire_lookups`)."""
    return iso_instant(when, timespec="seconds")


def trusted_now(store: Store, now: datetime | None = None) -> datetime:
    """`now` (default the clock), never earlier than the cache's trusted time mark."""
    current = now or times.now()
    mark = parse_instant(store.get_meta(TRUSTED_TIME_META))
    return max(current, mark) if mark is not None else current


def expire_lookups(
    store: Store,
    now: datetime | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    synced: bool = False,
) -> int:
    """Erase the look-ups whose time has come (`synced`: a sync just completed, which ends
    every look-up when the profile keeps them until the next sync). Returns how many
    resources went."""
    every = synced and keep_mode(settings or {}) == KEEP_SYNC
    erased = store.expire_lookups(stamp(trusted_now(store, now)), every=every)
    if erased:
        log.info("erased %d resources an online look-up had fetched", erased)
    return erased

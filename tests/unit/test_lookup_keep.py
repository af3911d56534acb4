"""How long what an online look-up fetched is kept (`app.services._lookups`), and that it is
erased on unlock, on lock and after a sync: real SQLCipher cache, times given, no sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app import times
from app.services import lookup
from app.services.session import derive_key, expire_due_lookups, unlock
from app.store import HOME_SOURCE
from tests.conftest import TEST_PIN

NOON = datetime(2026, 12, 2, 12, 0, 0, 400_000, tzinfo=UTC)


def _patient(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"},
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        "birthDate": "1980-02-03",
    }


def _flag(fid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": fid,
        "status": "active",
        "code": {"text": "Risk to self"},
        "subject": {"reference": f"Patient/{pid}"},
    }


def _looked_up(session: Any, pid: str, until: datetime) -> None:
    session.store.put_resources(
        HOME_SOURCE,
        [_patient(pid), _flag(f"f-{pid}", pid)],
        lookup_expires_at=lookup_stamp(until),
    )


def lookup_stamp(when: datetime) -> str:
    return times.iso_instant(when, timespec="seconds")


def test_the_default_keeps_a_look_up_for_a_shift_and_the_profile_can_say_otherwise() -> None:
    assert lookup.DEFAULT_KEEP_HOURS == 12
    from app.services._lookups import keep_mode, keep_until

    assert keep_until({}, NOON) == datetime(2026, 12, 3, 0, 0, 1, tzinfo=UTC)  # rounded up
    assert keep_until({lookup.KEEP_HOURS_SETTING: 4}, NOON) == NOON.replace(
        microsecond=0
    ) + timedelta(hours=4, seconds=1)
    assert keep_until({lookup.KEEP_HOURS_SETTING: 1000}, NOON) - NOON <= timedelta(
        hours=24, seconds=1
    )
    assert keep_until({lookup.KEEP_HOURS_SETTING: "junk"}, NOON) - NOON > timedelta(hours=11)
    assert keep_mode({}) == "shift" and keep_mode({lookup.KEEP_SETTING: "sync"}) == "sync"
    assert keep_mode({lookup.KEEP_SETTING: "forever"}) == "shift"


def test_expiry_erases_only_what_is_due_with_its_index_rows(session: Any) -> None:
    now = times.now()
    _looked_up(session, "due", now + timedelta(minutes=1))
    _looked_up(session, "later", now + timedelta(hours=3))
    session.store.put_resources(HOME_SOURCE, [_patient("cohort")])  # sync's: no mark
    assert lookup.expire_lookups(session.store, now) == 0
    assert lookup.expire_lookups(session.store, now + timedelta(minutes=2)) == 2
    left = {r for r in ("due", "later", "cohort") if session.store.get_resource(1, "Patient", r)}
    assert left == {"later", "cohort"}
    assert session.store.get_resource(HOME_SOURCE, "Flag", "f-due") is None
    assert session.store.lookup_expiry() == lookup_stamp(now + timedelta(hours=3))
    assert sorted(session.patient_index().people(["src:1:due", "src:1:later"])) == ["src:1:later"]


def test_a_clock_set_back_does_not_stretch_a_look_up(session: Any) -> None:
    now = times.now()
    _looked_up(session, "p1", now + timedelta(minutes=1))
    session.check_clock(now + timedelta(minutes=5))  # the cache has seen this time
    assert lookup.expire_lookups(session.store, now) == 2  # the clock reads earlier: no matter


def test_sync_keeps_the_cohort_and_ends_look_ups_when_the_profile_says_so(session: Any) -> None:
    now = times.now()
    _looked_up(session, "p1", now + timedelta(hours=5))
    _looked_up(session, "p2", now + timedelta(hours=5))
    session.store.put_resources(HOME_SOURCE, [_patient("p2")])  # p2 joined the cohort
    assert expire_due_lookups(session, synced=True) == 0  # "shift": a sync ends nothing
    session.profile.update_settings(**{lookup.KEEP_SETTING: lookup.KEEP_SYNC})
    assert expire_due_lookups(session, synced=True) == 3  # p1 and both Flags
    assert session.store.get_resource(HOME_SOURCE, "Patient", "p2") is not None


def test_unlock_and_lock_erase_what_is_due(session: Any, profile_dir: Path) -> None:
    past = times.now() - timedelta(seconds=1)
    _looked_up(session, "p1", past)
    session.close()
    with unlock(profile_dir, "pc101", TEST_PIN) as again:
        assert again.store.count_by_type() == {}  # erased on unlock
        _looked_up(again, "p2", past)
        again.lock()  # and on lock (the shift ends)
        _, key = derive_key(profile_dir, "pc101", TEST_PIN)
        again.resume(key)
        assert again.store.count_by_type() == {}

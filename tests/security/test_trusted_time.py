"""Trusted time (issue 12 finding 1, SECURITY.md 25): the cache's lifetime cannot be stretched
by setting the tablet clock back or forward, nor by editing the time-to-live.

The clock is injected (`app.times.now` patched, or `now=` passed): no test waits on the wall
clock. The sync test runs against the real reference server, whose `Date` is the real time.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import app.times
from app.cli import main
from app.errors import CacheExpired, ClockBehind
from app.services.session import LAST_REFRESH, unlock
from app.services.syncing import run_sync
from tests.conftest import TEST_PIN

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """The device clock, set by the test (what `faketime` does to a process)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self, *, timespec: str = "seconds") -> datetime:
        return self.moment


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    device = Clock(T0)
    monkeypatch.setattr(app.times, "now", device)
    return device


def test_a_clock_set_back_does_not_reopen_an_expired_cache(session: Any, clock: Clock) -> None:
    session.mark_refreshed(synced=False)  # refreshed at T0; TTL 72 h
    clock.moment = T0 + timedelta(hours=80)
    with pytest.raises(CacheExpired):
        session.check_fresh()
    clock.moment = T0 + timedelta(hours=50)  # faketime -f '-30h'
    with pytest.raises(ClockBehind):
        session.check_fresh()


def test_a_last_refresh_in_the_future_counts_as_expired(session: Any, clock: Clock) -> None:
    clock.moment = datetime.now(UTC).replace(microsecond=0)
    session.mark_refreshed(synced=False)
    future = clock.moment + timedelta(days=10)  # what a sync under a clock set ahead left
    session.store.set_meta(LAST_REFRESH, future.isoformat().replace("+00:00", "Z"))
    with pytest.raises(CacheExpired):
        session.check_fresh()


def test_a_small_clock_step_back_is_tolerated(session: Any, clock: Clock) -> None:
    session.mark_refreshed(synced=False)
    clock.moment = T0 + timedelta(hours=1)
    session.check_fresh()
    clock.moment = T0 + timedelta(hours=1) - timedelta(minutes=2)  # an NTP correction
    session.check_fresh()


def test_a_sync_under_a_clock_set_ahead_dates_the_refresh_by_the_servers_clock(
    tablet: Any, clock: Clock
) -> None:
    real = datetime.now(UTC)
    clock.moment = real + timedelta(days=30)
    run_sync(tablet)
    last = tablet.last_refresh()
    assert last is not None and abs(last - real) < timedelta(minutes=5)
    # Back on the right clock, the trusted mark is the server's, so the cache is fresh ...
    clock.moment = real + timedelta(minutes=1)
    tablet.check_fresh()
    # ... and 20 days on with no sync it is expired, not kept open by a future refresh.
    clock.moment = real + timedelta(days=20)
    with pytest.raises(CacheExpired):
        tablet.check_fresh()


def test_a_clock_behind_the_mark_refuses_to_open_the_cache(
    profile_dir: Path, session: Any, clock: Clock
) -> None:
    session.check_fresh()
    session.close()
    clock.moment = T0 - timedelta(days=2)
    with pytest.raises(ClockBehind):
        unlock(profile_dir, "pc101", TEST_PIN)


def _cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(TEST_PIN + "\n"))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_search_from_the_cli_with_the_clock_set_back_is_one_line_and_nonzero(
    tmp_path: Path,
    cohort_dir: Path,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import app.security._profile as profile_module
    from tests.conftest import TEST_KDF

    monkeypatch.setattr(profile_module, "KdfParams", lambda: TEST_KDF)
    prof = str(tmp_path / "prof")
    user = ["--profile", prof, "--user", "pc101", "--pin-stdin"]
    assert _cli(["enrol", *user], monkeypatch, capsys)[0] == 0
    assert _cli(["import", *user, str(cohort_dir)], monkeypatch, capsys)[0] == 0
    clock.moment = T0 + timedelta(hours=80)
    code, out, err = _cli(["search", *user, "a"], monkeypatch, capsys)
    assert code != 0 and out == "" and "time limit" in err
    clock.moment = T0 + timedelta(hours=50)
    for command in (["search", *user, "a"], ["import", *user, str(cohort_dir)]):
        code, out, err = _cli(command, monkeypatch, capsys)
        assert code != 0 and out == ""
        assert err.count("\n") == 1 and "clock" in err and "Traceback" not in err


def test_purge_after_hours_erases_the_cache_and_keeps_unsent_records_sealed(
    profile_dir: Path, session: Any, clock: Clock
) -> None:
    from app.errors import CacheWiped
    from app.security import SEALED_SUFFIX, TRUST_KEY_SETTING, new_keypair
    from tests.support.sync import UNIDENTIFIED, record_encounters

    session.profile.update_settings(
        **{TRUST_KEY_SETTING: new_keypair()[0], "purge_after_hours": 100.0}
    )
    session.mark_refreshed(synced=False)
    [client_id] = record_encounters(session, [UNIDENTIFIED])
    session.close()
    clock.moment = T0 + timedelta(hours=99)
    unlock(profile_dir, "pc101", TEST_PIN).close()  # expired (TTL 72 h) but not yet purged
    clock.moment = T0 + timedelta(hours=101)
    with pytest.raises(CacheWiped, match="1 unsent record"):
        unlock(profile_dir, "pc101", TEST_PIN)
    assert not (profile_dir / "cache.db").exists()
    assert [p.name for p in (profile_dir / "sealed").rglob(f"*{SEALED_SUFFIX}")] == [
        f"{client_id}{SEALED_SUFFIX}"
    ]

"""app.times: the one place instants are parsed, spelled and shown (UK dates, London clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app import times


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2023-06-15T20:04:00Z", datetime(2023, 6, 15, 20, 4, tzinfo=UTC)),
        ("2023-06-15T21:04:00+01:00", datetime(2023, 6, 15, 20, 4, tzinfo=UTC)),
        ("2023-06-15T20:04:00.123Z", datetime(2023, 6, 15, 20, 4, 0, 123000, tzinfo=UTC)),
        ("2023-06-15T20:04:00", datetime(2023, 6, 15, 20, 4, tzinfo=UTC)),  # naive: UTC
        ("not a time", None),
        ("", None),
        (None, None),
        (1686859440, None),
    ],
)
def test_instants_parse_with_z_or_offset_to_aware_utc(raw: object, expected: object) -> None:
    assert times.parse_instant(raw) == expected


def test_a_naive_instant_can_be_refused_rather_than_guessed() -> None:
    assert times.parse_instant("2023-06-15T20:04:00", naive="reject") is None
    assert times.parse_instant("2023-06-15T20:04:00Z", naive="reject") is not None


def test_instants_are_spelled_in_utc_with_z() -> None:
    when = datetime(2023, 6, 15, 21, 4, 5, 678901, tzinfo=times.LONDON)
    assert times.iso_instant(when) == "2023-06-15T20:04:05Z"
    assert times.iso_instant(when, timespec="milliseconds") == "2023-06-15T20:04:05.678Z"
    assert times.parse_instant(times.iso_instant(when)) == when.replace(microsecond=0)


def test_now_is_aware_utc_at_the_stored_precision() -> None:
    assert times.now().tzinfo is UTC and times.now().microsecond == 0
    assert times.now(timespec="milliseconds").microsecond % 1000 == 0


def test_times_show_on_londons_clock_in_summer_and_winter() -> None:
    summer = datetime(2023, 6, 15, 20, 4, tzinfo=UTC)
    winter = datetime(2023, 12, 15, 20, 4, tzinfo=UTC)
    assert times.clock_text(summer) == "21:04"
    assert times.clock_text(winter) == "20:04"
    assert times.short_day_text(summer) == "Thu 15 Jun"


def test_today_is_londons_day_not_utcs() -> None:
    late_summer_evening = datetime(2023, 6, 15, 23, 30, tzinfo=UTC)  # 00:30 on the 16th
    assert times.london_today(late_summer_evening) == date(2023, 6, 16)
    assert times.london_midnight(late_summer_evening) == datetime(2023, 6, 15, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, expected",
    [
        (date(2023, 6, 15), "15/06/2023"),
        ("2023-06-15", "15/06/2023"),
        ("2023-06", "06/2023"),
        ("2023", "2023"),
        (datetime(2023, 6, 15, 23, 30, tzinfo=UTC), "16/06/2023"),  # London's date
        ("2023-06-15T23:30:00Z", "16/06/2023"),
        ("2023-06-15Tnonsense", "2023-06-15Tnonsense"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_dates_read_day_first_as_people_in_the_uk_write_them(value: object, expected: str) -> None:
    assert times.uk_date(value) == expected  # type: ignore[arg-type]


def test_date_times_and_long_dates() -> None:
    assert times.uk_date_time("2023-06-15T20:04:00Z") == "15/06/2023 21:04"
    assert times.uk_date_time(date(2023, 6, 5)) == "05/06/2023"
    assert times.uk_long_date(date(2023, 6, 5)) == "5 June 2023"
    assert times.uk_date(None, unknown="DOB unknown") == "DOB unknown"

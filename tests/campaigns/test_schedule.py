"""Allowed hours in a timezone. Pure: the time is an argument."""

from __future__ import annotations

import datetime as dt

import pytest

from instances.schedule import ScheduleError, allowed_hours, closes_at, hold_until, is_open, next_open


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# Sao Paulo is UTC-3 all year: 09:00-18:00 local is 12:00-21:00 UTC.
OFFICE = allowed_hours(dt.time(9), dt.time(18), "America/Sao_Paulo", [0, 1, 2, 3, 4])


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        ("2026-11-27 11:59:59", False),  # Friday 08:59:59 local
        ("2026-11-27 12:00:00", True),  # 09:00 sharp: open
        ("2026-11-27 20:59:59", True),
        ("2026-11-27 21:00:00", False),  # 18:00 sharp: closed
        ("2026-11-28 15:00:00", False),  # Saturday
    ],
)
def test_a_window_is_open_from_its_start_up_to_not_including_its_end(at: str, open_: bool) -> None:
    assert is_open(OFFICE, utc(at)) is open_


def test_after_friday_evening_the_next_window_is_monday_morning() -> None:
    assert next_open(OFFICE, utc("2026-11-27 21:00")) == utc("2026-11-30 12:00")
    assert closes_at(OFFICE, utc("2026-11-27 13:00")) == utc("2026-11-27 21:00")
    assert closes_at(OFFICE, utc("2026-11-28 13:00")) is None


def test_a_window_that_spans_midnight_closes_the_next_morning() -> None:
    night = allowed_hours(dt.time(22), dt.time(6), "UTC")
    assert is_open(night, utc("2026-11-27 23:30"))
    assert is_open(night, utc("2026-11-28 05:59"))
    assert not is_open(night, utc("2026-11-28 06:00"))
    assert closes_at(night, utc("2026-11-27 23:30")) == utc("2026-11-28 06:00")


def test_daylight_saving_time_moves_the_window_in_utc() -> None:
    paris = allowed_hours(dt.time(9), dt.time(18), "Europe/Paris")
    # Winter: UTC+1, summer: UTC+2.
    assert next_open(paris, utc("2026-03-27 00:00")) == utc("2026-03-27 08:00")
    assert next_open(paris, utc("2026-03-30 00:00")) == utc("2026-03-30 07:00")


def test_weekdays_alone_allow_whole_days() -> None:
    weekend = allowed_hours(None, None, "UTC", [5, 6])
    assert is_open(weekend, utc("2026-11-28 00:00"))
    assert closes_at(weekend, utc("2026-11-28 10:00")) == utc("2026-11-30 00:00")  # Sat and Sun merged
    assert next_open(weekend, utc("2026-11-30 09:00")) == utc("2026-12-05 00:00")


def test_no_restriction_is_always_open() -> None:
    always = allowed_hours(None, None, "UTC")
    assert always.always and is_open(always, utc("2026-01-01 03:00"))
    assert hold_until(always, utc("2026-01-01 03:00"), 60) is None


def test_hold_until_holds_within_the_guard_before_the_end() -> None:
    now = utc("2026-11-27 20:59:00")  # one minute before Friday's close
    assert hold_until(OFFICE, now, guard_s=30) is None
    assert hold_until(OFFICE, now, guard_s=60) == utc("2026-11-30 12:00")
    assert hold_until(OFFICE, utc("2026-11-28 10:00"), 30) == utc("2026-11-30 12:00")
    assert hold_until(OFFICE, utc("2026-11-30 12:00"), 30) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((dt.time(9), None, "UTC", []), "both the start and the end"),
        ((dt.time(9), dt.time(17), "Mars/Olympus", []), "Unknown timezone 'Mars/Olympus'"),
        ((None, None, "UTC", [7]), "Weekday 7 is not 0 (Monday) to 6 (Sunday)"),
    ],
)
def test_bad_allowed_hours_are_refused_with_a_reason(args: tuple, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        allowed_hours(*args)


def test_a_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        is_open(OFFICE, dt.datetime(2026, 11, 27, 12))

"""Allowed hours, in a timezone: pure, the time is an argument. A campaign's
(campaigns.lifecycle) and an instance's sending hours (instances.sending).

A window opens every allowed day at ``start`` and closes at ``end``, in
local time of ``tz`` (an IANA name; daylight-saving changes follow zoneinfo).
An ``end`` before ``start`` spans midnight (22:00-06:00 closes the next
morning); ``start == end`` is the whole day. ``weekdays`` (0 = Monday) are
the days a window may *open*; empty means every day. No start and end: any
hour of the allowed days (or always, with no weekdays either).

Windows are half-open, ``[opens, closes)``: a campaign allowed 09:00-18:00
sends at 09:00:00 and not at 18:00:00. Every answer is an aware datetime in
UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC = dt.UTC
ALL_DAYS = frozenset(range(7))
# The weekdays 0 (Monday) to 6 by name, as an instance's sending days list them.
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Enough days on either side for any window of a weekly schedule.
HORIZON_DAYS = 9


class ScheduleError(ValueError):
    """The allowed hours cannot be used; ``str()`` says why, for a person."""


@cache
def zone(name: str) -> ZoneInfo:
    """The zone called ``name``, or :class:`ScheduleError`."""
    if not isinstance(name, str) or not name or name not in zone_names():
        raise ScheduleError(f"Unknown timezone '{name}': use an IANA name such as Europe/Paris or America/Sao_Paulo.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover - listed but unreadable
        raise ScheduleError(f"Unknown timezone '{name}'.") from None


@cache
def zone_names() -> frozenset[str]:
    """Every name :func:`zone` accepts: the IANA names zoneinfo knows."""
    return frozenset(available_timezones())


@dataclass(frozen=True)
class AllowedHours:
    """When a campaign may send; build it with :func:`allowed_hours` to validate."""

    start: dt.time | None = None
    end: dt.time | None = None
    tz: str = "UTC"
    weekdays: frozenset[int] = field(default_factory=frozenset)

    @property
    def always(self) -> bool:
        """True when nothing restricts sending."""
        return self.start is None and (not self.weekdays or self.weekdays == ALL_DAYS)

    @property
    def days(self) -> frozenset[int]:
        return self.weekdays or ALL_DAYS


def allowed_hours(
    start: dt.time | None, end: dt.time | None, tz: str = "UTC", weekdays: Iterable[int] = ()
) -> AllowedHours:
    """Validated :class:`AllowedHours`; :class:`ScheduleError` explains what is wrong."""
    zone(tz)
    if (start is None) != (end is None):
        raise ScheduleError("Give both the start and the end of the allowed hours, or neither.")
    days = list(weekdays)
    for day in days:
        if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
            raise ScheduleError(f"Weekday {day!r} is not 0 (Monday) to 6 (Sunday).")
    if start is not None and end is not None:
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return AllowedHours(start, end, tz, frozenset(days))


def _windows(hours: AllowedHours, at: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The windows around ``at`` (UTC intervals), merged where they touch."""
    tz = zone(hours.tz)
    today = at.astimezone(tz).date()
    start = hours.start or dt.time(0)
    end = hours.end or dt.time(0)
    intervals: list[tuple[dt.datetime, dt.datetime]] = []
    for offset in range(-HORIZON_DAYS, HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        if day.weekday() not in hours.days:
            continue
        end_day = day if end > start else day + dt.timedelta(days=1)
        opens = dt.datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
        closes = dt.datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)
        if closes > opens:
            intervals.append((opens, closes))
    intervals.sort()
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for opens, closes in intervals:
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("a naive datetime: pass an aware one (django.utils.timezone.now())")
    return at.astimezone(UTC)


def is_open(hours: AllowedHours, at: dt.datetime) -> bool:
    """Whether sending is allowed at ``at``."""
    if hours.always:
        return True
    at = _aware(at)
    return any(opens <= at < closes for opens, closes in _windows(hours, at))


def next_open(hours: AllowedHours, at: dt.datetime) -> dt.datetime:
    """``at`` itself when sending is allowed then, else the next time it is."""
    at = _aware(at)
    if hours.always:
        return at
    for opens, closes in _windows(hours, at):
        if at < closes:
            return max(at, opens)
    raise ScheduleError("No allowed hours in the coming week.")  # pragma: no cover - days is never empty


def closes_at(hours: AllowedHours, at: dt.datetime) -> dt.datetime | None:
    """When the window open at ``at`` closes; None if sending is always
    allowed or not allowed at ``at``."""
    at = _aware(at)
    if hours.always:
        return None
    for opens, closes in _windows(hours, at):
        if opens <= at < closes:
            return closes
    return None


def hold_until(hours: AllowedHours, now: dt.datetime, guard_s: float = 0.0) -> dt.datetime | None:
    """None when a campaign may send at ``now`` and for at least ``guard_s``
    more; otherwise the time it may send again (the next window's opening).

    The guard makes a periodic job safe: a job that runs at least every
    ``guard_s`` seconds and holds messages when this says so never lets one
    out after a window closed.
    """
    now = _aware(now)
    if hours.always:
        return None
    closing = closes_at(hours, now)
    if closing is None:
        return next_open(hours, now)
    if (closing - now).total_seconds() > guard_s:
        return None
    return next_open(hours, closing)

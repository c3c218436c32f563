"""An instance's effective sending policy: its own delays and caps, with
warm-up and restriction slow-downs applied. Pure functions: the worker's
outbox reads the columns, :func:`effective` says what they mean now.

- **Warm-up.** A number that pairs (a new one, or one paired again) starts at
  ``BLAST_WARMUP_SCHEDULE[0]`` sends a day (20), then the next figure each
  day (40, 80, ...), and its own daily cap once the schedule is over; never
  more than its own cap. The instance's ``warmup`` flag or
  ``BLAST_WARMUP_ENABLED`` turns it off. Cold blasts from fresh numbers are
  what gets them banned.
- **Slow-down.** Until ``slowed_until`` (instances.restrictions: the network
  answered with rate limits) delays are ``BLAST_SLOWDOWN_FACTOR`` times
  longer (at least 1 s) and the caps that are on that many times lower.
- **Pause.** Until ``paused_until`` nothing is sent.
- **Sending hours.** With ``send_hours_start`` and ``send_hours_end`` set,
  messages go out only between them, on the clock of ``send_timezone``
  (22:00 to 06:00 spans midnight), and only on ``send_days`` (every day by
  default); outside them sending waits for the next opening, as in a
  pause. Nobody likes a blast at 3 in the morning, and recipients who are
  woken report it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from instances import schedule

if TYPE_CHECKING:
    from instances.models import Instance

DAY_S = 86_400.0
# Sending hours: (start, end, time zone, days), as instances.models keeps them.
Hours = tuple[dt.time | None, dt.time | None, str, Sequence[str] | None]


@dataclass(frozen=True)
class Effective:
    delay_min_s: float
    delay_max_s: float
    hourly_cap: int
    daily_cap: int
    paused_until: float = 0.0  # epoch seconds; 0: not paused
    warmup_day: int | None = None  # the warm-up's day (0 = the first), None when not warming up
    slowed: bool = False
    hours_open_at: float = 0.0  # epoch seconds the sending hours open; 0: open now (or none set)


def _ts(value: dt.datetime | float | None) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


def warmup_cap(started_at: float | None, now: float, schedule: Sequence[int]) -> tuple[int | None, int | None]:
    """(day, cap) of a warm-up that started at ``started_at``; (None, None)
    once the schedule is over or when it never started."""
    if started_at is None or not schedule:
        return None, None
    day = int(max(0.0, now - started_at) // DAY_S)
    if day >= len(schedule):
        return None, None
    return day, int(schedule[day])


DAY_NAMES = schedule.DAY_NAMES


def allowed(start: dt.time | None, end: dt.time | None, zone: str, days: Sequence[str] | None) -> schedule.AllowedHours:
    """An instance's sending hours as the campaigns' allowed hours
    (instances.schedule): ``days`` by name; without a start and an end (or
    with an end that is the start, which the API refuses) whole days. A time
    zone no longer known reads as UTC rather than stop the worker's read."""
    weekdays = [DAY_NAMES.index(day) for day in days or () if day in DAY_NAMES]
    if start is None or end is None or start == end:
        start = end = None
    try:
        return schedule.allowed_hours(start, end, zone, weekdays)
    except schedule.ScheduleError:
        return schedule.allowed_hours(start, end, "UTC", weekdays)


def hours_open_at(
    start: dt.time | None, end: dt.time | None, zone: str, now: float, days: Sequence[str] | None = None
) -> float:
    """When sending hours ``start``-``end`` on ``days`` (local to ``zone``)
    next open, as epoch seconds; 0 while they are open, or when none are
    set. An end before the start spans midnight and belongs to the day it
    starts on (Friday 22:00 to 06:00 runs into Saturday morning); the end
    itself is outside the hours. Without a start and an end, ``days`` are
    whole days; ``days`` None or empty: every day."""
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    opens = schedule.next_open(allowed(start, end, zone, days), at)
    return 0.0 if opens <= at else opens.timestamp()


def _lower(cap: int, factor: float) -> int:
    return cap if cap <= 0 else max(1, int(cap / factor))


def effective(
    *,
    delay_min_s: float,
    delay_max_s: float,
    hourly_cap: int,
    daily_cap: int,
    now: float,
    warmup: bool = False,
    warmup_started_at: dt.datetime | float | None = None,
    slowed_until: dt.datetime | float | None = None,
    paused_until: dt.datetime | float | None = None,
    schedule: Sequence[int] = (),
    slowdown_factor: float = 2.0,
    hours: Hours = (None, None, "", None),
) -> Effective:
    """The policy in force at ``now`` (see the module docstring); ``hours``
    is (start, end, time zone, days)."""
    day, cap = warmup_cap(_ts(warmup_started_at), now, schedule) if warmup else (None, None)
    if cap is not None:
        daily_cap = cap if daily_cap <= 0 else min(daily_cap, cap)
    slowed = (_ts(slowed_until) or 0.0) > now
    if slowed:
        delay_min_s, delay_max_s = slowed_delays(delay_min_s, delay_max_s, slowdown_factor)
        hourly_cap, daily_cap = _lower(hourly_cap, slowdown_factor), _lower(daily_cap, slowdown_factor)
    paused = _ts(paused_until) or 0.0
    start, end, zone, days = hours
    opens = hours_open_at(start, end, zone, now, days)
    paused = max(paused, opens)
    return Effective(
        delay_min_s=delay_min_s,
        delay_max_s=delay_max_s,
        hourly_cap=hourly_cap,
        daily_cap=daily_cap,
        paused_until=paused if paused > now else 0.0,
        warmup_day=day,
        slowed=slowed,
        hours_open_at=opens,
    )


def from_settings(
    *,
    delay_min_s: float,
    delay_max_s: float,
    hourly_cap: int,
    daily_cap: int,
    now: float,
    warmup: bool,
    warmup_started_at: dt.datetime | float | None,
    slowed_until: dt.datetime | float | None,
    paused_until: dt.datetime | float | None,
    hours: Hours = (None, None, "", None),
) -> Effective:
    """:func:`effective` with the warm-up switch, schedule and slow-down
    factor of the settings."""
    from django.conf import settings

    return effective(
        delay_min_s=delay_min_s,
        delay_max_s=delay_max_s,
        hourly_cap=hourly_cap,
        daily_cap=daily_cap,
        now=now,
        warmup=warmup and bool(settings.BLAST_WARMUP_ENABLED),
        warmup_started_at=warmup_started_at,
        slowed_until=slowed_until,
        paused_until=paused_until,
        schedule=list(settings.BLAST_WARMUP_SCHEDULE),
        slowdown_factor=float(settings.BLAST_SLOWDOWN_FACTOR),
        hours=hours,
    )


def slowed_delays(low: float, high: float, factor: float) -> tuple[float, float]:
    """A campaign's own delay range, slowed down like the instance's."""
    low = max(low * factor, 1.0)
    return low, max(high * factor, low)


MAX_DELAY_S = 86_400.0


def policy_problems(delay_min_s: float, delay_max_s: float, hourly_cap: int, daily_cap: int) -> dict[str, str]:
    """Field -> why an instance's sending policy cannot be used (empty: it can)."""
    problems: dict[str, str] = {}
    for name, value in (("send_delay_min_s", delay_min_s), ("send_delay_max_s", delay_max_s)):
        if not 0 <= value <= MAX_DELAY_S:  # also refuses NaN
            problems[name] = f"A delay is 0 to {MAX_DELAY_S:g} seconds."
    if not problems and delay_min_s > delay_max_s:
        problems["send_delay_max_s"] = (
            f"The maximum delay ({delay_max_s:g} s) is below the minimum ({delay_min_s:g} s)."
        )
    for name, cap in (("hourly_cap", hourly_cap), ("daily_cap", daily_cap)):
        if cap < 0:
            problems[name] = "A cap is 0 (no cap) or more."
    return problems


def hours_problems(
    start: dt.time | None, end: dt.time | None, zone: str, days: Sequence[str] | None = None
) -> dict[str, str]:
    """Field -> why sending hours cannot be used (empty: they can)."""
    problems: dict[str, str] = {}
    if days is not None and (not days or any(day not in DAY_NAMES for day in days) or len(set(days)) < len(days)):
        problems["send_days"] = f"Some of {', '.join(DAY_NAMES)}, each once; at least one."
    if (start is None) != (end is None):
        missing = "send_hours_end" if end is None else "send_hours_start"
        problems[missing] = "Sending hours need both a start and an end (or neither, to send at any hour)."
    elif start is not None and start == end:
        problems["send_hours_end"] = "The end is the start: leave both empty to send at any hour."
    try:
        schedule.zone(zone)
    except schedule.ScheduleError:
        problems["send_timezone"] = f"{zone!r} is not a time zone: use an IANA name such as America/Sao_Paulo."
    return problems


def with_platform_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every sending-policy field (instances.models.POLICY_FIELDS) from
    ``values``; one absent, None or blank (a tenant default left blank) is
    the platform's default."""
    from instances.models import POLICY_FIELDS, Instance

    return {
        name: value if (value := values.get(name)) not in (None, "") else Instance._meta.get_field(name).get_default()
        for name in POLICY_FIELDS
    }


def check(values: Mapping[str, Any]) -> dict[str, str]:
    """Field -> why the sending policy ``values`` make (see
    :func:`with_platform_defaults`) cannot be used; empty: it can. The API and
    the admin's forms, for instances and for tenant defaults, all ask this."""
    policy = with_platform_defaults(values)
    problems = policy_problems(
        policy["send_delay_min_s"], policy["send_delay_max_s"], policy["hourly_cap"], policy["daily_cap"]
    )
    problems.update(
        hours_problems(
            policy["send_hours_start"], policy["send_hours_end"], policy["send_timezone"], policy["send_days"]
        )
    )
    return problems


def in_force(instance: Instance, now: float) -> Effective:
    """The policy an instance's worker sends with at ``now`` (its columns read)."""
    return from_settings(
        delay_min_s=float(instance.send_delay_min_s),
        delay_max_s=float(instance.send_delay_max_s),
        hourly_cap=int(instance.hourly_cap),
        daily_cap=int(instance.daily_cap),
        now=now,
        warmup=bool(instance.warmup),
        warmup_started_at=instance.warmup_started_at,
        slowed_until=instance.slowed_until,
        paused_until=instance.paused_until,
        hours=(instance.send_hours_start, instance.send_hours_end, instance.send_timezone, instance.send_days),
    )

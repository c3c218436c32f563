"""When may an instance send its next message: pure pacing decisions.

A sending policy (:class:`Pacing`) is a random delay between two sends,
drawn inside ``[delay_min_s, delay_max_s]``, and two caps: at most
``hourly_cap`` sends in any rolling hour and ``daily_cap`` in any rolling 24
hours (0 turns a cap off). :func:`next_send_at` takes the policy, the send
times so far and ``now`` and answers the earliest time the next send may
happen. No clock, no I/O: the connection worker passes the time, and the
tests pin it by passing numbers.

Windows are half-open on the left: a send at ``t`` counts against the hourly
cap for every time in ``(t, t + 3600]`` and no longer after that, so the
cap-th send of an hour frees its slot exactly 3600 s after it went out.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

HOUR_S = 3_600.0
DAY_S = 86_400.0


@dataclass(frozen=True)
class Pacing:
    """A sending policy.

    Built from database rows by the connection worker, so it never raises:
    a delay that is negative or not a finite number counts as 0, a maximum
    below the minimum as the minimum, a negative cap as 0 (no cap). The API
    and the admin refuse such values before they reach a row.
    """

    delay_min_s: float
    delay_max_s: float
    hourly_cap: int
    daily_cap: int

    def __post_init__(self) -> None:
        low = _delay(self.delay_min_s)
        object.__setattr__(self, "delay_min_s", low)
        object.__setattr__(self, "delay_max_s", max(low, _delay(self.delay_max_s)))
        object.__setattr__(self, "hourly_cap", _cap(self.hourly_cap))
        object.__setattr__(self, "daily_cap", _cap(self.daily_cap))

    @property
    def unpaced(self) -> bool:
        """True when nothing ever delays a send (no delay, no caps)."""
        return self.delay_max_s == 0 and self.hourly_cap == 0 and self.daily_cap == 0

    def with_delay(self, delay_min_s: float | None, delay_max_s: float | None) -> Pacing:
        """This policy with a campaign's delay in place of its own; a None
        bound keeps the policy's own value. The caps always stay: they bound
        the account's volume, whoever sends."""
        low = self.delay_min_s if delay_min_s is None else delay_min_s
        high = self.delay_max_s if delay_max_s is None else delay_max_s
        return Pacing(low, high, self.hourly_cap, self.daily_cap)


def _delay(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _cap(value: object) -> int:
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(0, number)


def draw_delay(policy: Pacing, rand: Callable[[], float]) -> float:
    """A delay inside ``[delay_min_s, delay_max_s]``; ``rand()`` is in [0, 1)."""
    r = min(max(float(rand()), 0.0), 1.0)
    return policy.delay_min_s + r * (policy.delay_max_s - policy.delay_min_s)


def _cap_free_at(recent: Sequence[float], now: float, window_s: float, cap: int) -> float:
    """Earliest time >= now at which fewer than ``cap`` sends of ``recent``
    (ascending) fall inside the window ending then."""
    if cap <= 0 or len(recent) < cap:
        return now
    first_inside = bisect.bisect_right(recent, now - window_s)  # sends at or before now - window are out
    inside = len(recent) - first_inside
    if inside < cap:
        return now
    # The slot frees when the send that leaves `cap - 1` after it drops out.
    return recent[len(recent) - cap] + window_s


def next_send_at(
    policy: Pacing,
    recent_sends: Sequence[float],
    last_send: float | None,
    now: float,
    rand: Callable[[], float],
) -> float:
    """The earliest time (epoch seconds, >= ``now``) the next send may happen.

    ``recent_sends``: the instance's send times (epoch seconds) in ascending
    order; only those of the last 24 hours matter, older ones may be passed
    or dropped (:func:`prune`). ``last_send``: the time of the instance's last
    send, or None when it never sent (no delay is owed then). ``rand``: a
    source of floats in [0, 1) for the random delay; it is called exactly
    once per call, so a caller that must re-ask (woken up early, a cap
    re-checked) and wants to keep the same delay passes the same draw again.

    The answer is the latest of: ``now``; ``last_send`` plus the drawn delay;
    the time the hourly cap frees a slot; the time the daily cap frees one.
    """
    at = now
    delay = draw_delay(policy, rand)
    if last_send is not None:
        at = max(at, last_send + delay)
    if policy.hourly_cap:
        at = max(at, _cap_free_at(recent_sends, now, HOUR_S, policy.hourly_cap))
    if policy.daily_cap:
        at = max(at, _cap_free_at(recent_sends, now, DAY_S, policy.daily_cap))
    return at


def prune(recent_sends: Sequence[float], now: float) -> list[float]:
    """The sends that still count against a cap at ``now`` (the last 24 h)."""
    return list(recent_sends[bisect.bisect_right(recent_sends, now - DAY_S) :])

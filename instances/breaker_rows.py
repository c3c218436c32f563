"""A breaker between its stored row and its pure value (:mod:`instances.breaker`).

The worker's fenced writes, the recovery jobs and the operators' commands all
read and write ``CircuitBreaker`` rows; they share these conversions so that a
stored breaker means the same thing to each of them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from instances import breaker as breakers
from instances.breaker import Breaker
from instances.models import CircuitBreaker, EventKind


def to_dt(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def to_ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def breaker_from_row(row: CircuitBreaker | None) -> Breaker:
    if row is None:
        return Breaker()
    return Breaker(
        state=breakers.State(row.state),
        failures=tuple(float(t) for t in row.failures or ()),
        opened_at=to_ts(row.opened_at),
        cooldown_until=to_ts(row.cooldown_until),
        trip_count=row.trip_count,
    )


def breaker_fields(breaker: Breaker) -> dict[str, Any]:
    return {
        "state": str(breaker.state),
        "failures": list(breaker.failures),
        "opened_at": to_dt(breaker.opened_at),
        "cooldown_until": to_dt(breaker.cooldown_until),
        "trip_count": breaker.trip_count,
        "updated_at": timezone.now(),
    }


BREAKER_EVENT = {
    breakers.Transition.OPENED: EventKind.BREAKER_OPENED,
    breakers.Transition.HALF_OPENED: EventKind.BREAKER_HALF_OPEN,
    breakers.Transition.CLOSED: EventKind.BREAKER_CLOSED,
}

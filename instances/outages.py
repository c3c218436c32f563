"""Gateway outages: one event for a sick gateway, not one per instance.

The circuit breaker is right for one sick account and wrong for a sick
gateway: when the gateway or its network goes away for everyone, every
instance would fail, back off and open its own breaker. Instead the gateway
itself has a state (``Gateway.state``):

- **down** when, within ``window_s``, at least ``max(minimum, share x running
  instances)`` of its instances failed with a gateway-level reason
  (:data:`GATEWAY_REASONS`: unreachable, timed out, unavailable, connection
  closed or lost) and none of them was answered with ``hello`` in that
  window, and at least ``minimum`` of them failed an attempt (not only lost
  an established session: a restarted gateway drops everyone too, then
  answers the reconnects). Every connection worker reports what it sees into
  the same Redis sets (``engine.outages``), so the rule holds however the
  failures are spread over workers. A session dropped soon after the gateway
  answered is a flap, not an outage: it stays with the breaker's flap rule.
  One instance refused while its neighbours are fine never reaches the share.
- **while down** its instances make no attempt of their own (the attempt
  rule, instances.attempts, says so), their failures do not count toward
  their breakers, and one probe at a time, cluster-wide (a Redis lock),
  makes a real attempt for one of its instances, backing off with jitter
  from ``probe_min_s`` to ``probe_max_s`` (less for a gateway so large that
  its instances take more than a few seconds to ramp back in: probe_cap).
- **up** again when any session on it is answered with ``hello`` (the probe's,
  or a forced attempt's): its waiting instances are released at once, and
  the workers start them in a ramp of ``connect_rate`` attempts per second
  (``engine.outages``); breakers opened by the outage's failures close.

The rule and the probe delay are pure functions; the transitions
below them are each one conditional update, so that however many workers
see the outage at once, one of them records it.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q

from instances import attempts
from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Gateway,
    GatewayEvent,
    GatewayEventKind,
    GatewayState,
    Instance,
    Status,
)
from instances.reasons import GATEWAY_REASONS, Reason

JITTER = 0.2
# A gateway whose instances ramp back in within this many seconds is probed
# at most every ``probe_max_s``; a larger one more often (probe_cap).
RAMP_FOR_FULL_CAP_S = 5.0


@dataclass(frozen=True)
class OutagePolicy:
    window_s: float = 60.0
    share: float = 0.5
    minimum: int = 5
    probe_min_s: float = 1.0
    probe_max_s: float = 15.0
    connect_rate: float = 200.0
    flap_window_s: float = 30.0

    @classmethod
    def from_settings(cls) -> OutagePolicy:
        return cls(
            window_s=settings.BLAST_GATEWAY_DOWN_WINDOW_S,
            share=settings.BLAST_GATEWAY_DOWN_SHARE,
            minimum=settings.BLAST_GATEWAY_DOWN_MIN,
            probe_min_s=settings.BLAST_GATEWAY_PROBE_MIN_S,
            probe_max_s=max(settings.BLAST_GATEWAY_PROBE_MAX_S, settings.BLAST_GATEWAY_PROBE_MIN_S),
            connect_rate=settings.BLAST_GATEWAY_CONNECT_RATE,
            flap_window_s=settings.BLAST_FLAP_WINDOW_S,
        )

    def threshold(self, running: int) -> int:
        """How many distinct instances must fail for a gateway with ``running`` instances to be down."""
        return max(self.minimum, math.ceil(self.share * running))


class Failure(str, enum.Enum):
    """What a session's end says about its gateway, as reported to the rule."""

    ATTEMPT = "f"  # an attempt the gateway did not answer (refused, unreachable, timed out)
    LOST = "l"  # an established session lost with a gateway-level reason


def gateway_failure(
    reason: Reason, *, hello_at: float | None, ready_at: float | None, ended_at: float, policy: OutagePolicy
) -> Failure | None:
    """What this session's end says about the gateway as a whole, if anything.

    A gateway-level reason before the gateway answered (no ``hello``) is a
    failed attempt; the loss of a session established for longer than the
    flap window is a lost session. A drop soon after the answer is a flap:
    the gateway is there, and the breaker's flap rule deals with it.
    """
    if reason not in GATEWAY_REASONS:
        return None
    if hello_at is None:
        return Failure.ATTEMPT
    since = ready_at if ready_at is not None else hello_at
    return Failure.LOST if ended_at - since >= policy.flap_window_s else None


def is_down(failing: int, answered: int, running: int, policy: OutagePolicy, attempts_failed: int) -> bool:
    """The rule: enough distinct instances failed in the window, none was
    answered, and at least ``minimum`` of them failed an attempt.

    Sessions lost at once count toward the share, but alone they are a
    gateway restart as much as an outage: a restarted gateway answers the
    reconnects, a gateway that is gone refuses them. Only refused attempts
    tell the two apart, so a restart never raises an outage.
    """
    return answered == 0 and failing >= policy.threshold(running) and attempts_failed >= policy.minimum


def probe_cap(policy: OutagePolicy, waiting: int) -> float:
    """The longest wait between two probes of a gateway with ``waiting``
    instances: ``probe_max_s``, shortened for a gateway whose instances take
    longer than :data:`RAMP_FOR_FULL_CAP_S` to ramp back in (``waiting /
    connect_rate`` seconds) in proportion to that time, never below
    ``probe_min_s``.

    A probe is one attempt whatever the gateway's size; a return seen late
    costs every waiting instance the wait. With the defaults: up to 1,000
    instances 15 s, 5,000 3 s, 10,000 1.5 s (3 % of their 50 s ramp).
    """
    ramp_s = waiting / policy.connect_rate
    if ramp_s <= RAMP_FOR_FULL_CAP_S:
        return policy.probe_max_s
    return max(policy.probe_min_s, policy.probe_max_s * RAMP_FOR_FULL_CAP_S / ramp_s)


def probe_delay(
    probe_count: int, policy: OutagePolicy, rand: Callable[[], float] = random.random, waiting: int = 0
) -> float:
    """Seconds before the next probe after ``probe_count`` failed ones: doubling
    from ``probe_min_s``, capped at :func:`probe_cap` for ``waiting``
    instances, +/-20 % jitter that never exceeds the cap."""
    cap = probe_cap(policy, waiting)
    base = min(cap, policy.probe_min_s * 2 ** min(probe_count, 30))
    return min(cap, base * (1 - JITTER + 2 * JITTER * rand()))


# -- transitions (ORM) -----------------------------------------------------------


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


@dataclass(frozen=True)
class GatewayView:
    """What a worker keeps of a gateway between reads."""

    id: int
    state: str
    next_probe_at: float | None
    probe_count: int
    down_since: float | None
    changed_at: float | None = None  # the last transition: for an up gateway, when it came up

    @property
    def down(self) -> bool:
        return self.state == GatewayState.DOWN

    def ramping(self, now: float, running: int, rate: float, margin_s: float) -> bool:
        """Up again recently enough that its released instances may still be
        ramping in: ``running / rate`` seconds from coming up, plus a margin."""
        if self.down or self.changed_at is None:
            return False
        return now < self.changed_at + running / rate + margin_s


def load_views() -> dict[int, GatewayView]:
    return {
        gid: GatewayView(gid, state, _ts(nxt), count, _ts(since), _ts(changed))
        for gid, state, nxt, count, since, changed in Gateway.objects.values_list(
            "id", "state", "next_probe_at", "probe_count", "down_since", "state_changed_at"
        )
    }


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def running_counts() -> dict[int, int]:
    """Running instances per gateway: the base of the share."""
    return dict(
        Instance.objects.filter(desired_state=DesiredState.RUNNING)
        .order_by()
        .values_list("gateway_id")
        .annotate(n=Count("id"))
        .values_list("gateway_id", "n")
    )


def mark_down(
    gateway_id: int,
    *,
    reason: str,
    now: float,
    actor: str,
    failing: int,
    running: int,
    policy: OutagePolicy,
    rand: Callable[[], float] = random.random,
) -> bool:
    """Record that the gateway is down; True for the one caller that did.

    Conditional on the gateway being up, so that many workers seeing the same
    outage record it once. A gateway that goes down again within a window of
    coming up keeps its probe backoff: a gateway that answers probes and
    fails everyone else is probed less and less often, not in a loop.
    """
    when = _dt(now)
    with transaction.atomic():
        gateway = Gateway.objects.select_for_update().filter(id=gateway_id).first()
        if gateway is None or gateway.state == GatewayState.DOWN:
            return False
        recent_up = gateway.state_changed_at is not None and (now - gateway.state_changed_at.timestamp()) < (
            policy.window_s
        )
        probes = gateway.probe_count if recent_up else 0
        updated = Gateway.objects.filter(Q(id=gateway_id) & ~Q(state=GatewayState.DOWN)).update(
            state=GatewayState.DOWN,
            state_changed_at=when,
            down_since=when,
            down_reason=reason,
            probe_count=probes,
            next_probe_at=_dt(now + probe_delay(probes, policy, rand, waiting=running)),
            outage_count=gateway.outage_count + 1,
        )
        if updated != 1:
            return False
        GatewayEvent.objects.create(
            gateway_id=gateway_id,
            at=when,
            kind=GatewayEventKind.DOWN,
            reason=reason,
            actor=actor,
            message=f"{failing} of {running} running instances failed with gateway-level reasons, none answered",
            data={"failing": failing, "running": running, "window_s": policy.window_s},
        )
    return True


def probe_failed(
    gateway_id: int, *, now: float, policy: OutagePolicy, rand: Callable[[], float] = random.random
) -> float | None:
    """A probe found the gateway still down: schedule the next one. Returns
    its delay, or None if the gateway is up by now."""
    gateway = Gateway.objects.filter(id=gateway_id, state=GatewayState.DOWN).values_list("probe_count", flat=True)
    count = next(iter(gateway), None)
    if count is None:
        return None
    waiting = Instance.objects.filter(gateway_id=gateway_id, desired_state=DesiredState.RUNNING).count()
    delay = probe_delay(count + 1, policy, rand, waiting=waiting)
    Gateway.objects.filter(id=gateway_id, state=GatewayState.DOWN).update(
        probe_count=F("probe_count") + 1, last_probe_at=_dt(now), next_probe_at=_dt(now + delay)
    )
    return delay


@dataclass(frozen=True)
class Release:
    """What coming back up did."""

    released: list[int]  # the instances released, in random order: to be hinted now
    breakers_closed: int
    down_s: float


def mark_up(
    gateway_id: int,
    *,
    now: float,
    actor: str,
    policy: OutagePolicy,
    rand: Callable[[], float] = random.random,
) -> Release | None:
    """Record that the gateway answers again and release its instances.

    Conditional on it being down (one caller does it). In the same
    transaction: every waiting instance of the gateway is due now, with its
    retry count reset (the outage was not its failure), and breakers opened
    by the outage's failures (opened after the outage's window began) close.
    The ramp is kept at dispatch (``engine.outages``: every start takes a
    slot of ``1 / connect_rate`` seconds, cluster-wide), not written here: one
    update releases ten thousand instances at once, where writing each one's
    time would take seconds and let the first of them fall due together.
    Returns None if the gateway was not down.
    """
    when = _dt(now)
    with transaction.atomic():
        gateway = Gateway.objects.select_for_update().filter(id=gateway_id, state=GatewayState.DOWN).first()
        if gateway is None:
            return None
        down_since = gateway.down_since.timestamp() if gateway.down_since is not None else now
        Gateway.objects.filter(id=gateway_id).update(
            state=GatewayState.UP,
            state_changed_at=when,
            down_since=None,
            last_probe_at=when,
            next_probe_at=None,
        )
        outage_began = _dt(down_since - policy.window_s)
        opened = list(
            CircuitBreaker.objects.filter(
                instance__gateway_id=gateway_id,
                state__in=[BreakerState.OPEN, BreakerState.HALF_OPEN],
                opened_at__gte=outage_began,
            ).values_list("id", "instance_id")
        )
        if opened:
            CircuitBreaker.objects.filter(id__in=[b for b, _ in opened]).update(
                state=BreakerState.CLOSED, failures=[], opened_at=None, cooldown_until=None, updated_at=when
            )
            Instance.objects.filter(id__in=[i for _, i in opened], status=Status.CIRCUIT_OPEN).update(
                status=Status.BACKING_OFF, status_changed_at=when
            )
            ConnectionEvent.objects.bulk_create(
                ConnectionEvent(
                    instance_id=instance_id,
                    at=when,
                    kind=EventKind.BREAKER_CLOSED,
                    actor=actor,
                    message="opened by the gateway's outage; closed when it came back",
                    data={"gateway_outage": True},
                )
                for _, instance_id in opened
            )
        waiting = Instance.objects.filter(
            gateway_id=gateway_id, desired_state=DesiredState.RUNNING, status__in=sorted(attempts.WAITING)
        )
        released = list(waiting.values_list("id", flat=True))
        waiting.update(next_retry_at=when, retry_count=0)
        GatewayEvent.objects.create(
            gateway_id=gateway_id,
            at=when,
            kind=GatewayEventKind.UP,
            actor=actor,
            message=f"answered again after {now - down_since:.0f}s; {len(released)} instances released",
            data={
                "down_s": round(now - down_since, 3),
                "released": len(released),
                "breakers_closed": len(opened),
                "probes": gateway.probe_count,
            },
        )
    _shuffle(released, rand)
    return Release(released, len(opened), now - down_since)


def _shuffle(items: list[Any], rand: Callable[[], float]) -> None:
    """Fisher-Yates with ``rand``: released in random order, reproducibly in tests."""
    for i in range(len(items) - 1, 0, -1):
        j = int(rand() * (i + 1))
        items[i], items[j] = items[j], items[i]


def request_probe(gateway_id: int, *, actor: str, now: float) -> bool:
    """An operator asks for a probe now: True if the gateway is down (the
    next probe is moved to now and the request audited), False if it is up."""
    with transaction.atomic():
        updated = Gateway.objects.filter(id=gateway_id, state=GatewayState.DOWN).update(next_probe_at=_dt(now))
        if updated:
            GatewayEvent.objects.create(
                gateway_id=gateway_id, at=_dt(now), kind=GatewayEventKind.PROBE_REQUESTED, actor=actor
            )
    return bool(updated)

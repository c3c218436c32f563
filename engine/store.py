"""The connection worker's database side: claims, fenced writes, heartbeats.

Every function here is synchronous ORM code, called from the worker through
``database_sync_to_async``. Writes about an instance are conditional on the
writer's lease epoch (``filter(lease_epoch=epoch)``), so a worker that lost
its lease can never overwrite what a newer owner wrote.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Case, Exists, OuterRef, Value, When
from django.utils import timezone

from campaigns.models import NumberCheck, NumberCheckStatus
from instances import attempts, outages
from instances import breaker as breakers
from instances.breaker import Breaker
from instances.breaker_rows import BREAKER_EVENT, breaker_fields, breaker_from_row, to_dt, to_ts
from instances.decisions import Policies, before_attempt
from instances.models import (
    TERMINAL_STATUSES,
    CircuitBreaker,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Gateway,
    GatewayState,
    Instance,
    PairState,
    Status,
    WorkerHeartbeat,
)
from monitoring import alerts
from monitoring.models import AlertKind
from monitoring.transitions import FIRING, RESOLVED

# What a session that pairs or ends leaves of its pairing: no QR code, no
# pairing code, no request pending (a request was for that session).
NO_PAIRING: dict[str, Any] = {
    "qr_code": "",
    "qr_expires_at": None,
    "pair_phone": "",
    "pair_state": PairState.NONE,
    "pair_code": "",
    "pair_error": "",
}

# -- reading what the worker should do ---------------------------------------


@dataclass(frozen=True)
class Row:
    """What the worker reads about an instance named in a hint; it has the
    fields of ``attempts.AttemptFields``."""

    id: int
    desired_state: str
    status: str
    lease_epoch: int
    next_retry_at: float | None
    force_retry: bool
    breaker_state: str
    cooldown_until: float | None
    pair_state: str = PairState.NONE
    pair_phone: str = ""
    gateway_id: int = 0
    gateway_down: bool = False
    checks_pending: bool = False  # number checks wait for this instance's session
    logout_requested: bool = False

    @property
    def running(self) -> bool:
        return self.desired_state == DesiredState.RUNNING

    def decide(self, now: float, asker: attempts.Asker = attempts.Asker.ANYONE) -> attempts.Decision:
        """The attempt rule (instances.attempts) for this row."""
        return attempts.decide(self, now, asker)

    def wants_session(self, now: float) -> bool:
        """Worth taking the lease for: a cheap filter before the real claim.

        Due now, or a live status: its owner is found by the lease (and sent
        the hint), and without one the claim finds the status stale."""
        decision = self.decide(now)
        return decision.now or decision.verdict is attempts.Verdict.OWNER

    def due_later(self, now: float, horizon: float) -> float | None:
        """Seconds until an attempt that falls due within ``horizon`` seconds, else None."""
        decision = self.decide(now)
        if decision.verdict is not attempts.Verdict.LATER or decision.at is None:
            return None
        delay = decision.at - now
        return delay if delay <= horizon else None

    def wants_stop_written(self) -> bool:
        """Desired stopped, but the row does not say so yet."""
        return not self.running and self.status not in TERMINAL_STATUSES and self.status != Status.IDLE

    @property
    def pair_requested(self) -> bool:
        """A pairing code was asked for and no worker has sent the request yet."""
        return self.pair_state == PairState.REQUESTED and bool(self.pair_phone)


def load_rows(ids: list[int]) -> list[Row]:
    pending = NumberCheck.objects.filter(instance=OuterRef("pk"), status=NumberCheckStatus.PENDING)
    rows = (
        Instance.objects.filter(id__in=ids)
        .annotate(checks_pending=Exists(pending))
        .values_list(
            "id",
            "desired_state",
            "status",
            "lease_epoch",
            "next_retry_at",
            "force_retry",
            "breaker__state",
            "breaker__cooldown_until",
            "pair_state",
            "pair_phone",
            "gateway_id",
            "gateway__state",
            "checks_pending",
            "logout_requested",
        )
    )
    return [
        Row(
            id=i,
            desired_state=d,
            status=s,
            lease_epoch=e,
            next_retry_at=to_ts(n),
            force_retry=f,
            breaker_state=b or breakers.State.CLOSED,
            cooldown_until=to_ts(c),
            pair_state=ps,
            pair_phone=pp,
            gateway_id=g,
            gateway_down=gs == GatewayState.DOWN,
            checks_pending=cp,
            logout_requested=lo,
        )
        for i, d, s, e, n, f, b, c, ps, pp, g, gs, cp, lo in rows
    ]


def take_logout_request(instance_id: int, epoch: int) -> bool:
    """Clear the row's logout request under ``epoch``: True for the one
    caller that must send ``logout``."""
    return (
        Instance.objects.filter(id=instance_id, lease_epoch=epoch, logout_requested=True).update(logout_requested=False)
        == 1
    )


def take_pair_request(instance_id: int, epoch: int, phone: str) -> bool:
    """Mark the row's pairing-code request for ``phone`` sent, if it is still
    pending under ``epoch``: True for the one caller that must send it.

    Conditional like a claim, so a request is sent once however many
    reconciles see it, and a newer request (another phone) is left for the
    next one.
    """
    return (
        Instance.objects.filter(
            id=instance_id, lease_epoch=epoch, pair_state=PairState.REQUESTED, pair_phone=phone
        ).update(pair_state=PairState.SENT)
        == 1
    )


# -- claiming an instance under a fresh lease --------------------------------


@dataclass
class Claim:
    instance_id: int
    key: str
    url: str
    token: str
    retry_count: int
    breaker: Breaker
    paired: bool
    forced: bool
    gateway_id: int = 0
    probe: bool = False
    events: list[ConnectionEvent] = field(default_factory=list)


def attempt_fields(instance: Instance, breaker_row: CircuitBreaker | None) -> attempts.Fields:
    """What the attempt rule reads about ``instance``, from its model objects."""
    return attempts.Fields(
        desired_state=instance.desired_state,
        status=instance.status,
        next_retry_at=to_ts(instance.next_retry_at),
        force_retry=instance.force_retry,
        breaker_state=breaker_row.state if breaker_row is not None else str(breakers.State.CLOSED),
        cooldown_until=to_ts(breaker_row.cooldown_until) if breaker_row is not None else None,
        gateway_down=instance.gateway.state == GatewayState.DOWN,
    )


def claim_many(
    epochs: dict[int, int], worker_id: str, now: float, policies: Policies, probes: frozenset[int] = frozenset()
) -> dict[int, Claim]:
    """Record that ``worker_id`` owns each instance under its new epoch and,
    where an attempt is due, mark it connecting: one transaction for all.
    Instances in ``probes`` are claimed to probe their down gateway: one
    attempt, whatever their breaker and retry time say.

    Returns what each session to open needs; an instance missing from the
    result has nothing to do (the caller releases its lease). Conditional on
    the epoch: a claim older than the row's epoch writes nothing.
    """
    when = to_dt(now)
    actor = f"worker:{worker_id}"
    claims: dict[int, Claim] = {}
    events: list[ConnectionEvent] = []
    with transaction.atomic():
        instances = Instance.objects.select_related("gateway", "breaker").filter(id__in=list(epochs))
        for instance in instances:
            epoch = epochs[instance.id]
            result = _claim_one(
                instance, epoch, worker_id, actor, now, when, policies, events, probe=instance.id in probes
            )
            if result is not None:
                claims[instance.id] = result
        ConnectionEvent.objects.bulk_create(events)
    return claims


def _claim_one(
    instance: Instance,
    epoch: int,
    worker_id: str,
    actor: str,
    now: float,
    when: dt.datetime | None,
    policies: Policies,
    events: list[ConnectionEvent],
    *,
    probe: bool = False,
) -> Claim | None:
    if instance.lease_epoch >= epoch:
        return None
    fenced = Instance.objects.filter(id=instance.id, lease_epoch__lt=epoch)
    if instance.desired_state != DesiredState.RUNNING:
        stop_fields: dict[str, Any] = {"lease_epoch": epoch, "owner": ""}
        if instance.status not in TERMINAL_STATUSES and instance.status != Status.IDLE:
            stop_fields.update(status=Status.STOPPED, status_changed_at=when, next_retry_at=None, last_reason="stopped")
        fenced.update(**stop_fields)
        return None
    breaker_row = getattr(instance, "breaker", None)
    decision = before_attempt(
        attempt_fields(instance, breaker_row), breaker_from_row(breaker_row), now, policies, probe=probe
    )
    if decision.verdict is attempts.Verdict.NEVER:
        return None
    if decision.transition is not None and breaker_row is not None:
        # Fenced like the row: a claim that lost a race to a newer epoch
        # neither moves the breaker nor records its transition.
        moved = CircuitBreaker.objects.filter(pk=breaker_row.pk, instance__lease_epoch__lt=epoch).update(
            **breaker_fields(decision.breaker)
        )
        if not moved:
            return None
        events.append(
            ConnectionEvent(
                instance_id=instance.id,
                at=when,
                kind=BREAKER_EVENT[decision.transition],
                actor=actor,
                epoch=epoch,
                message="cooldown ended: one trial attempt",
            )
        )
    if not decision.attempt:
        fenced.update(lease_epoch=epoch)
        return None
    updated = fenced.update(
        lease_epoch=epoch,
        owner=worker_id,
        status=Status.CONNECTING,
        status_changed_at=when,
        next_retry_at=None,
        force_retry=False,
    )
    if updated != 1:
        return None
    if instance.status in attempts.LIVE:
        # Nobody stands behind the live status: its worker died (or lost
        # Redis), and this claim is the first to see it; the recovery job,
        # conditional on the old epoch, now writes nothing for it.
        events.append(
            ConnectionEvent(
                instance_id=instance.id,
                at=when,
                kind=EventKind.LOST,
                actor=actor,
                epoch=instance.lease_epoch,
                message=f"lease vanished: {instance.owner or 'its worker'} gone",
            )
        )
    events.append(
        ConnectionEvent(
            instance_id=instance.id,
            at=when,
            kind=EventKind.ATTEMPT,
            actor=actor,
            epoch=epoch,
            message="forced retry" if decision.forced else "gateway probe" if probe else "",
            data={"retry_count": instance.retry_count, "breaker": str(decision.breaker.state)},
        )
    )
    return Claim(
        instance_id=instance.id,
        key=str(instance.key),
        url=instance.socket_url,
        token=instance.token,
        retry_count=instance.retry_count,
        breaker=decision.breaker,
        paired=instance.paired,
        forced=decision.forced,
        gateway_id=instance.gateway_id,
        probe=probe,
    )


def rebind_epoch(instance_id: int, old_epoch: int, new_epoch: int, status: str, worker_id: str) -> bool:
    """Move a held instance to a re-acquired lease (after Redis lost it),
    restating the live session's status in case a recovery job, seeing the
    lease gone meanwhile, marked it lost."""
    return (
        Instance.objects.filter(id=instance_id, lease_epoch=old_epoch).update(
            lease_epoch=new_epoch, status=status, owner=worker_id
        )
        == 1
    )


# -- fenced writes, batched -----------------------------------------------------


@dataclass
class Batch:
    """Writes collected by the worker and applied together, in order."""

    states: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    breakers: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    events: list[ConnectionEvent] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.states or self.breakers or self.events)

    def __len__(self) -> int:
        return len(self.states) + len(self.breakers) + len(self.events)

    def state(self, instance_id: int, epoch: int, **fields: Any) -> None:
        self.states.setdefault((instance_id, epoch), {}).update(fields)

    def breaker(self, instance_id: int, epoch: int, breaker: Breaker) -> None:
        self.breakers[(instance_id, epoch)] = breaker_fields(breaker)

    def event(self, instance_id: int, kind: str, *, epoch: int | None, actor: str, **fields: Any) -> None:
        self.events.append(
            ConnectionEvent(instance_id=instance_id, kind=kind, epoch=epoch, actor=actor, at=timezone.now(), **fields)
        )

    def merge_newer(self, newer: Batch) -> Batch:
        """This batch (which failed to apply) followed by ``newer``."""
        for event in self.events:
            # A rolled-back insert may have set primary keys: insert afresh.
            event.pk = None
            event._state.adding = True
        merged = Batch(states=dict(self.states), breakers=dict(self.breakers), events=self.events + newer.events)
        for key, fields in newer.states.items():
            merged.states.setdefault(key, {}).update(fields)
        merged.breakers.update(newer.breakers)
        return merged


def apply(batch: Batch) -> int:
    """Apply a batch in one transaction; returns how many state rows matched."""
    matched = 0
    with transaction.atomic():
        for (instance_id, epoch), fields in batch.states.items():
            matched += Instance.objects.filter(id=instance_id, lease_epoch=epoch).update(**fields)
        for (instance_id, epoch), fields in batch.breakers.items():
            CircuitBreaker.objects.filter(instance_id=instance_id, instance__lease_epoch=epoch).update(**fields)
        if batch.events:
            existing = set(
                Instance.objects.filter(id__in={e.instance_id for e in batch.events}).values_list("id", flat=True)
            )
            ConnectionEvent.objects.bulk_create([e for e in batch.events if e.instance_id in existing])
    return matched


# -- heartbeat -------------------------------------------------------------------


def running_ids() -> set[int]:
    """Every instance that should run: what placement spreads over the workers."""
    return set(Instance.objects.filter(desired_state=DesiredState.RUNNING).values_list("id", flat=True))


def left_behind(workers: list[str]) -> list[int]:
    """Running instances whose row still names one of ``workers`` (gone from
    the membership) as the owner of a live session."""
    return list(
        Instance.objects.filter(
            desired_state=DesiredState.RUNNING, owner__in=workers, status__in=sorted(attempts.LIVE)
        ).values_list("id", flat=True)
    )


def heartbeat(
    worker_id: str,
    host: str,
    pid: int,
    sessions_held: int,
    last_progress: float | None,
    *,
    stopped: bool = False,
    capacity: int = 0,
) -> None:
    now = timezone.now()
    fields: dict[str, Any] = {
        "host": host,
        "pid": pid,
        "last_seen": now,
        "sessions_held": sessions_held,
        "capacity": capacity,
        "last_progress_at": to_dt(last_progress),
        "stopped_at": now if stopped else None,
    }
    updated = WorkerHeartbeat.objects.filter(worker_id=worker_id).update(**fields)
    if not updated:
        WorkerHeartbeat.objects.create(worker_id=worker_id, started_at=now, **fields)


# -- gateway outages (instances.outages) -------------------------------------------


def gateway_down(
    gateway_id: int,
    *,
    reason: str,
    now: float,
    actor: str,
    failing: int,
    running: int,
    policy: outages.OutagePolicy,
) -> tuple[bool, list[int]]:
    """Record the gateway down and raise its one ``gateway_down`` alert, in one
    transaction; returns whether this caller recorded it and the alert's deliveries."""
    with transaction.atomic():
        if not outages.mark_down(
            gateway_id, reason=reason, now=now, actor=actor, failing=failing, running=running, policy=policy
        ):
            return False, []
        name = Gateway.objects.filter(id=gateway_id).values_list("name", flat=True).first() or str(gateway_id)
        _alert, ids = alerts.raise_alert(
            AlertKind.GATEWAY_DOWN,
            FIRING,
            f"gateway {name} down: {failing} of {running} running instances failed ({reason or 'unreachable'}), "
            "none answered; its instances wait for its probe",
            {"gateway": {"id": gateway_id, "name": name}, "reason": reason, "failing": failing, "running": running},
            now=to_dt(now),
        )
    return True, ids


def gateway_up(
    gateway_id: int, *, now: float, actor: str, policy: outages.OutagePolicy
) -> tuple[outages.Release | None, list[int]]:
    """Record the gateway up, release its instances and raise its one
    ``gateway_up`` alert, in one transaction."""
    with transaction.atomic():
        release = outages.mark_up(gateway_id, now=now, actor=actor, policy=policy)
        if release is None:
            return None, []
        name = Gateway.objects.filter(id=gateway_id).values_list("name", flat=True).first() or str(gateway_id)
        _alert, ids = alerts.raise_alert(
            AlertKind.GATEWAY_UP,
            RESOLVED,
            f"gateway {name} up again after {release.down_s:.0f}s: {len(release.released)} instances reconnecting "
            f"at {policy.connect_rate:g} per second",
            {
                "gateway": {"id": gateway_id, "name": name},
                "down_s": round(release.down_s, 3),
                "released": len(release.released),
                "breakers_closed": release.breakers_closed,
            },
            now=to_dt(now),
        )
    return release, ids


def probe_candidates(gateway_id: int, limit: int = 5) -> list[Row]:
    """Waiting instances of the gateway to probe it with, closed breakers first, in random order."""
    open_breaker = Case(When(breaker__state=breakers.State.OPEN, then=Value(1)), default=Value(0))
    waiting = list(
        Instance.objects.filter(
            gateway_id=gateway_id, desired_state=DesiredState.RUNNING, status__in=sorted(attempts.WAITING)
        )
        .order_by(open_breaker, "?")
        .values_list("id", flat=True)[:limit]
    )
    return load_rows(waiting)

"""The worker's database side: claims and writes fenced by the lease epoch.

A row's ``lease_epoch`` names the lease acquisition that last wrote it. A
claim moves it forward, and every later write about the instance is
conditional on it, so a worker whose lease was taken over writes nothing a
newer owner would see. Each test below pairs a write that must land with one
that must not, on rows built directly in the test database; its docstring
says which assertion breaks if the fencing is taken away.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.db import transaction

from engine.store import Batch, apply, claim_many, heartbeat, load_rows, rebind_epoch
from instances.breaker import Breaker, State
from instances.decisions import Policies
from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Gateway,
    Instance,
    Status,
    Tenant,
    WorkerHeartbeat,
)

T0 = 1_700_000_000.0
POLICIES = Policies()
# Fields a stale write must leave as the newer owner wrote them.
STATE_FIELDS = (
    "lease_epoch",
    "owner",
    "status",
    "status_changed_at",
    "retry_count",
    "next_retry_at",
    "force_retry",
    "last_reason",
    "last_message",
)

MakeInstance = Callable[..., Instance]


def _dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _state(instance: Instance) -> dict[str, Any]:
    return Instance.objects.filter(pk=instance.pk).values(*STATE_FIELDS).get()


def _breaker(instance: Instance) -> dict[str, Any]:
    return (
        CircuitBreaker.objects.filter(instance=instance)
        .values("state", "failures", "opened_at", "cooldown_until", "trip_count")
        .get()
    )


def _events(instance: Instance) -> set[tuple[str, int | None, str]]:
    return set(ConnectionEvent.objects.filter(instance=instance).values_list("kind", "epoch", "actor"))


@pytest.fixture
def make_instance(db: None) -> MakeInstance:
    """Builds an instance that should be running (with its closed breaker
    row), then sets ``fields`` on it as if earlier owners had written them."""
    tenant = Tenant.objects.create(slug="store", name="Store")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")

    def build(name: str, **fields: Any) -> Instance:
        instance = Instance.objects.create(
            tenant=tenant, gateway=gateway, name=name, desired_state=DesiredState.RUNNING
        )
        Instance.objects.filter(pk=instance.pk).update(**fields)
        instance.refresh_from_db()
        return instance

    return build


# -- claims ------------------------------------------------------------------------


def test_a_claim_takes_a_free_instance_under_the_leases_epoch(make_instance: MakeInstance) -> None:
    """Without fencing the instance held under epoch 8 would be claimed
    under 3 too: the set of claims, its owner and its events would break."""
    free = make_instance("free")
    held = make_instance("held", lease_epoch=8, owner="w-new", status=Status.CONNECTED)
    before = _state(held)

    claims = claim_many({free.id: 5, held.id: 3}, "w-a", T0, POLICIES)

    assert set(claims) == {free.id}
    claim = claims[free.id]
    assert (claim.key, claim.url, claim.token) == (str(free.key), free.socket_url, free.token)
    assert (claim.retry_count, claim.forced, claim.paired) == (0, False, False)
    assert claim.breaker.state is State.CLOSED
    row = _state(free)
    assert row["lease_epoch"] == 5
    assert row["owner"] == "w-a"
    assert row["status"] == Status.CONNECTING
    assert row["status_changed_at"] == _dt(T0)
    assert row["next_retry_at"] is None
    assert _events(free) == {(EventKind.ATTEMPT, 5, "worker:w-a")}
    assert [(r.id, r.lease_epoch, r.status) for r in load_rows([free.id])] == [(free.id, 5, Status.CONNECTING)]

    assert _state(held) == before
    assert _events(held) == set()


@pytest.mark.parametrize("desired", [DesiredState.RUNNING, DesiredState.STOPPED])
@pytest.mark.parametrize("epoch", [7, 6], ids=["same-epoch", "older-epoch"])
def test_a_claim_not_newer_than_the_rows_epoch_writes_nothing(
    make_instance: MakeInstance, epoch: int, desired: str
) -> None:
    """The row (epoch 7) has a force retry pending, and its breaker's
    cooldown is over: a claim would mark it connecting, or stopped when
    stopped is desired, and move the breaker to half-open. Without fencing
    the first claim returns a claim or changes the row, the breaker or the
    events."""
    instance = make_instance(
        "held",
        desired_state=desired,
        lease_epoch=7,
        owner="w-new",
        status=Status.CIRCUIT_OPEN,
        force_retry=True,
        last_reason="timed_out",
    )
    CircuitBreaker.objects.filter(instance=instance).update(
        state=BreakerState.OPEN, opened_at=_dt(T0 - 700), cooldown_until=_dt(T0 - 100), trip_count=1
    )
    state, breaker = _state(instance), _breaker(instance)

    assert claim_many({instance.id: epoch}, "w-old", T0, POLICIES) == {}

    assert _state(instance) == state
    assert _breaker(instance) == breaker
    assert _events(instance) == set()

    # The same claim under a newer epoch does write: the row was claimable.
    claims = claim_many({instance.id: 8}, "w-a", T0, POLICIES)
    assert _state(instance)["lease_epoch"] == 8
    if desired == DesiredState.RUNNING:
        assert set(claims) == {instance.id}
        assert _state(instance)["status"] == Status.CONNECTING
        assert _breaker(instance)["state"] == BreakerState.HALF_OPEN
        assert _events(instance) == {
            (EventKind.BREAKER_HALF_OPEN, 8, "worker:w-a"),
            (EventKind.ATTEMPT, 8, "worker:w-a"),
        }
    else:
        assert claims == {}
        assert _state(instance)["status"] == Status.STOPPED
        assert _breaker(instance) == breaker


# -- batched writes ----------------------------------------------------------------


def test_apply_writes_only_under_the_rows_current_epoch(make_instance: MakeInstance) -> None:
    """The stale writes come after the current ones in the batch: without
    fencing they would win, and the status, owner, retry count and breaker
    assertions would break (and ``apply`` would count two rows)."""
    instance = make_instance("held", lease_epoch=9, owner="w-new", status=Status.CONNECTED)
    state = _state(instance)
    batch = Batch()
    batch.state(instance.id, 9, last_message="ready again")
    batch.state(
        instance.id,
        5,
        owner="w-old",
        status=Status.BACKING_OFF,
        retry_count=4,
        next_retry_at=_dt(T0 + 15),
        last_reason="timed_out",
        last_message="stale",
    )
    batch.breaker(instance.id, 9, Breaker(failures=(T0 - 30,)))
    batch.breaker(
        instance.id,
        5,
        Breaker(state=State.OPEN, failures=(T0,) * 10, opened_at=T0, cooldown_until=T0 + 600, trip_count=1),
    )
    batch.event(instance.id, EventKind.READY, epoch=9, actor="worker:w-new")
    batch.event(instance.id, EventKind.DISCONNECT, epoch=5, actor="worker:w-old", reason="timed_out")

    assert apply(batch) == 1

    assert _state(instance) == {**state, "last_message": "ready again"}
    breaker = _breaker(instance)
    assert breaker["state"] == BreakerState.CLOSED
    assert breaker["failures"] == [T0 - 30]
    assert (breaker["opened_at"], breaker["cooldown_until"], breaker["trip_count"]) == (None, None, 0)
    # Events are history, not state: the stale owner's are kept too, each
    # marked with the epoch it was written under, so the log says who saw what.
    assert _events(instance) == {
        (EventKind.READY, 9, "worker:w-new"),
        (EventKind.DISCONNECT, 5, "worker:w-old"),
    }


class _RolledBack(Exception):
    """Ends a transaction the way a database error would."""


def test_merge_newer_keeps_the_newer_value_and_stays_fenced(make_instance: MakeInstance) -> None:
    """A batch that failed to apply is merged with what came after it and
    applied later. Instance ``taken`` changed owner meanwhile: without
    fencing its status and owner assertions would break."""
    mine = make_instance("mine", lease_epoch=5, owner="w-a", status=Status.CONNECTED)
    taken = make_instance("taken", lease_epoch=6, owner="w-a", status=Status.CONNECTED)

    failed = Batch()
    failed.state(mine.id, 5, status=Status.BACKING_OFF, retry_count=1, last_message="first")
    failed.state(taken.id, 6, status=Status.BACKING_OFF, last_message="lost")
    failed.event(mine.id, EventKind.DISCONNECT, epoch=5, actor="worker:w-a")
    with pytest.raises(_RolledBack), transaction.atomic():
        apply(failed)
        raise _RolledBack
    assert _state(mine)["status"] == Status.CONNECTED
    # While the database was away for this worker, another one took
    # ``taken``, and a command wrote an event under the id the rolled-back
    # insert had handed out.
    Instance.objects.filter(pk=taken.pk).update(lease_epoch=9, owner="w-new")
    taken_state = _state(taken)
    stale_pk = failed.events[0].pk
    assert stale_pk is not None
    ConnectionEvent.objects.create(pk=stale_pk, instance=mine, kind=EventKind.FORCE_RETRY, actor="user:op")

    newer = Batch()
    newer.state(mine.id, 5, status=Status.CONNECTING, last_message="second")
    newer.event(mine.id, EventKind.ATTEMPT, epoch=5, actor="worker:w-a")
    merged = failed.merge_newer(newer)

    assert merged.states == {
        (mine.id, 5): {"status": Status.CONNECTING, "retry_count": 1, "last_message": "second"},
        (taken.id, 6): {"status": Status.BACKING_OFF, "last_message": "lost"},
    }
    assert [e.kind for e in merged.events] == [EventKind.DISCONNECT, EventKind.ATTEMPT]
    assert apply(merged) == 1
    row = _state(mine)
    assert (row["status"], row["retry_count"], row["last_message"]) == (Status.CONNECTING, 1, "second")
    assert _state(taken) == taken_state
    assert _events(mine) == {
        (EventKind.FORCE_RETRY, None, "user:op"),
        (EventKind.DISCONNECT, 5, "worker:w-a"),
        (EventKind.ATTEMPT, 5, "worker:w-a"),
    }


def test_rebind_moves_the_row_only_from_the_epoch_it_still_holds(make_instance: MakeInstance) -> None:
    """The worker held both instances under epoch 5 and re-acquired their
    leases after Redis lost them; ``taken`` went to another worker first.
    Without fencing the rebind of ``taken`` would return True and overwrite
    the new owner."""
    kept = make_instance("kept", lease_epoch=5, owner="w-a", status=Status.DISCONNECTED, last_reason="lost")
    taken = make_instance("taken", lease_epoch=9, owner="w-new", status=Status.CONNECTING)
    taken_state = _state(taken)

    assert rebind_epoch(kept.id, 5, 12, Status.CONNECTED, "w-a") is True
    row = _state(kept)
    assert (row["lease_epoch"], row["status"], row["owner"]) == (12, Status.CONNECTED, "w-a")

    assert rebind_epoch(taken.id, 5, 13, Status.CONNECTED, "w-a") is False
    assert _state(taken) == taken_state
    # The old epoch is spent: rebinding from it again changes nothing.
    assert rebind_epoch(kept.id, 5, 14, Status.AWAITING_QR, "w-a") is False
    assert _state(kept) == row


# -- heartbeat ---------------------------------------------------------------------


def test_heartbeat_rows_are_written_refreshed_and_marked_stopped(db: None) -> None:
    """Heartbeats carry no epoch (one row per worker id, written only by
    that worker): this test guards the row's life instead, and breaks if a
    beat inserted a second row, lost ``started_at`` or left ``stopped_at``."""
    start = _dt(T0)
    with time_machine.travel(start, tick=False):
        heartbeat("w-a", "host-1", 4242, 3, T0 - 5)
        heartbeat("w-b", "host-2", 4343, 1, None)
    with time_machine.travel(start + dt.timedelta(seconds=5), tick=False):
        heartbeat("w-a", "host-1", 4242, 7, T0 + 4)
    row = WorkerHeartbeat.objects.get(worker_id="w-a")
    assert (row.host, row.pid, row.sessions_held) == ("host-1", 4242, 7)
    assert row.started_at == start
    assert row.last_seen == start + dt.timedelta(seconds=5)
    assert row.last_progress_at == _dt(T0 + 4)
    assert row.stopped_at is None

    with time_machine.travel(start + dt.timedelta(seconds=9), tick=False):
        heartbeat("w-a", "host-1", 4242, 0, T0 + 4, stopped=True)
    row.refresh_from_db()
    assert row.sessions_held == 0
    assert row.started_at == start
    assert row.stopped_at == row.last_seen == start + dt.timedelta(seconds=9)

    other = WorkerHeartbeat.objects.get(worker_id="w-b")
    assert (other.sessions_held, other.last_progress_at, other.stopped_at) == (1, None, None)
    assert WorkerHeartbeat.objects.count() == 2

"""Scale-out: every live worker holds its share; joins and leaves hand off.

Real processes: three (then four) connection workers, Celery with beat, the
real Redis and database, the simulator. Shares are checked against the
placement every worker computes (instances.placement, tested on its own for
evenness), and the simulator says whether an instance ever had two sessions
and how many times each message arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models import Count

from campaigns.models import Message, MessageStatus
from instances import placement
from instances.models import ConnectionEvent, EventKind, Gateway, Instance, Status, Tenant, WorkerHeartbeat
from tests.fixtures.engine import Engine
from tests.fixtures.platform import Platform, Process, wait_until

COUNT = 120
CAPACITY = 20_000


@pytest.fixture
def cluster(platform: Platform, gateway_sim: Any) -> Iterator[Engine]:
    gateway = Gateway.objects.create(name="simulator", url=gateway_sim.url)
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    eng = Engine(platform=platform, sim=gateway_sim, gateway=gateway, tenant=tenant)
    # All four start at once; each is waited for as start_worker() would.
    starting = [platform.launch_worker(name) for name in ("one", "two", "three")]
    celery = platform.launch_celery()
    eng.workers.extend(worker.wait() for worker in starting)
    eng.celery = celery.wait()
    yield eng
    eng.assert_worker_clean()


def _held(instances: list[Instance]) -> dict[str, int]:
    rows = (
        Instance.objects.filter(pk__in=[i.pk for i in instances], status=Status.CONNECTED)
        .values_list("owner")
        .annotate(n=Count("id"))
    )
    return dict(rows.values_list("owner", "n"))


def _expected(instances: list[Instance], workers: list[Process]) -> dict[str, int]:
    live = {w.name: CAPACITY for w in workers if w.alive()}
    return placement.shares(placement.assign([i.pk for i in instances], live))


def _wait_shares(engine: Engine, instances: list[Instance], timeout: float) -> dict[str, int]:
    expected = _expected(instances, engine.workers)
    wait_until(
        lambda: _held(instances) == expected,
        timeout=timeout,
        interval=0.5,
        message=f"shares {expected} (held {_held(instances)})\n{engine.platform.logs()[-3000:]}",
    )
    return expected


def _max_concurrent(engine: Engine, instances: list[Instance]) -> set[int]:
    stats = engine.sim.control.stats()["instances"]
    return {stats[str(i.key)]["max_concurrent"] for i in instances}


def _queue(engine: Engine, instances: list[Instance]) -> list[Message]:
    Message.objects.bulk_create(
        Message(tenant=engine.tenant, instance=instance, to=f"+1555{n:07d}", text=f"moving {n}")
        for n, instance in enumerate(instances)
    )
    return list(Message.objects.filter(tenant=engine.tenant))


@pytest.mark.parametrize("gateway_sim", [("--start-paired", "--receipt-delay", "0")], indirect=True, ids=["paired"])
def test_workers_hold_even_shares_and_a_joining_worker_takes_its_share_with_messages_sent_once(
    cluster: Engine,
) -> None:
    engine = cluster
    instances = engine.create_many(COUNT)
    engine.wait_all(instances, Status.CONNECTED, timeout=120)
    shares = _wait_shares(engine, instances, timeout=60)
    assert len(shares) == 3
    assert all(abs(n - COUNT / 3) <= 0.1 * COUNT / 3 for n in shares.values()), shares

    # A fourth worker joins while every instance has a message on its way.
    messages = _queue(engine, instances)
    engine.workers.append(engine.platform.start_worker("four"))
    from instances import hints

    hints.send([i.pk for i in instances])
    shares = _wait_shares(engine, instances, timeout=90)
    assert len(shares) == 4
    engine.wait_all(instances, Status.CONNECTED, timeout=60)
    assert _max_concurrent(engine, instances) == {1}

    wait_until(
        lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status=MessageStatus.READ).count()
        == len(messages),
        timeout=120,
        message="every message read",
    )
    deliveries = engine.sim.control.stats()["deliveries"]
    assert sorted(deliveries.values()) == [1] * len(messages)


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_a_worker_stopped_or_killed_leaves_its_instances_spread_over_the_others(cluster: Engine) -> None:
    engine = cluster
    instances = engine.create_many(COUNT)
    engine.wait_all(instances, Status.CONNECTED, timeout=120)
    _wait_shares(engine, instances, timeout=60)

    # SIGTERM: its instances go to the two that remain, placed between them.
    engine.workers[0].terminate()
    shares = _wait_shares(engine, instances, timeout=30)
    assert len(shares) == 2

    # kill -9: the last one takes them once the leases expire, by itself:
    # beat is stopped first, so no recovery job can be what reconnects them.
    assert engine.celery is not None
    engine.celery.terminate()
    killed, survivor = engine.workers[1].name, engine.workers[2].name
    orphans = set(Instance.objects.filter(pk__in=[i.pk for i in instances], owner=killed).values_list("pk", flat=True))
    assert orphans
    engine.workers[1].kill()
    shares = _wait_shares(engine, instances, timeout=30)
    assert shares == {survivor: COUNT}
    assert _max_concurrent(engine, instances) == {1}
    # Each of the killed worker's sessions is recorded lost once, by the
    # worker that took it over.
    lost = ConnectionEvent.objects.filter(instance_id__in=orphans, kind=EventKind.LOST)
    assert sorted(lost.values_list("instance_id", flat=True)) == sorted(orphans)
    assert set(lost.values_list("actor", flat=True)) == {f"worker:{survivor}"}


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_a_worker_never_holds_more_than_its_capacity_and_the_rest_wait_for_room(
    platform: Platform, gateway_sim: Any
) -> None:
    gateway = Gateway.objects.create(name="simulator", url=gateway_sim.url)
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    engine = Engine(platform=platform, sim=gateway_sim, gateway=gateway, tenant=tenant)
    small, celery = platform.launch_worker("small", BLAST_WORKER_CAPACITY="10"), platform.launch_celery()
    engine.workers.append(small.wait())
    engine.celery = celery.wait()
    instances = engine.create_many(15)
    wait_until(lambda: sum(_held(instances).values()) == 10, timeout=60, message="ten sessions held")
    # Recovery jobs keep hinting the other five: still ten, never more.
    held_at = WorkerHeartbeat.objects.get(worker_id=engine.workers[0].name)
    wait_until(
        lambda: WorkerHeartbeat.objects.get(pk=held_at.pk).last_seen > held_at.last_seen,
        timeout=30,
        message="a heartbeat after the ten",
    )
    assert _held(instances) == {engine.workers[0].name: 10}
    assert WorkerHeartbeat.objects.get(pk=held_at.pk).capacity == 10

    # Room arrives with a second worker: every instance connects.
    engine.workers.append(platform.start_worker("more", BLAST_WORKER_CAPACITY="10"))
    engine.wait_all(instances, Status.CONNECTED, timeout=60)
    assert all(n <= 10 for n in _held(instances).values())
    assert _max_concurrent(engine, instances) == {1}
    engine.assert_worker_clean()

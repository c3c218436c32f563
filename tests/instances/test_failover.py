"""Two workers, 200 instances: a killed worker's instances move to the other,
and no instance ever has two sessions at the gateway.
"""

from __future__ import annotations

import time

from django.utils import timezone

from instances.models import BreakerState, CircuitBreaker, EventKind, Instance, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args

COUNT = 200


def _max_concurrent(engine: Engine, instances: list[Instance]) -> dict[str, int]:
    stats = engine.sim.control.stats()["instances"]
    return {str(i.key): stats[str(i.key)]["max_concurrent"] for i in instances}


@gateway_sim_args("--start-paired")
def test_kill_9_of_a_worker_moves_its_instances_to_the_other(engine: Engine) -> None:
    engine.workers.append(engine.platform.start_worker("second"))
    instances = engine.create_many(COUNT)
    engine.wait_all(instances, Status.CONNECTED, timeout=120)

    victim = engine.workers[0]
    owners = dict(Instance.objects.values_list("id", "owner"))
    orphaned = [i for i in instances if owners[i.pk] == victim.name]
    if not orphaned:  # the other worker took them all: kill that one instead
        victim = engine.workers[1]
        orphaned = [i for i in instances if owners[i.pk] == victim.name]
    assert orphaned, "one of the workers must own instances"
    survivor = next(w for w in engine.workers if w is not victim)

    killed_at = time.monotonic()
    killed_wall = timezone.now()
    victim.kill()
    ttl = float(engine.platform.env["BLAST_LEASE_TTL_S"])
    period = float(engine.platform.env["BLAST_RECOVERY_PERIOD_S"])

    def taken_over() -> bool:
        return Instance.objects.filter(
            pk__in=[i.pk for i in orphaned], owner=survivor.name, status=Status.CONNECTED
        ).count() == len(orphaned)

    wait_until(taken_over, timeout=60, interval=0.2, message="survivor owns every orphan")
    elapsed = time.monotonic() - killed_at
    # Every orphan's first attempt by the survivor came within lease TTL plus
    # one beat period (and a second for the beat job and the hint themselves).
    takeover = max(
        min(
            e.at
            for e in engine.events(i, EventKind.ATTEMPT)
            if e.actor == f"worker:{survivor.name}" and e.at > killed_wall
        )
        for i in orphaned
    )
    delay = (takeover - killed_wall).total_seconds()
    print(f"{len(orphaned)} orphans: last takeover attempt {delay:.2f}s after kill -9; all connected {elapsed:.2f}s")
    assert delay <= ttl + period + 1.5, delay

    engine.wait_all(instances, Status.CONNECTED)
    assert set(_max_concurrent(engine, instances).values()) == {1}
    # A lost worker is not a failure of the instance.
    assert not CircuitBreaker.objects.exclude(failures=[]).exists()


@gateway_sim_args("--start-paired")
def test_a_gateway_restart_with_200_sessions_heals_without_breakers_or_doubles(engine: Engine) -> None:
    instances = engine.create_many(COUNT)
    engine.wait_all(instances, Status.CONNECTED, timeout=120)
    engine.sim.control.restart()
    stats = engine.sim.control.stats()["instances"]

    def reconnected() -> bool:
        current = engine.sim.control.stats()["instances"]
        return all(current[str(i.key)]["connects"] >= 2 for i in instances)

    wait_until(reconnected, timeout=60, interval=0.25, message="every instance reconnected")
    engine.wait_all(instances, Status.CONNECTED, timeout=60)
    assert not CircuitBreaker.objects.exclude(state=BreakerState.CLOSED).exists()
    assert set(_max_concurrent(engine, instances).values()) == {1}
    assert all(stats[str(i.key)]["connects"] == 1 for i in instances)

"""A force retry on an instance whose session is live is answered by its owner.

The session is already up (or being opened), so there is nothing to attempt:
the owner clears the flag. A flag left set would wait for the next drop and
then make an attempt past an open breaker; these tests prove it never does.

Real parts: the simulator and a connection worker as their own processes,
Celery with beat running the recovery jobs, Redis and the test database.
"""

from __future__ import annotations

from instances import commands, hints
from instances.models import BreakerState, EventKind, Instance, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args


def _force_flag(instance: Instance) -> bool:
    return Instance.objects.values_list("force_retry", flat=True).get(pk=instance.pk)


def _owner_has_seen(engine: Engine, instance: Instance, probe_status: str = Status.CONNECTED) -> None:
    """Return once the owner has reconciled ``instance`` after this call: a
    probe named in the same hint must reach ``probe_status``, and the worker
    reconciles held instances before it starts new ones."""
    probe = engine.create("probe", connect=False)
    commands.connect(probe, actor="test")
    hints.send([instance.pk, probe.pk])
    engine.wait_status(probe, probe_status)


@gateway_sim_args("--start-paired")
def test_a_force_retry_while_connected_is_cleared_and_never_bypasses_a_later_open_breaker(engine: Engine) -> None:
    instance = engine.create("held", connect=False)
    key = str(instance.key)
    # Nine refusals, then the gateway lets it in: the breaker is closed but
    # holds nine failures inside its window.
    engine.sim.control.set_fault("refuse", instance=key, status=503, count=9)
    commands.connect(instance, actor="test")
    engine.wait_status(instance, Status.CONNECTED, timeout=60)
    instance.breaker.refresh_from_db()
    assert (instance.breaker.state, len(instance.breaker.failures)) == (BreakerState.CLOSED, 9)
    attempts_before = len(engine.events(instance, EventKind.ATTEMPT))

    commands.force_retry(instance, actor="operator:alice")
    _owner_has_seen(engine, instance)
    # Nothing was attempted: the session was up.
    assert len(engine.events(instance, EventKind.ATTEMPT)) == attempts_before
    assert engine.sim_stats(instance)["connects"] == 1

    # The gateway starts refusing and drops the session within the flap
    # window: the tenth failure opens the breaker.
    after = engine.last_event_id()
    engine.sim.control.set_fault("refuse", instance=key, status=503)
    engine.sim.control.close(key, 4503)
    opened = engine.wait_event(instance, EventKind.BREAKER_OPENED, after=after, timeout=30)
    assert opened.data["trip_count"] == 1
    # The cooldown ends, the one trial is refused, the breaker opens again.
    reopened = engine.wait_event(instance, EventKind.BREAKER_OPENED, after=opened.id, timeout=30)
    assert reopened.data["trip_count"] == 2

    between = [e for e in engine.events(instance, EventKind.ATTEMPT) if opened.id < e.id < reopened.id]
    assert [e.message for e in between] == [""], "one trial after the cooldown, nothing forced while open"
    half_open = engine.wait_event(instance, EventKind.BREAKER_HALF_OPEN, after=opened.id)
    assert half_open.id < between[0].id
    assert _force_flag(instance) is False
    assert engine.status(instance) == Status.CIRCUIT_OPEN


@gateway_sim_args("--auto-pair-after", "0")
def test_a_force_retry_while_awaiting_a_qr_scan_is_cleared_without_an_attempt(engine: Engine) -> None:
    instance = engine.create("pairing")
    engine.wait_status(instance, Status.AWAITING_QR)

    commands.force_retry(instance, actor="operator:alice")
    _owner_has_seen(engine, instance, Status.AWAITING_QR)
    wait_until(lambda: not _force_flag(instance), message="force retry flag cleared by the owner")
    # The session under way is the attempt: the QR scan completes it.
    engine.sim.control.pair(str(instance.key))
    engine.wait_status(instance, Status.CONNECTED)
    assert len(engine.events(instance, EventKind.ATTEMPT)) == 1
    assert engine.sim_stats(instance)["connects"] == 1

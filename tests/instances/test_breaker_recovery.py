"""The breaker opens after ten failures in the window and heals by itself.

Short settings instead of the real minutes: a 3 s cooldown; the threshold
stays the seed's 10. Celery beat runs the real recovery jobs.
"""

from __future__ import annotations

from instances import commands
from instances.models import BreakerState, EventKind, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args


def _breaker_state(engine: Engine, instance) -> str:
    instance.breaker.refresh_from_db()
    return instance.breaker.state


@gateway_sim_args("--start-paired")
def test_it_opens_after_ten_failures_and_recovers_through_half_open(engine: Engine) -> None:
    instance = engine.create("flaky", connect=False)
    engine.sim.control.set_fault("refuse", instance=str(instance.key), status=503)
    commands.connect(instance, actor="test")

    instance = engine.wait_status(instance, Status.CIRCUIT_OPEN, timeout=90)
    assert _breaker_state(engine, instance) == BreakerState.OPEN
    failures = [e for e in engine.disconnects(instance) if e.data["failure"]]
    assert len(failures) == 10
    assert len(engine.events(instance, EventKind.BREAKER_OPENED)) == 1
    # While open no attempt is made: the simulator saw exactly ten.
    assert engine.sim_stats(instance)["refused"] == 10

    # The gateway heals; after the cooldown beat moves the breaker to
    # half-open, the one trial connects and closes it.
    engine.sim.control.clear_faults()
    half_open = engine.wait_event(instance, EventKind.BREAKER_HALF_OPEN, timeout=30)
    ready = engine.wait_event(instance, EventKind.READY, after=half_open.id, timeout=30)
    closed = engine.wait_event(instance, EventKind.BREAKER_CLOSED, after=half_open.id)
    assert closed.id > ready.id - 2
    wait_until(lambda: _breaker_state(engine, instance) == BreakerState.CLOSED, message="breaker closed")
    instance.breaker.refresh_from_db()
    assert instance.breaker.failures == []
    assert instance.breaker.trip_count == 1
    assert engine.status(instance) == Status.CONNECTED


@gateway_sim_args("--start-paired")
def test_a_failed_trial_opens_the_breaker_again(engine: Engine) -> None:
    instance = engine.create("still-down", connect=False)
    engine.sim.control.set_fault("refuse", instance=str(instance.key), status=503)
    commands.connect(instance, actor="test")
    engine.wait_status(instance, Status.CIRCUIT_OPEN, timeout=90)
    half_open = engine.wait_event(instance, EventKind.BREAKER_HALF_OPEN, timeout=30)
    reopened = engine.wait_event(instance, EventKind.BREAKER_OPENED, after=half_open.id, timeout=30)
    assert reopened.data["trip_count"] == 2
    # One trial only: eleven refused attempts in all.
    assert engine.sim_stats(instance)["refused"] == 11


@gateway_sim_args("--start-paired")
def test_force_retry_makes_one_attempt_while_open_and_reset_closes_it(engine: Engine) -> None:
    instance = engine.create("manual", connect=False)
    engine.sim.control.set_fault("refuse", instance=str(instance.key), status=503)
    commands.connect(instance, actor="test")
    engine.wait_status(instance, Status.CIRCUIT_OPEN, timeout=90)
    refused = engine.sim_stats(instance)["refused"]

    after = engine.last_event_id()
    commands.force_retry(instance, actor="operator:alice")
    attempt = engine.wait_event(instance, EventKind.ATTEMPT, after=after)
    assert attempt.message == "forced retry"
    engine.wait_event(instance, EventKind.DISCONNECT, after=attempt.id)
    assert engine.sim_stats(instance)["refused"] == refused + 1
    assert engine.events(instance, EventKind.FORCE_RETRY)[-1].actor == "operator:alice"

    engine.sim.control.clear_faults()
    commands.reset_breaker(instance, actor="operator:alice")
    engine.wait_status(instance, Status.CONNECTED, timeout=30)
    assert _breaker_state(engine, instance) == BreakerState.CLOSED

"""The breaker opens after ten failures in the window and heals by itself.

Short settings instead of the real minutes: a 3 s cooldown and a 4 s flap
window; the threshold stays the seed's 10. Celery beat runs the real
recovery jobs. A trial succeeds only once its session has stayed ready for
the flap window: one that drops sooner opens the breaker again, so a
flapping number gets one attempt per cooldown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from instances import commands
from instances.models import BreakerState, EventKind, Status
from tests.fixtures.engine import Engine, run_engine
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.simulator import gateway_sim_args

FLAP_S = 4


@pytest.fixture
def engine(platform: Platform, gateway_sim: Any) -> Iterator[Engine]:
    platform.env["BLAST_FLAP_WINDOW_S"] = str(FLAP_S)
    yield from run_engine(platform, gateway_sim)


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
    # Ready is not enough: the trial closes the breaker a flap window later.
    closed = engine.wait_event(instance, EventKind.BREAKER_CLOSED, after=ready.id)
    assert closed.at - ready.at >= dt.timedelta(seconds=FLAP_S - 0.5)
    assert closed.message == f"trial succeeded: ready for {FLAP_S} s"
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
def test_a_trial_that_drops_inside_the_flap_window_opens_the_breaker_again(engine: Engine) -> None:
    """A flapping number: it connects, reaches ready and drops a second
    later, every time. Each cooldown gives it one attempt, not ten."""
    instance = engine.create("flapping", connect=False)
    engine.sim.control.set_fault("refuse", instance=str(instance.key), status=503)
    commands.connect(instance, actor="test")
    engine.wait_status(instance, Status.CIRCUIT_OPEN, timeout=90)
    engine.sim.control.clear_faults()
    engine.sim.control.set_fault("close", instance=str(instance.key), after_s=1, code=1011)

    after = engine.last_event_id()
    for trip in (2, 3):
        half_open = engine.wait_event(instance, EventKind.BREAKER_HALF_OPEN, after=after, timeout=30)
        ready = engine.wait_event(instance, EventKind.READY, after=half_open.id, timeout=30)
        reopened = engine.wait_event(instance, EventKind.BREAKER_OPENED, after=ready.id, timeout=30)
        assert reopened.data["trip_count"] == trip
        # One attempt between the half-open and the reopening, and the breaker never closed.
        between = [e.kind for e in engine.events(instance) if half_open.id < e.id < reopened.id]
        assert between.count(EventKind.ATTEMPT) == 1, between
        assert EventKind.BREAKER_CLOSED not in between
        after = reopened.id
    assert not engine.events(instance, EventKind.BREAKER_CLOSED)
    instance.breaker.refresh_from_db()
    assert instance.breaker.state == BreakerState.OPEN


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

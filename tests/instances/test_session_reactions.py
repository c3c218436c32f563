"""Each close code and upgrade status of PROTOCOL.md leads to its reaction.

Real parts: the simulator as its own process, a real connection worker
process, Redis and the test database. Faults are injected through the
simulator's control API; reactions are read from the database the worker
writes and from what the simulator saw.
"""

from __future__ import annotations

import time

from django.utils import timezone

from instances import hints, recovery
from instances.models import EventKind, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args

PAIRED = gateway_sim_args("--start-paired")


def _close_and_read(engine: Engine, instance, code: int):
    after = engine.last_event_id()
    engine.sim.control.close(str(instance.key), code)
    return engine.wait_event(instance, EventKind.DISCONNECT, after=after)


@PAIRED
def test_each_transient_close_code_backs_off_and_reconnects(engine: Engine) -> None:
    instance = engine.create("transient")
    engine.wait_status(instance, Status.CONNECTED)
    expected = {
        1000: "connection_closed",
        1001: "connection_closed",
        4408: "timed_out",
        4428: "connection_closed",
        4503: "unavailable",
        4999: "connection_closed",  # any other 4xxx code is transient
    }
    for connects, (code, reason) in enumerate(expected.items(), start=2):
        event = _close_and_read(engine, instance, code)
        assert (code, event.reason) == (code, reason)
        assert event.data["failure"] is True  # dropped within 30 s of ready
        retry = engine.wait_event(instance, EventKind.RETRY_SCHEDULED, after=event.id)
        assert retry.data["delay_s"] > 0
        engine.wait_status(instance, Status.CONNECTED)
        wait_until(lambda c=connects: engine.sim_stats(instance)["connects"] == c, message=f"reconnect {code}")
    assert engine.sim_stats(instance)["max_concurrent"] == 1


@PAIRED
def test_restart_required_reconnects_at_once_and_is_not_a_failure(engine: Engine) -> None:
    instance = engine.create("restart")
    engine.wait_status(instance, Status.CONNECTED)
    event = _close_and_read(engine, instance, 4515)
    assert event.reason == "restart_required"
    assert event.data["failure"] is False
    engine.wait_event(instance, EventKind.READY, after=event.id)
    instance.refresh_from_db()
    assert instance.breaker.failures == []
    # Reconnected inside the worker: no retry was scheduled for it.
    assert not engine.events(instance, EventKind.RETRY_SCHEDULED)
    assert engine.sim_stats(instance)["connects"] == 2


@PAIRED
def test_bad_session_forgets_the_pairing_and_reconnects(engine: Engine) -> None:
    instance = engine.create("repair")
    engine.wait_status(instance, Status.CONNECTED)
    event = _close_and_read(engine, instance, 4500)
    assert event.reason == "bad_session"
    engine.wait_event(instance, EventKind.READY, after=event.id)
    assert engine.sim_stats(instance)["connects"] == 2


@PAIRED
def test_temporary_ban_pauses_for_the_ban_pause(engine: Engine) -> None:
    instance = engine.create("banned")
    engine.wait_status(instance, Status.CONNECTED)
    event = _close_and_read(engine, instance, 4402)
    assert event.reason == "temporarily_banned"
    instance = engine.wait_status(instance, Status.BACKING_OFF)
    assert instance.next_retry_at is not None
    assert (instance.next_retry_at - event.at).total_seconds() >= 3600 - 1


@PAIRED
def test_terminal_close_codes_stop_and_never_loop(engine: Engine) -> None:
    expected = {
        4401: (Status.LOGGED_OUT, "logged_out"),
        4403: (Status.FORBIDDEN, "forbidden"),
        4405: (Status.HALTED, "client_outdated"),
        4411: (Status.HALTED, "multidevice_mismatch"),
        4440: (Status.REPLACED, "replaced"),
    }
    instances = {code: engine.create(f"terminal-{code}") for code in expected}
    engine.wait_all(list(instances.values()), Status.CONNECTED)
    for code, instance in instances.items():
        engine.sim.control.close(str(instance.key), code)
    for code, instance in instances.items():
        status, reason = expected[code]
        instance = engine.wait_status(instance, status)
        assert instance.last_reason == reason
        assert instance.next_retry_at is None
    # Dispatch everything again, with a probe that must connect: once the
    # probe is connected the worker has handled the hint naming the others.
    recovery.dispatch_due_retries()
    probe = engine.create("probe")
    hints.send([*(i.pk for i in instances.values()), probe.pk])
    engine.wait_status(probe, Status.CONNECTED)
    for instance in instances.values():
        assert engine.sim_stats(instance)["connects"] == 1
    assert instances[4401].__class__.objects.get(pk=instances[4401].pk).paired is False


@PAIRED
def test_upgrade_refusals_follow_the_status_table(engine: Engine) -> None:
    cases = {
        401: (Status.HALTED, "unauthorized"),
        403: (Status.HALTED, "unauthorized"),
        404: (Status.HALTED, "not_found"),
        429: (Status.BACKING_OFF, "rate_limited"),
        503: (Status.BACKING_OFF, "unavailable"),
    }
    instances = {status: engine.create(f"refused-{status}", connect=False) for status in cases}
    for status, instance in instances.items():
        params = {"retry_after": 30} if status == 429 else {}
        engine.sim.control.set_fault("refuse", instance=str(instance.key), status=status, **params)
    started = timezone.now()
    for instance in instances.values():
        from instances import commands

        commands.connect(instance, actor="test")
    for status, instance in instances.items():
        observed, reason = cases[status]
        instance = engine.wait_status(instance, observed)
        assert (status, instance.last_reason) == (status, reason)
    rate_limited = instances[429].__class__.objects.get(pk=instances[429].pk)
    assert (rate_limited.next_retry_at - started).total_seconds() >= 30 - 1  # Retry-After is a floor


@PAIRED
def test_a_handshake_that_hangs_is_cut_at_the_open_timeout(engine: Engine) -> None:
    instance = engine.create("hangs", connect=False)
    engine.sim.control.set_fault("hang", instance=str(instance.key))
    from instances import commands

    commands.connect(instance, actor="test")
    attempt = engine.wait_event(instance, EventKind.ATTEMPT)
    event = engine.wait_event(instance, EventKind.DISCONNECT, after=attempt.id)
    assert event.reason == "timed_out"
    elapsed = (event.at - attempt.at).total_seconds()
    assert 1.8 <= elapsed < 8, elapsed  # BLAST_OPEN_TIMEOUT_S=2 in tests


@gateway_sim_args("--start-paired", "--heartbeat-s", "1")
def test_a_peer_that_stops_answering_pings_is_detected(engine: Engine) -> None:
    instance = engine.create("silent")
    engine.wait_status(instance, Status.CONNECTED)
    after = engine.last_event_id()
    engine.sim.control.set_fault("silent", instance=str(instance.key), count=1)
    event = engine.wait_event(instance, EventKind.DISCONNECT, after=after, timeout=20)
    assert event.reason == "connection_lost"
    engine.wait_event(instance, EventKind.READY, after=event.id)


@PAIRED
def test_malformed_frames_are_survived_and_counted(engine: Engine) -> None:
    instance = engine.create("malformed")
    engine.wait_status(instance, Status.CONNECTED)
    engine.sim.control.set_fault("malformed", instance=str(instance.key), count=3, interval_s=0)
    wait_until(lambda: len(engine.events(instance, EventKind.MALFORMED)) == 3, message="3 malformed events")
    assert engine.status(instance) == Status.CONNECTED
    assert engine.sim_stats(instance)["connects"] == 1

    # More than five within the window: the client closes with 1002.
    after = engine.last_event_id()
    engine.sim.control.set_fault("malformed", instance=str(instance.key), count=6, interval_s=0)
    event = engine.wait_event(instance, EventKind.DISCONNECT, after=after)
    assert event.reason == "protocol_error"
    engine.wait_event(instance, EventKind.READY, after=event.id)


@PAIRED
def test_a_disconnect_while_still_connecting_leaves_no_error(engine: Engine) -> None:
    from instances import commands

    instance = engine.create("cancelled", connect=False)
    engine.sim.control.set_fault("hang", instance=str(instance.key))
    commands.connect(instance, actor="test")
    engine.wait_event(instance, EventKind.ATTEMPT)
    assert engine.status(instance) == Status.CONNECTING
    commands.disconnect(instance, actor="test")
    instance = engine.wait_status(instance, Status.STOPPED)
    assert instance.last_reason == "stopped"
    # No late retry: the instance stays stopped after the recovery jobs run.
    recovery.dispatch_due_retries()
    probe = engine.create("probe")
    engine.wait_status(probe, Status.CONNECTED)
    assert engine.status(instance) == Status.STOPPED
    assert engine.workers[0].alive()


@PAIRED
def test_a_close_before_hello_is_transient(engine: Engine) -> None:
    instance = engine.create("early-close", connect=False)
    engine.sim.control.set_fault("close_before_hello", instance=str(instance.key), code=4503, count=1)
    from instances import commands

    commands.connect(instance, actor="test")
    event = engine.wait_event(instance, EventKind.DISCONNECT)
    assert event.reason == "unavailable"
    engine.wait_status(instance, Status.CONNECTED)


@PAIRED
def test_a_stopped_worker_closes_with_1001_and_releases_its_leases(engine: Engine) -> None:
    instances = [engine.create(f"drain-{n}") for n in range(5)]
    engine.wait_all(instances, Status.CONNECTED)
    client = engine.platform.redis()
    assert len(list(client.scan_iter(match=f"{engine.platform.prefix}:lease:*"))) == 5
    started = time.monotonic()
    assert engine.workers[0].terminate() == 0
    assert time.monotonic() - started < 15
    assert list(client.scan_iter(match=f"{engine.platform.prefix}:lease:*")) == []
    for instance in instances:
        assert engine.status(instance) == Status.DISCONNECTED
        assert engine.disconnects(instance)[-1].reason == "shutdown"
    closes = [line for line in engine.sim.log().splitlines() if "CLOSE" in line]
    assert len(closes) == 5 and all("code=1001" in line and "by=client" in line for line in closes), closes

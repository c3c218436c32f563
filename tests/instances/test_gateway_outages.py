"""A gateway outage is one event: detected across workers, probed once at a
time, healed at once when the gateway is back.

Real processes: two connection workers, Celery with beat, the real Redis and
database, the simulator (and, for the restart, a second simulator process on
the same port).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    EventKind,
    Gateway,
    GatewayEvent,
    GatewayEventKind,
    GatewayState,
    Instance,
    Status,
    Tenant,
)
from monitoring.models import Alert, AlertKind
from simulator.control import SimulatorControl
from tests.fixtures.engine import Engine
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.simulator import GatewaySim, python_executable, start_gateway_sim

COUNT = 30
# Outages are told from flaps by the flap window: sessions held past it, then
# dropped, are the gateway's outage. Probes back off up to 2 s here.
OUTAGE_POLICIES = {
    "BLAST_FLAP_WINDOW_S": "1",
    "BLAST_GATEWAY_DOWN_WINDOW_S": "20",
    "BLAST_GATEWAY_PROBE_MIN_S": "0.5",
    "BLAST_GATEWAY_PROBE_MAX_S": "2",
    # 30 instances come back in a ramp of 1.5 s.
    "BLAST_GATEWAY_CONNECT_RATE": "20",
}


@pytest.fixture
def outage_engine(platform: Platform, gateway_sim: Any) -> Iterator[Engine]:
    """The engine with two workers and the outage policies above."""
    platform.env.update(OUTAGE_POLICIES)
    for name, value in OUTAGE_POLICIES.items():
        setattr(settings, name, type(getattr(settings, name))(value))
    gateway = Gateway.objects.create(name="simulator", url=gateway_sim.url)
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    eng = Engine(platform=platform, sim=gateway_sim, gateway=gateway, tenant=tenant)
    # All three start at once; each is waited for as start_worker() would.
    starting = [platform.launch_worker("one"), platform.launch_worker("two")]
    celery = platform.launch_celery()
    eng.workers.extend(worker.wait() for worker in starting)
    eng.celery = celery.wait()
    yield eng
    eng.assert_worker_clean()


def _connected_past_the_flap_window(engine: Engine, instances: list[Instance]) -> None:
    engine.wait_all(instances, Status.CONNECTED, timeout=120)
    last = Instance.objects.filter(pk__in=[i.pk for i in instances]).order_by("-connected_at").first()
    assert last is not None and last.connected_at is not None
    # Held past the flap window (1 s): the drop that follows is an outage, not a flap.
    held_from = last.connected_at.timestamp()
    wait_until(lambda: time.time() > held_from + 1.5, timeout=10, message="sessions held past the flap window")


def _gateway(engine: Engine) -> Gateway:
    return Gateway.objects.get(pk=engine.gateway.pk)


def _attempts(sim: Any, instances: list[Instance]) -> int:
    stats = sim.control.stats()["instances"]
    return sum(stats.get(str(i.key), {}).get("attempts", 0) for i in instances)


def _max_concurrent(sim: Any, instances: list[Instance]) -> set[int]:
    stats = sim.control.stats()["instances"]
    return {stats[str(i.key)]["max_concurrent"] for i in instances}


def _alerts(kind: str) -> int:
    return Alert.objects.filter(kind=kind).count()


def _wait_down(engine: Engine, timeout: float = 30.0) -> Gateway:
    return wait_until(
        lambda: (g := _gateway(engine)).state == GatewayState.DOWN and g,
        timeout=timeout,
        interval=0.1,
        message=f"gateway down\n{engine.platform.logs()[-3000:]}",
    )


def _wait_probes(engine: Engine, count: int) -> None:
    wait_until(
        lambda: _gateway(engine).probe_count >= count,
        timeout=60,
        interval=0.2,
        message=f"{count} probes of the down gateway",
    )


def _assert_healed(engine: Engine, instances: list[Instance], attempts_while_down: int, probes: int) -> None:
    # While down, the instances made no attempt of their own: only probes
    # (and the attempts already under way when the outage was recorded).
    assert attempts_while_down <= probes + 2 * len(engine.workers) + 2, (attempts_while_down, probes)
    engine.wait_all(instances, Status.CONNECTED, timeout=30)
    gateway = _gateway(engine)
    assert gateway.state == GatewayState.UP
    assert gateway.outage_count == 1
    kinds = list(GatewayEvent.objects.filter(gateway=gateway).order_by("id").values_list("kind", flat=True))
    assert kinds == [GatewayEventKind.DOWN, GatewayEventKind.UP]
    assert _max_concurrent(engine.sim, instances) == {1}
    # No breaker opened: the outage's failures were the gateway's.
    assert not CircuitBreaker.objects.filter(instance__in=instances).exclude(state=BreakerState.CLOSED).exists()
    # Released in a ramp: no whole second after the gateway came back holds
    # more attempts than the configured rate (cluster-wide, both workers).
    up = GatewayEvent.objects.get(gateway=gateway, kind=GatewayEventKind.UP)
    after = ConnectionEvent.objects.filter(instance__in=instances, kind=EventKind.ATTEMPT, at__gte=up.at)
    per_second = collections.Counter(int((at - up.at).total_seconds()) for at in after.values_list("at", flat=True))
    assert max(per_second.values()) <= settings.BLAST_GATEWAY_CONNECT_RATE, per_second
    wait_until(lambda: _alerts(AlertKind.GATEWAY_UP) == 1, timeout=10, message="one gateway_up alert")
    assert _alerts(AlertKind.GATEWAY_DOWN) == 1
    assert _alerts(AlertKind.BREAKER_OPEN) == 0


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_a_503_outage_is_one_event_probed_one_at_a_time_and_healed_when_the_gateway_is_back(
    outage_engine: Engine,
) -> None:
    engine = outage_engine
    instances = engine.create_many(COUNT)
    _connected_past_the_flap_window(engine, instances)

    engine.sim.control.set_fault("refuse", status=503)
    engine.sim.control.restart(1001)
    down = _wait_down(engine)
    assert down.down_reason in {"connection_closed", "unavailable"}
    before = _attempts(engine.sim, instances)
    probes_before = _gateway(engine).probe_count
    _wait_probes(engine, probes_before + 3)
    attempts_while_down = _attempts(engine.sim, instances) - before
    probes = _gateway(engine).probe_count - probes_before
    print(f"while down: {attempts_while_down} attempts for {COUNT} instances, {probes} probes")

    engine.sim.control.clear_faults()
    _assert_healed(engine, instances, attempts_while_down, probes)


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_a_gateway_restart_that_answers_the_reconnects_is_not_an_outage(outage_engine: Engine) -> None:
    engine = outage_engine
    instances = engine.create_many(COUNT)
    _connected_past_the_flap_window(engine, instances)
    drops_before = _attempts(engine.sim, instances)

    # Every established session dropped at once, as an outage begins, but the
    # gateway answers the reconnects: nothing was down.
    engine.sim.control.restart(1001)
    wait_until(
        lambda: _attempts(engine.sim, instances) >= drops_before + COUNT,
        timeout=30,
        message="every instance reconnecting",
    )
    engine.wait_all(instances, Status.CONNECTED, timeout=30)
    # The reports of the reconnects reached the rule (answered), and still no outage.
    wait_until(
        lambda: not engine.platform.redis().exists(f"{engine.platform.prefix}:gw:{engine.gateway.pk}:fail"),
        timeout=30,
        message="every failing report answered",
    )
    gateway = _gateway(engine)
    assert (gateway.state, gateway.outage_count) == (GatewayState.UP, 0)
    assert not GatewayEvent.objects.filter(gateway=gateway).exists()
    assert _alerts(AlertKind.GATEWAY_DOWN) == 0
    assert _max_concurrent(engine.sim, instances) == {1}


def _start_sim_on(port: int, log_path: Any) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                python_executable(),
                "manage.py",
                "run_gateway_sim",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--start-paired",
            ],
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_a_gateway_process_stopped_and_started_again_on_its_port_is_one_outage(
    outage_engine: Engine, tmp_path: Any
) -> None:
    engine = outage_engine
    sim: GatewaySim = engine.sim
    instances = engine.create_many(COUNT)
    _connected_past_the_flap_window(engine, instances)

    sim.stop()  # TCP refused from now on
    _wait_down(engine)
    probes_before = _gateway(engine).probe_count
    _wait_probes(engine, probes_before + 3)

    process = _start_sim_on(sim.port, tmp_path / "second-sim.log")
    try:
        control = SimulatorControl(sim.http_url)
        control.wait_healthy(timeout=30)
        # The new process counts from zero: every attempt it saw came after it started.
        engine.sim = types.SimpleNamespace(control=control)
        _assert_healed(engine, instances, 0, 0)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_one_gateway_down_leaves_the_other_gateways_instances_alone(outage_engine: Engine) -> None:
    engine = outage_engine
    with start_gateway_sim("--start-paired") as other_sim:
        other = Gateway.objects.create(name="other", url=other_sim.url)
        healthy = [
            Instance.objects.create(tenant=engine.tenant, name=f"h{n}", gateway=other, desired_state="running")
            for n in range(COUNT)
        ]
        instances = engine.create_many(COUNT)
        from instances import hints

        hints.send([i.pk for i in healthy])
        engine.wait_all(healthy, Status.CONNECTED, timeout=120)
        _connected_past_the_flap_window(engine, instances)
        connects = {k: v["connects"] for k, v in other_sim.control.stats()["instances"].items()}

        engine.sim.control.set_fault("refuse", status=503)
        engine.sim.control.restart(1001)
        _wait_down(engine)
        _wait_probes(engine, _gateway(engine).probe_count + 2)

        assert Gateway.objects.get(pk=other.pk).state == GatewayState.UP
        assert Instance.objects.filter(pk__in=[i.pk for i in healthy], status=Status.CONNECTED).count() == COUNT
        assert {k: v["connects"] for k, v in other_sim.control.stats()["instances"].items()} == connects
        engine.sim.control.clear_faults()
        engine.wait_all(instances, Status.CONNECTED, timeout=30)


@pytest.mark.parametrize("gateway_sim", [("--start-paired",)], indirect=True, ids=["paired"])
def test_one_instance_refused_while_its_neighbours_are_fine_is_its_own_breakers_business(
    outage_engine: Engine,
) -> None:
    engine = outage_engine
    instances = engine.create_many(COUNT)
    _connected_past_the_flap_window(engine, instances)
    sick = instances[0]

    engine.sim.control.set_fault("refuse", instance=str(sick.key), status=503)
    engine.sim.control.close(str(sick.key), 1011)
    wait_until(
        lambda: CircuitBreaker.objects.filter(instance=sick).exclude(failures=[]).exists(),
        timeout=30,
        message="the sick instance's failures counted by its own breaker",
    )
    wait_until(
        lambda: len(CircuitBreaker.objects.get(instance=sick).failures) >= 3,
        timeout=30,
        message="three failures of the sick instance",
    )
    assert _gateway(engine).state == GatewayState.UP
    assert not GatewayEvent.objects.exists()
    assert Instance.objects.filter(pk__in=[i.pk for i in instances[1:]], status=Status.CONNECTED).count() == COUNT - 1

"""End to end: a real worker trips a breaker against the gateway simulator,
real Celery beat evaluates and Celery delivers the alert to a real HTTP
receiver that fails at first; the breaker heals and the recovery is sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from instances import commands
from instances.models import EventKind, Status
from monitoring.alerts import CURSOR_KEY
from monitoring.models import Alert, AlertDelivery, AlertState
from tests.fixtures.engine import Engine, run_engine
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.schedules import install_schedules
from tests.fixtures.simulator import gateway_sim_args
from tests.fixtures.webhooks import Receiver
from tests.fixtures.webhooks import verify as verify_signature
from tests.monitoring.conftest import make_webhook

# A half-open trial closes the breaker once its session has stayed ready for
# the flap window: seconds here, not the default half-minute.
FLAP_S = 4


@pytest.fixture
def engine(platform: Platform, gateway_sim: Any) -> Iterator[Engine]:
    platform.env["BLAST_FLAP_WINDOW_S"] = str(FLAP_S)
    yield from run_engine(platform, gateway_sim)


@gateway_sim_args("--start-paired")
def test_a_breaker_alert_and_its_recovery_reach_the_webhook(engine: Engine, receiver: Receiver, settings: Any) -> None:
    # Alerts every second, a retry 1 s after a failed post; beat picks the
    # schedules up from the database while it runs.
    install_schedules(**{"monitoring.evaluate_alerts": 1, "monitoring.heartbeat": 1})
    assert engine.celery is not None
    engine.celery.stopped_by_test = True
    engine.celery.terminate()
    engine.celery = engine.platform.start_celery(
        BLAST_ALERT_RETRY_BASE_S="1",
        BLAST_ALERT_SCORE_THRESHOLD="0",
        BLAST_ALERT_EVENT_GRACE_S="30",
        BLAST_WEBHOOK_ALLOW_PRIVATE="1",  # the receiver listens on 127.0.0.1
    )
    make_webhook(receiver.url, secret="e2e-secret")
    receiver.fail_next(1)

    instance = engine.create("flaky", connect=False)
    engine.sim.control.set_fault("refuse", instance=str(instance.key), status=503)
    commands.connect(instance, actor="test")
    engine.wait_status(instance, Status.CIRCUIT_OPEN, timeout=90)

    # The first post fails (500), the retry succeeds: two posts, one alert.
    first, retried = receiver.wait_for(2, timeout=60)
    assert first.body == retried.body
    for request in (first, retried):
        assert verify_signature(
            "e2e-secret",
            request.headers["X-Blast-Timestamp"],
            request.headers["X-Blast-Signature"],
            request.body,
            now=time.time(),
        )
    body = retried.json()
    assert (body["kind"], body["status"], body["instance"]["name"]) == ("breaker_open", "firing", "flaky")
    delivery = wait_until(
        lambda: AlertDelivery.objects.filter(status="delivered").first(), timeout=30, message="delivery recorded"
    )
    assert (delivery.attempts, delivery.last_status_code) == (2, 200)

    # The gateway heals: the half-open trial connects and closes the breaker.
    engine.sim.control.clear_faults()
    engine.wait_event(instance, EventKind.BREAKER_CLOSED, timeout=60)
    requests = receiver.wait_for(3, timeout=60)
    assert (requests[2].json()["kind"], requests[2].json()["status"]) == ("breaker_open", "resolved")

    # Evaluations go on; nothing more is sent for this instance. Each run
    # stamps the evaluator's cursor (its Celery lines are DEBUG, not logged).
    def evaluated_at() -> Any:
        return AlertState.objects.filter(key=CURSOR_KEY).values_list("updated_at", flat=True).first()

    evaluations = {evaluated_at()}

    def six_more() -> bool:
        evaluations.add(evaluated_at())
        return len(evaluations) >= 7

    wait_until(
        six_more,
        timeout=60,
        interval=0.05,
        message="more evaluations",
    )
    assert len(receiver.requests()) == 3
    assert list(Alert.objects.order_by("id").values_list("kind", "status")) == [
        ("breaker_open", "firing"),
        ("breaker_open", "resolved"),
    ]

"""Deliverability with real parts: the simulator, a connection worker, Celery
with beat, Redis and the test database.

- a campaign finishes when one of its two instances is logged out mid-way:
  the rest goes through the other, every recipient gets exactly one message;
- caps edited through the API take effect on the next send;
- a number that pairs warms up: its first day's cap holds;
- rate-limit nacks slow the instance down, then pause it with an alert
  that resolves when sending resumes; every message still goes out once;
- a 4402 ban raises an alert;
- outside its sending hours an instance holds its messages while another
  instance sends; opening the hours through the API lets them go;
- typing before sending reaches the gateway as presence frames.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from api.models import ApiKey
from campaigns.messages import accept
from campaigns.models import Campaign, Message
from instances import commands
from instances.models import EventKind, Instance, Status
from monitoring.alerts import CURSOR_KEY
from monitoring.models import Alert, AlertState
from tests.campaigns.conftest import URLS, make_list, numbers, start_through_api
from tests.fixtures.engine import Engine, run_engine
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.schedules import install_schedules
from tests.fixtures.simulator import gateway_sim_args

pytestmark = pytest.mark.urls(URLS)

CUSTOMER = "+5511999990001"


@pytest.fixture
def engine(platform: Platform, gateway_sim: Any) -> Iterator[Engine]:
    """The worker with short restriction windows and a fast nack retry."""
    platform.env.update(
        BLAST_NACK_RETRY_S="0.5",
        BLAST_SLOWDOWN_S="60",
        BLAST_SLOWDOWN_FACTOR="1",
        BLAST_RESTRICTION_PAUSE_AFTER="3",
        BLAST_RESTRICTION_PAUSE_S="3",
        BLAST_TYPING_MIN_S="0.1",
        BLAST_TYPING_MAX_S="0.2",
        # Warm-up on: only the test whose number pairs (a QR scan) warms up;
        # --start-paired numbers never send `paired`.
        BLAST_WARMUP_ENABLED="1",
        BLAST_WARMUP_SCHEDULE="2,4",
    )
    yield from run_engine(platform, gateway_sim)


def _client(engine: Engine) -> APIClient:
    _, key = ApiKey.objects.create_key(engine.tenant, "owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _send(engine: Engine, instance: Instance, count: int) -> list[Message]:
    return [accept(engine.tenant, instance, to, f"hello {n}").message for n, to in enumerate(numbers(count))]


def _deliveries(engine: Engine) -> dict[str, int]:
    return dict(engine.sim.control.stats()["deliveries"])


def _attempted(messages: list[Message]) -> int:
    return Message.objects.filter(pk__in=[m.pk for m in messages], attempts__gt=0).count()


def _evaluator_running() -> None:
    """The evaluator's first run starts after the events already logged:
    a test's condition must come after it."""
    wait_until(lambda: AlertState.objects.filter(key=CURSOR_KEY).exists(), timeout=30, message="evaluator running")


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_a_campaign_finishes_when_one_of_its_instances_is_logged_out_mid_way(engine: Engine) -> None:
    install_schedules(**{"campaigns.tick": 1})
    first, second = engine.create("north"), engine.create("south")
    engine.wait_all([first, second], Status.CONNECTED)
    contact_list = make_list(engine.tenant, [(n, {"name": f"N{i}"}) for i, n in enumerate(numbers(16))])
    campaign = start_through_api(
        engine.tenant, contact_list, [first, second], send_delay_min_s=0.4, send_delay_max_s=0.6
    )
    wait_until(
        lambda: Message.objects.filter(campaign=campaign, instance=second, sent_at__isnull=False).count() >= 2,
        timeout=60,
        message="the second instance sent a few",
    )
    engine.sim.control.close(str(second.key), 4401)  # the owner unlinked the phone
    engine.wait_status(second, Status.LOGGED_OUT)
    wait_until(
        lambda: Campaign.objects.get(pk=campaign.pk).status == "completed",
        timeout=90,
        message=f"completed: {list(Message.objects.filter(campaign=campaign).values('instance_id', 'status'))}",
    )
    rows = list(Message.objects.filter(campaign=campaign))
    assert len(rows) == 16
    delivered = _deliveries(engine)
    # Every recipient got exactly one message, through one instance.
    for row in rows:
        hits = [key for key in delivered if key.endswith(f":{row.client_id}")]
        if row.status == "failed":
            assert row.failure_reason == "instance_stopped" and row.attempts > 0, row
        else:
            assert len(hits) == 1 and delivered[hits[0]] == 1, (row, hits)
    moved = [row for row in rows if row.moved_from_id == second.pk]
    assert moved and all(row.instance_id == first.pk for row in moved)
    report = _client(engine).get(f"/api/v1/campaigns/{campaign.key}/report").json()
    shares = {row["name"]: row for row in report["instances"]}
    assert shares["south"]["moved_out"] == len(moved) and shares["south"]["status"] == "logged_out"


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_caps_edited_through_the_api_take_effect_on_the_next_send(engine: Engine) -> None:
    instance = engine.create("capped")
    engine.wait_status(instance, Status.CONNECTED)
    client = _client(engine)
    url = f"/api/v1/instances/{instance.key}/sending-policy"
    assert client.patch(url, {"hourly_cap": 2}, format="json").status_code == 200
    messages = _send(engine, instance, 4)
    wait_until(lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 2, timeout=30)
    assert _attempted(messages) == 2  # the cap holds the other two back
    assert client.patch(url, {"hourly_cap": 0}, format="json").status_code == 200
    wait_until(
        lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 4,
        timeout=30,
        message="the lifted cap applies to the next send",
    )
    assert sorted(_deliveries(engine).values()) == [1, 1, 1, 1]


@gateway_sim_args("--auto-pair-after", "0", "--receipt-delay", "0")
def test_a_number_that_pairs_warms_up_from_its_first_days_cap(engine: Engine) -> None:
    instance = engine.create("fresh")
    engine.wait_status(instance, Status.AWAITING_QR)
    engine.sim.control.pair(str(instance.key))  # the owner scans the code
    engine.wait_status(instance, Status.CONNECTED)
    instance.refresh_from_db()
    assert instance.warmup_started_at is not None
    messages = _send(engine, instance, 4)
    wait_until(lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 2, timeout=30)
    assert _attempted(messages) == 2  # day one of the schedule "2,4"
    Instance.objects.filter(pk=instance.pk).update(warmup=False)  # an operator turns it off
    wait_until(
        lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 4,
        timeout=30,
        message="warm-up off: the rest goes",
    )


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_rate_limit_nacks_slow_down_then_pause_with_an_alert_and_every_message_goes_once(engine: Engine) -> None:
    install_schedules(**{"monitoring.evaluate_alerts": 1})
    instance = engine.create("limited")
    engine.wait_status(instance, Status.CONNECTED)
    _evaluator_running()
    engine.sim.control.set_fault("nack", instance=str(instance.key), error="rate_limited", count=3)
    messages = _send(engine, instance, 3)
    restricted = engine.wait_event(instance, EventKind.RESTRICTED, timeout=30)
    assert len(engine.events(instance, EventKind.SLOWED)) == 1
    instance.refresh_from_db()
    assert instance.paused_until is not None and instance.slowed_until is not None
    wait_until(
        lambda: Alert.objects.filter(kind="restricted", status="firing").exists(),
        timeout=30,
        message="restricted alert",
    )
    lifted = engine.wait_event(instance, EventKind.RESTRICTION_LIFTED, after=restricted.id, timeout=30)
    assert lifted.at > restricted.at
    wait_until(lambda: Alert.objects.filter(kind="restricted", status="resolved").exists(), timeout=30)
    wait_until(
        lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 3,
        timeout=30,
        message="every message out once the pause is over",
    )
    assert sorted(_deliveries(engine).values()) == [1, 1, 1]


@gateway_sim_args("--start-paired")
def test_a_4402_ban_raises_an_alert(engine: Engine) -> None:
    install_schedules(**{"monitoring.evaluate_alerts": 1})
    _evaluator_running()
    instance = engine.create("banned", connect=False)
    # The gateway answers that the network has suspended the account.
    engine.sim.control.set_fault("close_before_hello", instance=str(instance.key), code=4402, count=1)
    commands.connect(instance, actor="test")
    wait_until(
        lambda: Alert.objects.filter(kind="temporarily_banned", status="firing", instance=instance).exists(),
        timeout=30,
        message=f"temporarily_banned alert: {[(e.kind, e.reason) for e in engine.events(instance)]}, "
        f"{list(Alert.objects.values_list('kind', 'status'))}\n{engine.platform.logs()[-3000:]}",
    )
    assert engine.status(instance) != Status.CONNECTED


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_outside_its_sending_hours_an_instance_holds_its_messages_until_they_open(engine: Engine) -> None:
    closed, open_ = engine.create("night"), engine.create("day")
    engine.wait_all([closed, open_], Status.CONNECTED)
    client = _client(engine)
    now = dt.datetime.now(dt.UTC)
    hours = {
        "send_hours_start": (now + dt.timedelta(hours=2)).strftime("%H:%M"),
        "send_hours_end": (now + dt.timedelta(hours=4)).strftime("%H:%M"),
        "send_timezone": "UTC",
    }
    url = f"/api/v1/instances/{closed.key}/sending-policy"
    answer = client.patch(url, hours, format="json")
    assert answer.status_code == 200 and answer.json()["in_force"]["paused"] is True, answer.content
    held = _send(engine, closed, 2)
    sent = [accept(engine.tenant, open_, CUSTOMER, "open all day").message]
    wait_until(lambda: Message.objects.filter(pk=sent[0].pk, status="read").exists(), timeout=30)
    assert _attempted(held) == 0
    assert client.patch(url, {"send_hours_start": None, "send_hours_end": None}, format="json").status_code == 200
    wait_until(
        lambda: Message.objects.filter(pk__in=[m.pk for m in held], status="read").count() == 2,
        timeout=30,
        message="the hours are open: the held messages go",
    )
    assert sorted(_deliveries(engine).values()) == [1, 1, 1]


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_typing_before_sending_reaches_the_gateway(engine: Engine) -> None:
    instance = engine.create("typist")
    engine.wait_status(instance, Status.CONNECTED)
    Instance.objects.filter(pk=instance.pk).update(typing=True)
    messages = _send(engine, instance, 2)
    wait_until(lambda: Message.objects.filter(pk__in=[m.pk for m in messages], status="read").count() == 2, timeout=30)
    presence = engine.sim_stats(instance)["presence"]
    assert presence == [[numbers(2)[0], "composing"], [numbers(2)[1], "composing"]]

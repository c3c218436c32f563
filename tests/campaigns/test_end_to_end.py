"""Campaign features with real parts: the gateway simulator, a connection
worker, Celery with beat, Redis and the test database.

- a STOP sent to a connected instance reaches handle_inbound through the
  worker and opts the sender out;
- a campaign started through the API is expanded by Celery, pauses by itself
  when its only instance stops, and resumes when it is connected again.

(The send path itself, delivered-once under kill -9 mid-campaign, is the worker's test:
test_worker_sending.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Campaign, InboundMessage, Message, OptOut
from instances import commands
from instances.models import Status
from tests.campaigns.conftest import URLS, make_list, numbers, start_through_api
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.schedules import install_schedules
from tests.fixtures.simulator import gateway_sim_args

pytestmark = pytest.mark.urls(URLS)

SENDER = "+5511999990001"


@gateway_sim_args("--start-paired")
def test_a_stop_from_a_recipient_opts_them_out_through_the_worker(engine: Engine) -> None:
    instance = engine.create("inbox")
    engine.wait_status(instance, Status.CONNECTED)
    engine.sim.control.inbound(str(instance.key), SENDER, "Stop")
    wait_until(
        lambda: OptOut.objects.filter(tenant=engine.tenant, phone=SENDER).exists(),
        timeout=30,
        message=f"opt-out stored\n{engine.platform.logs()[-4000:]}",
    )
    inbound = InboundMessage.objects.get(instance=instance)
    assert (inbound.sender, inbound.text, inbound.action) == (SENDER, "Stop", "opt_out")
    assert inbound.server_id


@gateway_sim_args("--start-paired", "--receipt-delay", "-1")
def test_a_campaign_pauses_while_its_instance_is_down_and_resumes_after(engine: Engine, settings: Any) -> None:
    install_schedules(**{"campaigns.tick": 1, "campaigns.fan_out_webhooks": 1})
    instance = engine.create("campaigner")
    engine.wait_status(instance, Status.CONNECTED)
    contact_list = make_list(engine.tenant, [(n, {"name": f"N{i}"}) for i, n in enumerate(numbers(30))])
    # Slow pacing: the campaign is still running when its instance goes.
    campaign = start_through_api(
        engine.tenant, contact_list, [instance], name="slow", send_delay_min_s=3600, send_delay_max_s=3600
    )

    # Celery expands it.
    wait_until(
        lambda: Message.objects.filter(campaign=campaign).count() == 30,
        timeout=60,
        message=f"expansion by Celery\n{engine.celery.log()[-4000:] if engine.celery else ''}",
    )

    commands.disconnect(instance, actor="test")
    engine.wait_status(instance, Status.STOPPED)
    wait_until(
        lambda: Campaign.objects.get(pk=campaign.pk).pause_reason == "no_connected_instance",
        timeout=60,
        message="the campaign paused by itself",
    )

    commands.connect(instance, actor="test")
    engine.wait_status(instance, Status.CONNECTED)
    wait_until(
        lambda: Campaign.objects.get(pk=campaign.pk).status == "running",
        timeout=60,
        message="the campaign resumed by itself",
    )
    campaign.refresh_from_db()
    assert campaign.status_message == "Resumed: an instance is connected again."
    assert not Message.objects.filter(campaign=campaign, status="queued", not_before__year=9999).exists()

"""Auto-replies and checking media campaigns with real processes: the web
process (it serves the media links), a connection worker, Celery with beat,
the simulator, the real Redis and database.

- an inbound message that matches a rule is answered through the gateway,
  once per cool-down: a second message inside it gets nothing;
- a campaign with an image and ``check_numbers`` asks the gateway about its
  recipients first; the image reaches only those on the network, the others
  are skipped with ``not_on_network``, and the campaign completes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from api.models import ApiKey
from campaigns.models import AutoReplyRule, Campaign, InboundMessage, Message, MessageStatus, NumberCheck
from instances.models import Gateway, Status, Tenant
from tests.campaigns.conftest import URLS, make_list, numbers
from tests.fixtures.engine import Engine
from tests.fixtures.platform import Platform, wait_until
from tests.fixtures.schedules import install_schedules
from tests.fixtures.simulator import gateway_sim_args
from tests.media.conftest import PNG, media_root, sized  # noqa: F401  (media_root: a fixture)

pytestmark = pytest.mark.urls(URLS)

CUSTOMER = "+5511999990001"


@pytest.fixture
def stack(platform: Platform, gateway_sim: Any, media_root: Path) -> Iterator[tuple[Engine, APIClient]]:  # noqa: F811
    """Web first (gateways fetch media there), then the worker and Celery."""
    platform.env["BLAST_MEDIA_ROOT"] = str(media_root)
    _, base = platform.start_web()
    platform.env["BLAST_PUBLIC_URL"] = base
    gateway = Gateway.objects.create(name="simulator", url=gateway_sim.url)
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    engine = Engine(platform=platform, sim=gateway_sim, gateway=gateway, tenant=tenant)
    worker, celery = platform.launch_worker(), platform.launch_celery()  # both at once
    engine.workers.append(worker.wait())
    engine.celery = celery.wait()
    _, key = ApiKey.objects.create_key(tenant, "owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    yield engine, client
    engine.assert_worker_clean()


def _deliveries(engine: Engine) -> dict[str, int]:
    return dict(engine.sim.control.stats()["deliveries"])


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_an_auto_reply_answers_through_the_gateway_once_per_cool_down(stack: tuple[Engine, APIClient]) -> None:
    engine, client = stack
    instance = engine.create("support")
    engine.wait_status(instance, Status.CONNECTED)
    created = client.post(
        "/api/v1/auto-replies",
        {
            "instance": str(instance.key),
            "name": "Hours",
            "match": "regex",
            "pattern": r"\b(hours|open)\b",
            "reply_text": "We are open 9 to 18, Monday to Friday.",
            "cooldown_s": 3600,
        },
        format="json",
    )
    assert created.status_code == 201, created.content

    engine.sim.control.inbound(str(instance.key), CUSTOMER, "When are you open?")
    wait_until(
        lambda: Message.objects.filter(to=CUSTOMER, status=MessageStatus.READ).exists(),
        timeout=30,
        message=f"the auto-reply read\n{engine.platform.logs()[-4000:]}",
    )
    reply = Message.objects.get(to=CUSTOMER)
    assert reply.text == "We are open 9 to 18, Monday to Friday."
    assert _deliveries(engine) == {f"{instance.key}:{reply.client_id}": 1}

    # Inside the cool-down the same contact's next message is stored, not answered.
    engine.sim.control.inbound(str(instance.key), CUSTOMER, "What are your hours on Saturday?")
    wait_until(lambda: InboundMessage.objects.filter(instance=instance).count() == 2, timeout=30, message="stored")
    assert Message.objects.filter(to=CUSTOMER).count() == 1
    first, second = InboundMessage.objects.filter(instance=instance).order_by("id")
    rule = AutoReplyRule.objects.get()
    assert (first.auto_reply_id, first.auto_reply_rule_id) == (reply.pk, rule.pk)
    assert (second.auto_reply_id, second.auto_reply_rule_id) == (None, None)
    listed = client.get(f"/api/v1/inbound?instance={instance.key}").json()["results"]
    assert [row["auto_reply"] for row in listed] == [None, str(reply.key)]
    assert _deliveries(engine) == {f"{instance.key}:{reply.client_id}": 1}


@gateway_sim_args("--start-paired", "--receipt-delay", "0")
def test_a_checking_image_campaign_reaches_only_numbers_on_whatsapp(stack: tuple[Engine, APIClient]) -> None:
    engine, client = stack
    install_schedules(**{"campaigns.tick": 1})
    instance = engine.create("shop")
    engine.wait_status(instance, Status.CONNECTED)
    recipients = numbers(6)
    absent = recipients[1::3]  # two of them
    engine.sim.control.set_absent_numbers(absent)
    image = sized(PNG, 4000)
    uploaded = client.post("/api/v1/media", {"file": SimpleUploadedFile("sale.png", image)}, format="multipart").json()
    contact_list = make_list(engine.tenant, [(n, {"name": f"N{i}"}) for i, n in enumerate(recipients)])
    created = client.post(
        "/api/v1/campaigns",
        {
            "name": "photo sale",
            "template": "Sale for {{name}}",
            "contact_list": str(contact_list.key),
            "instances": [str(instance.key)],
            "media": uploaded["id"],
            "check_numbers": True,
            "send_delay_min_s": 0,
            "send_delay_max_s": 0,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    campaign = Campaign.objects.get(key=created.json()["id"])
    assert client.post(f"/api/v1/campaigns/{campaign.key}/start").status_code == 200

    wait_until(
        lambda: Campaign.objects.get(pk=campaign.pk).status == "completed",
        timeout=90,
        message=f"campaign completed ({list(Message.objects.filter(campaign=campaign).values('to', 'status'))}, "
        f"{list(NumberCheck.objects.values('status', 'results', 'error'))})\n"
        f"{engine.celery.log()[-3000:] if engine.celery else ''}\n{engine.platform.logs()[-3000:]}",
    )
    rows = {m.to: m for m in Message.objects.filter(campaign=campaign)}
    assert {to for to, m in rows.items() if m.failure_reason == "not_on_network"} == set(absent)
    present = [to for to in recipients if to not in absent]
    assert all(rows[to].status == MessageStatus.READ for to in present)
    sent_media = engine.sim_stats(instance)["media"]
    assert sorted(sent_media) == sorted(rows[to].client_id for to in present)
    for to in present:
        frame = sent_media[rows[to].client_id]
        assert (frame["kind"], frame["filename"], frame["fetched_bytes"]) == ("image", "sale.png", len(image))
        assert frame["caption"].startswith("Sale for N")
    assert sorted(_deliveries(engine)) == sorted(f"{instance.key}:{rows[to].client_id}" for to in present)
    check = NumberCheck.objects.get(campaign=campaign)
    assert check.status == "done" and check.results == {to: to not in absent for to in recipients}
    report = client.get(f"/api/v1/campaigns/{campaign.key}/report").json()
    assert report["skipped"] == {"total": 2, "by_reason": {"not_on_network": 2}}

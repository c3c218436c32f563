"""Inbound messages reach the tenant: linked to the message they reply to
(and its campaign, whose report counts replies), listed and read through the
API, a conversation per contact, and a signed ``message.inbound`` webhook.
Another tenant's inbound message or instance is a 404."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from campaigns import webhooks
from campaigns.inbound import handle_inbound
from campaigns.models import InboundMessage, Message, MessageStatus
from campaigns.reports import report
from tests.campaigns.conftest import URLS, make_campaign, make_list, make_webhook
from tests.fixtures.cast import Cast
from tests.fixtures.webhooks import Receiver
from tests.fixtures.webhooks import verify as verify_signature

pytestmark = [pytest.mark.django_db, pytest.mark.urls(URLS), pytest.mark.usefixtures("private_webhooks")]

CUSTOMER = "+5511999990001"


def sent_message(cast: Cast, to: str = CUSTOMER, campaign: Any = None, ago: dt.timedelta = dt.timedelta()) -> Message:
    at = timezone.now() - ago
    return Message.objects.create(
        tenant=cast.tenant_a,
        instance=cast.instance_a,
        campaign=campaign,
        to=to,
        text="Spring sale",
        status=MessageStatus.SENT,
        sent_at=at,
        created_at=at,
    )


def test_a_reply_is_linked_to_the_last_message_sent_to_the_sender_and_counted_by_its_campaign(cast: Cast) -> None:
    contacts = make_list(cast.tenant_a, [(CUSTOMER, {}), ("+5511999990002", {})])
    campaign = make_campaign(cast.tenant_a, contacts, [cast.instance_a])
    sent_message(cast, ago=dt.timedelta(hours=5))
    last = sent_message(cast, campaign=campaign, ago=dt.timedelta(hours=1))
    sent_message(cast, to="+5511999990002", campaign=campaign)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "Is it still on?")
    handle_inbound(cast.instance_a.pk, "srv-2", CUSTOMER, "Thanks")
    reply = InboundMessage.objects.get(server_id="srv-1")
    assert (reply.in_reply_to_id, reply.campaign_id) == (last.pk, campaign.pk)
    assert report(campaign, timezone.now())["replies"] == {"messages": 2, "recipients": 1, "rate_percent": 50.0}
    # Outside the reply window, nothing is linked.
    with time_machine.travel(timezone.now() + dt.timedelta(hours=80)):
        handle_inbound(cast.instance_a.pk, "srv-3", CUSTOMER, "Hello?")
    late = InboundMessage.objects.get(server_id="srv-3")
    assert (late.in_reply_to_id, late.campaign_id) == (None, None)
    # A number the instance never wrote to is nobody's reply.
    handle_inbound(cast.instance_a.pk, "srv-4", "+5511999990099", "Who is this?")
    assert InboundMessage.objects.get(server_id="srv-4").in_reply_to_id is None


def test_inbound_messages_are_listed_read_and_filtered_for_their_tenant_only(cast: Cast) -> None:
    last = sent_message(cast)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "Hi!")
    handle_inbound(cast.instance_a2.pk, "srv-2", "+5511999990002", "Other line")
    handle_inbound(cast.instance_b.pk, "srv-3", CUSTOMER, "Rival's")
    listed = cast.owner.get("/api/v1/inbound").json()["results"]
    assert [(r["sender"], r["text"]) for r in listed] == [("+5511999990002", "Other line"), (CUSTOMER, "Hi!")]
    mine = listed[1]
    assert mine["instance"] == str(cast.instance_a.key) and mine["in_reply_to"] == str(last.key)
    assert cast.owner.get(f"/api/v1/inbound/{mine['id']}").json() == mine
    by_instance = cast.owner.get(f"/api/v1/inbound?instance={cast.instance_a2.key}").json()["results"]
    assert [r["text"] for r in by_instance] == ["Other line"]
    by_sender = cast.owner.get("/api/v1/inbound?sender=%2B55 11 99999-0001").json()["results"]
    assert [r["text"] for r in by_sender] == ["Hi!"]
    # A sender that is not a number filters everything out.
    assert cast.owner.get("/api/v1/inbound?sender=12").json()["results"] == []
    assert cast.owner.get("/api/v1/inbound?sender=").status_code == 400
    rivals = InboundMessage.objects.get(server_id="srv-3")
    assert cast.owner.get(f"/api/v1/inbound/{rivals.key}").status_code == 404
    assert cast.client(cast.key_b).get(f"/api/v1/inbound/{mine['id']}").status_code == 404


def test_a_conversation_shows_what_was_sent_and_received_in_order(cast: Cast) -> None:
    first = sent_message(cast, ago=dt.timedelta(minutes=10))
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "Is it still on?")
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=5)):
        second = sent_message(cast)
    url = f"/api/v1/instances/{cast.instance_a.key}/conversations/{CUSTOMER}"
    entries = cast.owner.get(url).json()
    assert [(e["direction"], (e.get("message") or e.get("inbound"))["id"]) for e in entries] == [
        ("out", str(first.key)),
        ("in", str(InboundMessage.objects.get().key)),
        ("out", str(second.key)),
    ]
    assert cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/conversations/12").status_code == 404
    rival = cast.client(cast.key_b).get(url)
    assert rival.status_code == 404


def test_an_inbound_message_is_posted_signed_to_the_webhooks_that_asked(cast: Cast, receiver: Receiver) -> None:
    webhook = make_webhook(cast.tenant_a, receiver.url, secret="topsecret")
    make_webhook(cast.tenant_a, receiver.url, name="statuses only", inbound_events=False)
    last = sent_message(cast)
    handle_inbound(cast.instance_a.pk, "srv-1", CUSTOMER, "STOP")
    outcomes = [webhooks.attempt(pk) for pk in webhooks.fan_out()]
    inbound_posts = [r for r in receiver.requests() if "message.inbound" in r.body.decode()]
    assert len(inbound_posts) == 1 and [o.status for o in outcomes if o].count("delivered") >= 1
    post = inbound_posts[0]
    headers = {k.lower(): v for k, v in post.headers.items()}
    assert verify_signature(
        "topsecret",
        headers["x-blast-timestamp"],
        headers["x-blast-signature"],
        post.body,
        now=float(headers["x-blast-timestamp"]),
    )
    body = post.json()
    assert body["webhook"] == str(webhook.key)
    (event,) = body["events"]
    row = InboundMessage.objects.get()
    assert event == {
        "id": f"im_{row.pk}",
        "type": "message.inbound",
        "at": event["at"],
        "instance": {"id": str(cast.instance_a.key), "name": cast.instance_a.name},
        "inbound": {
            "id": str(row.key),
            "from": CUSTOMER,
            "text": "STOP",
            "action": "opt_out",
            "in_reply_to": str(last.key),
            "campaign": None,
        },
    }
    # Once: a second fan-out posts nothing more.
    assert webhooks.fan_out() == []

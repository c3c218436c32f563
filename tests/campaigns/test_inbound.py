"""Inbound messages: stored once per server id; a stop keyword opts the
sender out of the tenant's messages (queued ones fail at once), a start
keyword takes back a stop. handle_inbound is what the worker calls."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.inbound import action_of, handle_inbound
from campaigns.models import InboundMessage, Message, MessageEvent, OptOut, OptOutSource
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

SENDER = "+5511999990001"


@pytest.mark.parametrize("text", ["STOP", "stop", " Stop. ", "UNSUBSCRIBE", "unsubscribe!", "Opt-out", "Cancel"])
def test_stop_keywords_are_recognised_whole(text: str) -> None:
    assert action_of(text) == "opt_out"


@pytest.mark.parametrize("text", ["please stop", "don't stop me now", "stopping by later", "", "🛑", "STOP" * 20])
def test_a_keyword_inside_a_sentence_is_not_a_stop(text: str) -> None:
    assert action_of(text) == ""


def test_start_and_unstop_opt_back_in() -> None:
    assert action_of("START") == action_of("unstop") == "opt_in"


def test_a_stop_opts_the_sender_out_and_fails_their_unsent_messages(cast: Cast) -> None:
    unsent = Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a2, to=SENDER, text="later")
    in_flight = Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to=SENDER, text="x", attempts=1)
    other_tenant = Message.objects.create(tenant=cast.tenant_b, instance=cast.instance_b, to=SENDER, text="theirs")

    handle_inbound(cast.instance_a.pk, "srv-1", SENDER, "STOP")

    opt_out = OptOut.objects.get()
    assert (opt_out.tenant_id, opt_out.phone, opt_out.source, opt_out.instance_id) == (
        cast.tenant_a.pk,
        SENDER,
        OptOutSource.INBOUND,
        cast.instance_a.pk,
    )
    unsent.refresh_from_db()
    assert (unsent.status, unsent.failure_reason) == ("failed", "opted_out")
    assert MessageEvent.objects.filter(message=unsent, status="failed").count() == 1
    assert Message.objects.get(pk=in_flight.pk).status == "queued"  # written to a gateway: left to the worker
    assert Message.objects.get(pk=other_tenant.pk).status == "queued"  # another tenant's recipient
    inbound = InboundMessage.objects.get()
    assert (inbound.sender, inbound.text, inbound.action) == (SENDER, "STOP", "opt_out")


def test_the_same_server_id_is_handled_once(cast: Cast) -> None:
    handle_inbound(cast.instance_a.pk, "srv-1", SENDER, "STOP")
    handle_inbound(cast.instance_a.pk, "srv-1", SENDER, "START")  # a repeat with other content: ignored
    assert InboundMessage.objects.count() == 1
    assert OptOut.objects.count() == 1
    handle_inbound(cast.instance_a2.pk, "srv-1", SENDER, "hello")  # same id on another instance: its own message
    assert InboundMessage.objects.count() == 2


def test_start_takes_back_a_stop_but_never_a_tenants_own_opt_out(cast: Cast) -> None:
    handle_inbound(cast.instance_a.pk, "srv-1", SENDER, "STOP")
    handle_inbound(cast.instance_a.pk, "srv-2", SENDER, "START")
    assert not OptOut.objects.exists()
    OptOut.objects.create(tenant=cast.tenant_a, phone=SENDER, source=OptOutSource.API)
    handle_inbound(cast.instance_a.pk, "srv-3", SENDER, "START")
    assert OptOut.objects.filter(phone=SENDER).exists()


def test_an_ordinary_message_is_only_stored(cast: Cast) -> None:
    handle_inbound(cast.instance_a.pk, "srv-1", "+55 11 99999-0001", "Thanks!")
    assert InboundMessage.objects.get().sender == SENDER
    assert not OptOut.objects.exists()


def test_a_sender_that_is_not_a_number_is_stored_and_opts_nobody_out(cast: Cast) -> None:
    handle_inbound(cast.instance_a.pk, "srv-1", "status@broadcast", "STOP")
    assert InboundMessage.objects.get().sender == "status@broadcast"
    assert not OptOut.objects.exists()


def test_an_unknown_instance_is_ignored(cast: Cast) -> None:
    handle_inbound(999_999, "srv-1", SENDER, "STOP")
    assert not InboundMessage.objects.exists() and not OptOut.objects.exists()


def test_a_batch_is_stored_in_a_handful_of_queries_each_frame_once(
    cast: Cast, django_assert_max_num_queries: Any
) -> None:
    from campaigns.inbound import handle_many

    frames = [(cast.instance_a.pk, f"srv-{n}", f"+55119999{n:05d}", f"hello {n}") for n in range(300)]
    frames += frames[:20]  # repeated inside the batch
    frames.append((cast.instance_a2.pk, "srv-1", SENDER, "STOP"))  # a keyword: its own work
    frames.append((999_999, "srv-x", SENDER, "an instance deleted meanwhile"))
    with django_assert_max_num_queries(20):
        assert handle_many(frames) == 301
    assert InboundMessage.objects.count() == 301
    assert OptOut.objects.get().phone == SENDER
    assert handle_many(frames) == 0  # the gateway sends them all again after a reconnect
    assert InboundMessage.objects.count() == 301

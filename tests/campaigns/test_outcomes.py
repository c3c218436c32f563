"""Recording what the gateway answered (engine.outbox.apply), on the
test database: forward only, each status change once, with its event."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.models import Message, MessageEvent, MessageStatus
from engine import outbox
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_900_000_000.0


def _message(cast: Cast, n: int = 0) -> Message:
    return Message.objects.create(tenant=cast.tenant_a, instance=cast.instance_a, to=f"+1201555{n:04d}", text="hi")


def _events(message: Message) -> list[str]:
    return list(MessageEvent.objects.filter(message=message).order_by("id").values_list("status", flat=True))


def _at(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def test_an_ack_then_receipts_move_a_message_forward_with_their_times(cast: Cast) -> None:
    message = _message(cast)
    outbox.apply(outbox.Outcomes(acks={message.client_id: ("srv-1", T0)}), 30)
    outbox.apply(outbox.Outcomes(receipts={message.client_id: ("delivered", T0 + 1)}), 30)
    outbox.apply(outbox.Outcomes(receipts={message.client_id: ("read", T0 + 2)}), 30)
    message.refresh_from_db()
    assert (message.status, message.server_id) == (MessageStatus.READ, "srv-1")
    assert (message.sent_at, message.delivered_at, message.read_at) == (_at(T0), _at(T0 + 1), _at(T0 + 2))
    assert _events(message) == ["sent", "delivered", "read"]


def test_an_ack_and_its_receipt_in_one_batch_record_both(cast: Cast) -> None:
    message = _message(cast)
    outcomes = outbox.Outcomes(acks={message.client_id: ("srv-2", T0)})
    outcomes.receipt(message.client_id, "delivered", T0 + 1)
    outbox.apply(outcomes, 30)
    message.refresh_from_db()
    assert (message.status, message.sent_at, message.delivered_at) == ("delivered", _at(T0), _at(T0 + 1))
    assert message.read_at is None
    assert _events(message) == ["sent", "delivered"]


def test_a_read_receipt_without_an_ack_implies_sent_and_delivered(cast: Cast) -> None:
    message = _message(cast)
    outbox.apply(outbox.Outcomes(receipts={message.client_id: ("read", T0)}), 30)
    message.refresh_from_db()
    assert (message.status, message.sent_at, message.delivered_at, message.read_at) == (
        "read",
        _at(T0),
        _at(T0),
        _at(T0),
    )
    assert sorted(_events(message)) == ["delivered", "read", "sent"]


def test_late_and_repeated_frames_change_nothing(cast: Cast) -> None:
    message = _message(cast)
    outbox.apply(outbox.Outcomes(receipts={message.client_id: ("read", T0)}), 30)
    # The ack of a resend, then a delivered receipt that arrived after the read.
    outbox.apply(outbox.Outcomes(acks={message.client_id: ("srv-late", T0 + 5)}), 30)
    outbox.apply(outbox.Outcomes(receipts={message.client_id: ("delivered", T0 + 6)}), 30)
    message.refresh_from_db()
    assert (message.status, message.server_id, message.read_at) == ("read", "", _at(T0))
    assert len(_events(message)) == 3


def test_many_messages_in_one_batch_each_get_their_own_outcome(cast: Cast) -> None:
    messages = [_message(cast, n) for n in range(1200)]  # over one statement's chunk
    outcomes = outbox.Outcomes()
    for n, message in enumerate(messages):
        if n % 3 == 0:
            outcomes.acks[message.client_id] = (f"srv-{n}", T0 + n)
        elif n % 3 == 1:
            outcomes.receipt(message.client_id, "delivered", T0 + n)
    outbox.apply(outcomes, 30)
    by_status: dict[str, list[int]] = {}
    for n, message in enumerate(messages):
        message.refresh_from_db()
        by_status.setdefault(message.status, []).append(n)
        if message.status == MessageStatus.SENT:
            assert (message.server_id, message.sent_at) == (f"srv-{n}", _at(T0 + n))
        elif message.status == MessageStatus.DELIVERED:
            assert message.delivered_at == _at(T0 + n)
    assert {status: len(ns) for status, ns in by_status.items()} == {"sent": 400, "delivered": 400, "queued": 400}
    assert MessageEvent.objects.filter(status="sent").count() == 800  # a receipt implies the ack

"""Failing messages before they are sent: one function for every path
(cancel, opt-out, expiry), one for rows created failed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns.failures import fail_unsent, record_created_failed
from campaigns.models import FailureReason, Message, MessageEvent, MessageStatus
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db


def _message(cast: Cast, attempts: int = 0, **fields: object) -> Message:
    return Message.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, to="+5511999990001", text="hi", attempts=attempts, **fields
    )


def test_only_never_attempted_queued_rows_are_failed_with_one_event_each(cast: Cast) -> None:
    now = timezone.now()
    fresh, written, sent = _message(cast), _message(cast, attempts=1), _message(cast, status=MessageStatus.SENT)
    ids = fail_unsent(Message.objects.all(), FailureReason.CANCELLED, "cancelled", now)
    assert ids == [fresh.pk]
    assert Message.objects.get(pk=fresh.pk).failure_reason == FailureReason.CANCELLED
    assert [Message.objects.get(pk=m.pk).status for m in (written, sent)] == [MessageStatus.QUEUED, MessageStatus.SENT]
    assert list(MessageEvent.objects.values_list("message_id", "status", "data")) == [
        (fresh.pk, MessageStatus.FAILED, {"reason": FailureReason.CANCELLED})
    ]


def test_an_expired_message_is_failed_even_after_an_attempt(cast: Cast) -> None:
    now = timezone.now()
    written = _message(cast, attempts=2, expires_at=now - dt.timedelta(seconds=1))
    ids = fail_unsent(Message.objects.all(), FailureReason.EXPIRED, "expired", now, attempted=True)
    assert ids == [written.pk]
    row = Message.objects.get(pk=written.pk)
    assert (row.status, row.failure_reason, row.failed_at) == (MessageStatus.FAILED, FailureReason.EXPIRED, now)
    assert fail_unsent(Message.objects.all(), FailureReason.EXPIRED, "expired", now, attempted=True) == []


def test_rows_created_failed_get_their_event_with_their_reason(cast: Cast) -> None:
    now = timezone.now()
    opted = _message(cast, status=MessageStatus.FAILED, failure_reason=FailureReason.OPTED_OUT, failed_at=now)
    record_created_failed([opted], now)
    event = MessageEvent.objects.get()
    assert (event.message_id, event.tenant_id, event.instance_id, event.campaign_id) == (
        opted.pk,
        cast.tenant_a.pk,
        cast.instance_a.pk,
        None,
    )
    assert (event.status, event.data, event.at) == (MessageStatus.FAILED, {"reason": FailureReason.OPTED_OUT}, now)

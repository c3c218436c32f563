"""Accepting a single message: the row first, then the hint.

:func:`accept` stores the message in one transaction (quota checked under the
tenant's quota lock, opt-out list consulted) and, once it is committed,
hints the instance's owner. The ``Idempotency-Key`` is the tenant's unique
``(tenant, idempotency_key)``: a replay finds the stored row; two requests
racing with one key both end on the row the database kept (the loser's
insert raises ``IntegrityError`` and it reads the winner's row). Either way
no second message is ever created for one key.

A message to an opted-out number is accepted and failed at once with reason
``opted_out`` (and a ``failed`` status event, so status webhooks report it):
the client learns it from the answer, and the row records that nothing was
sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import optouts, quota
from campaigns.models import FailureReason, Message, MessageEvent, MessageStatus
from instances import hints
from instances.models import Instance, Tenant


class QuotaExceeded(Exception):
    """The tenant's monthly quota is used up until ``resets_at``."""

    def __init__(self, limit: int, resets_at: dt.datetime, now: dt.datetime) -> None:
        self.limit = limit
        self.resets_at = resets_at
        self.retry_after_s = max(1, int((resets_at - now).total_seconds()))
        super().__init__(f"Monthly quota of {limit} messages reached; it resets on {resets_at:%Y-%m-%d %H:%M} UTC.")


class IdempotencyMismatch(Exception):
    """The key was used before for a different message."""

    def __init__(self, message: Message) -> None:
        self.message = message
        super().__init__(
            f"This Idempotency-Key was already used for message {message.key} with a different "
            "instance, recipient or text; use a new key for a new message."
        )


@dataclass(frozen=True)
class Accepted:
    message: Message
    created: bool  # False: an earlier request with the same key created it


def _replay(tenant: Tenant, instance: Instance, to: str, text: str, key: str) -> Accepted | None:
    existing = Message.objects.filter(tenant=tenant, idempotency_key=key).select_related("instance", "campaign").first()
    if existing is None:
        return None
    if existing.instance_id != instance.pk or existing.to != to or existing.text != text:
        raise IdempotencyMismatch(existing)
    return Accepted(existing, created=False)


def accept(
    tenant: Tenant, instance: Instance, to: str, text: str, idempotency_key: str = "", now: dt.datetime | None = None
) -> Accepted:
    """Store a message for ``instance`` (which must be ``tenant``'s) to
    ``to`` (E.164, already normalised) with ``text`` (already validated).

    Raises :class:`QuotaExceeded` when the tenant's monthly quota has no
    room and :class:`IdempotencyMismatch` when the key names a different
    message. The instance's owner is hinted after commit.
    """
    assert instance.tenant_id == tenant.pk
    now = now or timezone.now()
    if idempotency_key:
        replayed = _replay(tenant, instance, to, text, idempotency_key)
        if replayed is not None:
            return replayed
    try:
        with transaction.atomic():
            message = _create(tenant, instance, to, text, idempotency_key, now)
    except IntegrityError:
        if not idempotency_key:
            raise
        replayed = _replay(tenant, instance, to, text, idempotency_key)
        if replayed is None:
            raise
        return replayed
    return Accepted(message, created=True)


def _create(tenant: Tenant, instance: Instance, to: str, text: str, key: str, now: dt.datetime) -> Message:
    opted_out = optouts.is_opted_out(tenant.pk, to)
    # An opted-out message is never sent, so it takes no room in the quota.
    if not opted_out and quota.reserve(tenant.pk, 1, now) < 1:
        raise QuotaExceeded(quota.limit_of(tenant.pk), quota.next_month_start(now), now)
    message = Message.objects.create(
        tenant=tenant,
        instance=instance,
        to=to,
        text=text,
        idempotency_key=key,
        created_at=now,
        **(
            {
                "status": MessageStatus.FAILED,
                "failure_reason": FailureReason.OPTED_OUT,
                "error": optouts.ERROR,
                "failed_at": now,
            }
            if opted_out
            else {}
        ),
    )
    if opted_out:
        MessageEvent.objects.create(
            message=message,
            tenant=tenant,
            instance=instance,
            status=MessageStatus.FAILED,
            at=now,
            data={"reason": FailureReason.OPTED_OUT},
        )
    else:
        instance_id = instance.pk
        transaction.on_commit(lambda: hints.send([instance_id]))
    return message

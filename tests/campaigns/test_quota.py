"""The monthly quota: what counts, the calendar month, the lock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction

from campaigns import quota
from campaigns.models import Message, TenantQuota
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def message(cast: Cast, created: dt.datetime, **fields: Any) -> Message:
    return Message.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, to="+5511999990001", text="x", created_at=created, **fields
    )


def test_the_month_is_the_utc_calendar_month() -> None:
    assert quota.month_start(NOW) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert quota.next_month_start(NOW) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert quota.next_month_start(dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC)) == dt.datetime(
        2027, 1, 1, tzinfo=dt.UTC
    )


def test_messages_never_sent_do_not_count(cast: Cast) -> None:
    message(cast, NOW)
    message(cast, NOW, status="sent", attempts=1)
    message(cast, NOW, status="failed", attempts=1, failure_reason="nack_permanent")  # it was tried: counts
    message(cast, NOW, status="failed", attempts=0, failure_reason="opted_out")
    message(cast, NOW, status="failed", attempts=0, failure_reason="cancelled")
    message(cast, dt.datetime(2026, 10, 31, 23, 59, tzinfo=dt.UTC))  # last month
    assert quota.used(cast.tenant_a.pk, NOW) == 3


def test_reserve_grants_what_is_left_and_the_default_applies_without_a_row(cast: Cast, settings: Any) -> None:
    settings.BLAST_TENANT_MONTHLY_QUOTA = 5
    message(cast, NOW)
    with transaction.atomic():
        assert quota.reserve(cast.tenant_a.pk, 10, NOW) == 4
    TenantQuota.objects.filter(tenant=cast.tenant_a).update(monthly_messages=0)  # 0: unlimited for this tenant
    with transaction.atomic():
        assert quota.reserve(cast.tenant_a.pk, 10, NOW) == 10


@pytest.mark.django_db(transaction=True)
def test_reserve_outside_a_transaction_is_a_programming_error() -> None:
    from tests.fixtures.cast import build_cast

    cast = build_cast()
    with pytest.raises(RuntimeError, match="inside the transaction"):
        quota.reserve(cast.tenant_a.pk, 1, NOW)

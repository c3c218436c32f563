"""Concurrent requests: one Idempotency-Key never makes two messages, and a
quota is never overshot, whatever the interleaving. Real threads, each with
its own database connection, released together by a barrier."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from campaigns import messages
from campaigns.models import Message, TenantQuota
from tests.campaigns.conftest import URLS
from tests.fixtures.cast import build_cast

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(URLS)]

THREADS = 8


def race(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at once; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # reported by the assertions below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_concurrent_requests_with_one_key_create_one_message() -> None:
    cast = build_cast()
    url = f"/api/v1/instances/{cast.instance_a.key}/messages"

    def post(_: int) -> tuple[int, str]:
        response = cast.owner.post(
            url, {"to": "+5511999990001", "text": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="same-key"
        )
        return response.status_code, response.json().get("id", response.content)

    results = race(THREADS, post)
    assert {status for status, _ in results} == {202}, results
    assert len({message_id for _, message_id in results}) == 1
    assert Message.objects.count() == 1


def test_concurrent_requests_never_overshoot_the_quota() -> None:
    cast = build_cast()
    TenantQuota.objects.create(tenant=cast.tenant_a, monthly_messages=3)
    url = f"/api/v1/instances/{cast.instance_a.key}/messages"

    def post(i: int) -> int:
        return int(cast.owner.post(url, {"to": "+5511999990001", "text": f"m{i}"}, format="json").status_code)

    results = race(THREADS, post)
    assert sorted(results) == [202] * 3 + [429] * (THREADS - 3), results
    assert Message.objects.count() == 3


def test_the_losing_insert_of_a_race_answers_the_winners_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """The race path itself, made deterministic: the pre-check misses the row
    another request has just committed, so the insert hits the unique
    constraint, and the answer is that row, not an error or a second one."""
    cast = build_cast()
    winner = Message.objects.create(
        tenant=cast.tenant_a, instance=cast.instance_a, to="+5511999990001", text="once", idempotency_key="k"
    )
    real_replay = messages._replay
    calls: list[int] = []

    def replay_missing_first(*args: Any) -> Any:
        calls.append(1)
        return None if len(calls) == 1 else real_replay(*args)

    monkeypatch.setattr(messages, "_replay", replay_missing_first)
    accepted = messages.accept(cast.tenant_a, cast.instance_a, "+5511999990001", "once", "k")
    assert (accepted.message.pk, accepted.created) == (winner.pk, False)
    assert len(calls) == 2
    assert Message.objects.count() == 1

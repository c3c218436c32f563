"""Concurrent /health requests share one evaluation; a later request gets a
fresh one. The real checks run (test database, Redis); only the number of
evaluations is counted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitoring import health, views

pytestmark = pytest.mark.django_db(transaction=True)


async def test_requests_arriving_during_an_evaluation_share_its_report(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    evaluate = health.evaluate

    def counted(*args: Any, **kwargs: Any) -> health.HealthReport:
        calls.append(1)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(health, "evaluate", counted)
    reports = await asyncio.gather(*(views.shared_evaluation() for _ in range(20)))
    assert len(calls) == 1
    assert all(report is reports[0] for report in reports)
    assert reports[0].check("database:responseTime") is not None

    later = await views.shared_evaluation()
    assert len(calls) == 2
    assert later is not reports[0]
    assert not views._evaluating  # nothing left behind


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    first = asyncio.create_task(views.shared_evaluation())
    second = asyncio.create_task(views.shared_evaluation())
    await asyncio.sleep(0)
    first.cancel()
    report = await second
    assert report.status in (health.PASS, health.WARN, health.FAIL)
    with pytest.raises(asyncio.CancelledError):
        await first

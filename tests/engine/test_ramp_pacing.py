"""The gateway ramp at dispatch, against the real Redis (settings.REDIS_URL).

While a gateway that came back is ramping its instances in, every start takes
the next slot of ``1 / connect_rate`` seconds, shared by every worker: two
pacers here play two connection workers on one Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import redis.asyncio as aioredis

from engine.outages import Outages
from engine.state import WorkerConfig
from engine.store import Row
from instances.models import DesiredState, GatewayState, Status
from instances.outages import GatewayView, OutagePolicy
from tests.fixtures.simulator import wait_for

GATEWAY = 7


class Pacer(Outages):
    """The outage step of a worker, with what pacing reads and nothing else."""

    def __init__(self, client: aioredis.Redis, prefix: str, view: GatewayView, running: int, rate: float) -> None:
        self.redis = client
        self.config = WorkerConfig(redis_prefix=prefix)
        self.outage_policy = OutagePolicy(connect_rate=rate)
        self.gateways = {view.id: view}
        self.gateway_running = {view.id: running}
        self._pacing: set[int] = set()
        self._paced: set[int] = set()
        self.came: list[tuple[int, float]] = []

    def enqueue(self, ids: Iterable[int], wake_senders: bool = True) -> None:
        self.came.extend((i, time.monotonic()) for i in ids)


def _rows(ids: range) -> list[Row]:
    return [
        Row(
            id=i,
            desired_state=DesiredState.RUNNING,
            status=Status.BACKING_OFF,
            lease_epoch=1,
            next_retry_at=None,
            force_retry=False,
            breaker_state="closed",
            cooldown_until=None,
            gateway_id=GATEWAY,
        )
        for i in ids
    ]


def _view(came_up_ago_s: float) -> GatewayView:
    return GatewayView(GATEWAY, GatewayState.UP, None, 0, None, time.time() - came_up_ago_s)


@pytest.fixture
async def client(settings: Any) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(client: aioredis.Redis) -> AsyncIterator[str]:
    prefix = f"blast-test-pacing-{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


async def test_two_workers_take_consecutive_slots_of_one_ramp(client: aioredis.Redis, prefix: str) -> None:
    a = Pacer(client, prefix, _view(0), running=1000, rate=100)
    b = Pacer(client, prefix, _view(0), running=1000, rate=100)
    began = time.monotonic()
    first_a = await a._take_slots(GATEWAY, 10)
    first_b = await b._take_slots(GATEWAY, 10)
    elapsed = time.monotonic() - began
    assert first_a == pytest.approx(0.0, abs=1e-3)
    # B's first slot follows A's ten (0.1 s), less the time that passed between the calls.
    assert 0.1 - elapsed - 1e-3 <= first_b <= 0.1 + 1e-3


async def test_a_ramping_gateways_starts_are_spread_one_slot_apart_never_early(
    client: aioredis.Redis, prefix: str
) -> None:
    pacer = Pacer(client, prefix, _view(0), running=100, rate=20)
    began = time.monotonic()
    ready = await pacer.pace(_rows(range(1, 6)))
    assert [row.id for row in ready] == [1]
    assert pacer._pacing == {2, 3, 4, 5}
    await wait_for(lambda: len(pacer.came) == 4, timeout=10)
    for n, (instance_id, at) in enumerate(pacer.came, start=1):
        assert instance_id == n + 1
        assert at - began >= n / 20 - 0.01
    assert pacer._pacing == set()
    # Reconciled again when its slot came, an instance starts without a second slot.
    assert [row.id for row in await pacer.pace(_rows(range(2, 6)))] == [2, 3, 4, 5]


async def test_a_gateway_that_came_up_long_ago_or_is_down_is_not_paced(client: aioredis.Redis, prefix: str) -> None:
    # 100 instances at 20 per second ramp in within 5 s (and a margin): an hour later, no pacing.
    settled = Pacer(client, prefix, _view(3600), running=100, rate=20)
    assert len(await settled.pace(_rows(range(1, 50)))) == 49
    down = Pacer(client, prefix, _view(0), running=100, rate=20)
    down.gateways[GATEWAY] = GatewayView(GATEWAY, GatewayState.DOWN, None, 0, time.time(), time.time())
    assert len(await down.pace(_rows(range(1, 50)))) == 49
    assert not [key async for key in client.scan_iter(match=f"{prefix}:*")]

"""The live workers in Redis (settings.REDIS_URL), as placement reads them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from instances import membership
from tests.fixtures.simulator import wait_for


@pytest.fixture
async def prefix(aredis: aioredis.Redis) -> AsyncIterator[str]:
    prefix = f"blast-test-members-{uuid.uuid4().hex[:8]}"
    yield prefix
    await aredis.delete(*membership.keys(prefix))


async def test_beating_workers_are_live_with_their_capacities_and_one_leaving_is_gone_at_once(
    aredis: aioredis.Redis, prefix: str, settings: Any
) -> None:
    await membership.beat(aredis, prefix, "host-a-1-aaaaaa", 20_000)
    await membership.beat(aredis, prefix, "host:b-2-bbbbbb", 500)
    assert await membership.live(aredis, prefix, 30) == {"host-a-1-aaaaaa": 20_000, "host:b-2-bbbbbb": 500}
    # Beat and the web read the same, with a synchronous aredis.
    sync = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert membership.live_sync(sync, prefix, 30) == {"host-a-1-aaaaaa": 20_000, "host:b-2-bbbbbb": 500}
    finally:
        sync.close()
    await membership.leave(aredis, prefix, "host-a-1-aaaaaa")
    assert await membership.live(aredis, prefix, 30) == {"host:b-2-bbbbbb": 500}


async def test_a_worker_whose_beat_ages_out_is_forgotten(aredis: aioredis.Redis, prefix: str) -> None:
    await membership.beat(aredis, prefix, "killed-1-000000", 100)
    await membership.beat(aredis, prefix, "alive-2-000000", 100)
    assert set(await membership.live(aredis, prefix, 0.5)) == {"killed-1-000000", "alive-2-000000"}

    async def only_the_beating_one() -> bool:
        await membership.beat(aredis, prefix, "alive-2-000000", 100)
        return await membership.live(aredis, prefix, 0.5) == {"alive-2-000000": 100}

    assert await wait_for(only_the_beating_one, timeout=10)
    assert not await aredis.hexists(membership.keys(prefix)[1], "killed-1-000000")

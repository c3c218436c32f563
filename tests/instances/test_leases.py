"""Redis leases with fencing epochs, against the real Redis (settings.REDIS_URL).

Each test works under a key prefix of its own, removed afterwards, and plays
two connection workers: two ``LeaseManager`` objects with different worker
ids on the same Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from instances.leases import BATCH, Keys, LeaseManager, holders_sync
from tests.fixtures.simulator import wait_for

# Worker ids as engine.state.new_worker_id makes them, one with a colon to
# show that a lease value splits at its last colon.
WORKER_A = "host-a-4242-0a1b2c"
WORKER_B = "host:b-4343-3d4e5f"
TTL_S = 30.0


@pytest.fixture
def prefix(settings: Any) -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"blast-test-leases-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def client(settings: Any) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def manager(client: aioredis.Redis, prefix: str) -> Callable[..., LeaseManager]:
    def make(worker_id: str, ttl_s: float = TTL_S) -> LeaseManager:
        return LeaseManager(client, worker_id, ttl_s, prefix)

    return make


async def test_acquire_many_gives_epochs_newer_than_the_floors_asked_for(
    manager: Callable[..., LeaseManager], client: aioredis.Redis
) -> None:
    a = manager(WORKER_A)
    floors = {1: 0, 2: 50, 3: 7}

    leases = await a.acquire_many(floors)

    assert set(leases) == {1, 2, 3}
    for instance_id, lease in leases.items():
        assert (lease.instance_id, lease.worker_id) == (instance_id, WORKER_A)
        assert lease.epoch > floors[instance_id]
        assert await client.get(a.keys.lease(instance_id)) == lease.value.encode()
    assert len({lease.epoch for lease in leases.values()}) == 3
    # The counter moved past the highest floor: the next epoch is newer still.
    single = await a.acquire(4, 0)
    assert single is not None
    assert single.epoch > max(lease.epoch for lease in leases.values()) > 50


async def test_acquire_many_spans_more_than_one_scripted_batch(manager: Callable[..., LeaseManager]) -> None:
    a, b = manager(WORKER_A), manager(WORKER_B)
    ids = list(range(1, BATCH + 3))

    leases = await a.acquire_many(dict.fromkeys(ids, 0))

    assert set(leases) == set(ids)
    assert len({lease.epoch for lease in leases.values()}) == len(ids)
    assert await a.renew(list(leases.values())) == set(ids)
    assert await b.acquire_many(dict.fromkeys(ids, 0)) == {}
    assert await a.release(list(leases.values())) == len(ids)
    assert await a.holders(ids) == {}


async def test_a_second_worker_cannot_take_a_held_lease(manager: Callable[..., LeaseManager]) -> None:
    a, b = manager(WORKER_A), manager(WORKER_B)
    held = await a.acquire_many({1: 0, 2: 0})

    taken = await b.acquire_many({1: 0, 2: 0, 3: 0})

    assert set(taken) == {3}
    assert taken[3].worker_id == WORKER_B
    assert taken[3].epoch > max(lease.epoch for lease in held.values())
    assert await b.acquire(1, 0) is None
    assert await a.holders([1, 2]) == {i: (WORKER_A, lease.epoch) for i, lease in held.items()}


async def test_renew_extends_only_the_callers_own_leases(
    manager: Callable[..., LeaseManager], client: aioredis.Redis
) -> None:
    a, b = manager(WORKER_A, ttl_s=TTL_S), manager(WORKER_B, ttl_s=5.0)
    leases = await a.acquire_many({1: 0, 2: 0, 3: 0})
    # Instance 2's lease vanished (Redis lost it) and worker B took it.
    await client.delete(a.keys.lease(2))
    taken = await b.acquire(2, leases[2].epoch)
    assert taken is not None
    # Instance 3's lease vanished and A took it again: the old lease is spent.
    await client.delete(a.keys.lease(3))
    again = await a.acquire(3, leases[3].epoch)
    assert again is not None
    await client.pexpire(a.keys.lease(1), 1000)
    await client.pexpire(a.keys.lease(3), 1000)

    assert await a.renew([leases[1], leases[2], leases[3]]) == {1}

    assert await client.pttl(a.keys.lease(1)) > 5000
    assert await client.pttl(a.keys.lease(2)) <= 5000
    assert await client.pttl(a.keys.lease(3)) <= 1000
    assert await a.holders([2, 3]) == {2: (WORKER_B, taken.epoch), 3: (WORKER_A, again.epoch)}
    assert await a.renew([again]) == {3}


async def test_release_frees_only_the_callers_own_leases(
    manager: Callable[..., LeaseManager], client: aioredis.Redis
) -> None:
    a, b = manager(WORKER_A), manager(WORKER_B)
    leases = await a.acquire_many({1: 0, 2: 0})
    await client.delete(a.keys.lease(2))
    taken = await b.acquire(2, leases[2].epoch)
    assert taken is not None

    assert await a.release([leases[1], leases[2]]) == 1

    assert await a.holders([1, 2]) == {2: (WORKER_B, taken.epoch)}
    # Freed: another worker takes it at once, under a newer epoch.
    retaken = await b.acquire(1, leases[1].epoch)
    assert retaken is not None and retaken.epoch > leases[1].epoch


async def test_holders_say_who_holds_what_and_the_sync_form_agrees(
    manager: Callable[..., LeaseManager], prefix: str, settings: Any
) -> None:
    a, b = manager(WORKER_A), manager(WORKER_B)
    mine = await a.acquire_many({1: 0, 2: 0})
    theirs = await b.acquire_many({3: 0})
    expected = {
        1: (WORKER_A, mine[1].epoch),
        2: (WORKER_A, mine[2].epoch),
        3: (WORKER_B, theirs[3].epoch),
    }

    assert await a.holders([1, 2, 3, 4]) == expected
    assert await b.holders([4]) == {}
    sync_client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert holders_sync(sync_client, Keys(prefix), [1, 2, 3, 4]) == expected
    finally:
        sync_client.close()


async def test_a_lease_not_renewed_expires_and_another_worker_takes_it_with_a_newer_epoch(
    manager: Callable[..., LeaseManager],
) -> None:
    a, b = manager(WORKER_A, ttl_s=0.3), manager(WORKER_B)
    lease = await a.acquire(1, 0)
    assert lease is not None
    assert await b.acquire(1, 0) is None

    async def expired() -> bool:
        return await b.holders([1]) == {}

    await wait_for(expired, timeout=5.0)

    assert await a.renew([lease]) == set()
    taken = await b.acquire(1, lease.epoch)
    assert taken is not None and taken.epoch > lease.epoch
    assert await a.holders([1]) == {1: (WORKER_B, taken.epoch)}
    assert await a.release([lease]) == 0
    assert await b.holders([1]) == {1: (WORKER_B, taken.epoch)}

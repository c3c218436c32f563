"""The gateway ramp at dispatch, against the real Redis (settings.REDIS_URL).

While a gateway that came back is ramping its instances in, every start takes
the next slot of ``1 / connect_rate`` seconds, shared by every worker: two
pacers here play two connection workers on one Redis.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterable

import pytest
import redis.asyncio as aioredis

from engine.outages import GATE_CREDIT_S, RATE_HEADROOM, Outages
from engine.state import WorkerConfig
from engine.store import Row
from instances.models import DesiredState, GatewayState, Status
from instances.outages import GatewayView, OutagePolicy
from tests.fixtures.simulator import wait_for

GATEWAY = 7


class Pacer(Outages):
    """The outage step of a worker, with what pacing reads and nothing else."""

    def __init__(self, aredis: aioredis.Redis, prefix: str, view: GatewayView, running: int, rate: float) -> None:
        self.redis = aredis
        self.config = WorkerConfig(redis_prefix=prefix)
        self.outage_policy = OutagePolicy(connect_rate=rate)
        self.gateways = {view.id: view}
        self.gateway_running = {view.id: running}
        self._pacing: set[int] = set()
        self._paced: set[int] = set()
        self._late_slots: dict[int, list[int]] = {}
        self._retaken: set[int] = set()
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.came: list[tuple[int, float]] = []

    def enqueue(self, ids: Iterable[int], wake_senders: bool = True) -> None:
        self.came.extend((i, time.monotonic()) for i in ids)


def _rows(ids: range, gateway_down: bool = False) -> list[Row]:
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
            gateway_down=gateway_down,
        )
        for i in ids
    ]


def _view(came_up_ago_s: float) -> GatewayView:
    return GatewayView(GATEWAY, GatewayState.UP, None, 0, None, time.time() - came_up_ago_s)


@pytest.fixture
async def prefix(aredis: aioredis.Redis) -> AsyncIterator[str]:
    prefix = f"blast-test-pacing-{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = [key async for key in aredis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await aredis.delete(*keys)


async def test_two_workers_take_consecutive_slots_of_one_ramp(aredis: aioredis.Redis, prefix: str) -> None:
    a = Pacer(aredis, prefix, _view(0), running=1000, rate=100)
    b = Pacer(aredis, prefix, _view(0), running=1000, rate=100)
    began = time.monotonic()
    first_a = await a._take_slots(GATEWAY, 10)
    first_b = await b._take_slots(GATEWAY, 10)
    elapsed = time.monotonic() - began
    assert first_a == pytest.approx(0.0, abs=1e-3)
    # B's first slot follows A's ten (0.1 s at the rate, a little more with
    # its headroom), less the time that passed between the calls.
    ten = 10 / (100 * RATE_HEADROOM)
    assert 0.1 < ten < 0.102
    assert ten - elapsed - 1e-3 <= first_b <= ten + 1e-3


async def test_a_ramping_gateways_starts_are_one_per_slot_in_random_order_never_early(
    aredis: aioredis.Redis, prefix: str
) -> None:
    pacer = Pacer(aredis, prefix, _view(0), running=100, rate=20)
    began = time.monotonic()
    assert await pacer.pace(_rows(range(1, 11))) == []
    assert pacer._pacing == set(range(1, 11))
    await wait_for(lambda: len(pacer.came) == 10, timeout=10)
    # The k-th start comes no sooner than k slots (of 1/20 s) from the first.
    for k, (_, at) in enumerate(sorted(pacer.came, key=lambda came: came[1])):
        assert at - began >= k / 20 - 0.01
    assert sorted(i for i, _ in pacer.came) == list(range(1, 11))
    assert pacer._pacing == set()
    # Reconciled again when its slot came, an instance starts without a second slot.
    assert [row.id for row in await pacer.pace(_rows(range(1, 11)))] == list(range(1, 11))


async def test_a_slot_that_comes_late_is_taken_again_once(aredis: aioredis.Redis, prefix: str) -> None:
    pacer = Pacer(aredis, prefix, _view(0), running=100, rate=20)
    pacer._pacing.add(1)
    # The worker was busy: the slot came a second late. Not started now, with
    # whatever else came late, but given a new slot.
    pacer._slot_came(1, GATEWAY, time.time() - 1.0)
    assert pacer.came == []
    await wait_for(lambda: len(pacer.came) == 1, timeout=10)
    # Late again: started anyway, never put off for ever.
    pacer._pacing.add(2)
    pacer._retaken.add(2)
    pacer._slot_came(2, GATEWAY, time.time() - 1.0)
    assert [i for i, _ in pacer.came] == [1, 2]


async def test_a_gateway_that_came_up_long_ago_or_is_down_is_not_paced(aredis: aioredis.Redis, prefix: str) -> None:
    # 100 instances at 20 per second ramp in within 5 s (and a margin): an hour later, no pacing.
    settled = Pacer(aredis, prefix, _view(3600), running=100, rate=20)
    assert len(await settled.pace(_rows(range(1, 50)))) == 49
    down = Pacer(aredis, prefix, _view(0), running=100, rate=20)
    down.gateways[GATEWAY] = GatewayView(GATEWAY, GatewayState.DOWN, None, 0, time.time(), time.time())
    assert len(await down.pace(_rows(range(1, 50), gateway_down=True))) == 49
    assert not [key async for key in aredis.scan_iter(match=f"{prefix}:*")]


async def test_the_gate_spaces_upgrades_and_a_pause_leaves_at_most_its_credit_behind(
    aredis: aioredis.Redis, prefix: str
) -> None:
    rate = 5
    pacer = Pacer(aredis, prefix, _view(0), running=100, rate=rate)
    passed: list[float] = []
    for _ in range(3):
        assert await pacer.gate(GATEWAY)
        passed.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(passed)]
    assert min(gaps) >= 1 / rate - 0.01, gaps
    # The worker is busy for a second: the slots it missed are not all taken
    # at once afterwards, only the credit's worth; the rest are spaced again.
    time.sleep(1.0)  # noqa: ASYNC251 - blocking the loop is the point: a busy worker
    after: list[float] = []

    async def upgrade() -> None:
        await pacer.gate(GATEWAY)
        after.append(time.monotonic())

    await asyncio.gather(*(upgrade() for _ in range(6)))
    at_once = [t for t in after if t - min(after) < 0.05]
    assert len(at_once) <= int(GATE_CREDIT_S * rate * RATE_HEADROOM) + 1, after
    spaced = sorted(after)[len(at_once) - 1 :]
    assert len(spaced) > 2
    assert min(b - a for a, b in itertools.pairwise(spaced)) >= 1 / rate - 0.11, after


async def test_the_gate_lets_through_at_once_when_the_gateway_does_not_ramp(
    aredis: aioredis.Redis, prefix: str
) -> None:
    pacer = Pacer(aredis, prefix, _view(3600), running=100, rate=1)
    began = time.monotonic()
    for _ in range(5):
        await pacer.gate(GATEWAY)
    assert time.monotonic() - began < 1.0
    assert not [key async for key in aredis.scan_iter(match=f"{prefix}:*")]


async def test_no_second_holds_more_upgrade_requests_than_the_rate_whatever_paused(
    aredis: aioredis.Redis, prefix: str
) -> None:
    # Two workers' sessions, all held up past their slots (a long pause), come
    # to the request at once: the count of the second sends the rest on.
    a = Pacer(aredis, prefix, _view(0), running=100, rate=4)
    b = Pacer(aredis, prefix, _view(0), running=100, rate=4)
    passed: list[float] = []

    async def request(pacer: Pacer) -> None:
        await pacer.regate(GATEWAY)
        passed.append(time.time())

    await asyncio.gather(*(request(a if n % 2 else b) for n in range(10)))
    per_second = collections.Counter(int(at) for at in passed)
    assert max(per_second.values()) <= 4, per_second
    sent = await aredis.hgetall(f"{prefix}:gw:{GATEWAY}:sent")
    assert {int(k): int(v) for k, v in sent.items() if int(v)} == dict(per_second)

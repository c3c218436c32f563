"""The live connection workers and their capacities, in Redis.

Each worker beats into a sorted set (scored by Redis' own clock, the same for
everyone) with its capacity beside it; a worker is live while its last beat
is younger than ``liveness_s``. A worker stopped with SIGTERM leaves at once;
one killed drops out when its beat ages, before its leases expire (the
liveness is shorter than the lease TTL), so that the recovery jobs route its
instances to the workers that remain. The database heartbeat
(``WorkerHeartbeat``) stays what the admin, /health and /metrics read; this
is what placement (:mod:`instances.placement`) reads, in every worker and in
beat, without a query.
"""

from __future__ import annotations

from typing import Any

# KEYS: the set, the capacities. ARGV: worker id, capacity. A beat: now, and the capacity.
BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
# KEYS: the set, the capacities. ARGV: liveness (s). Forget the workers whose
# beat aged out and return the live ones: {id, capacity, ...}.
LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
for _, id in ipairs(gone) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or '0'
end
return out
"""


def keys(prefix: str) -> tuple[str, str]:
    return f"{prefix}:workers", f"{prefix}:workers:capacity"


def _parse(reply: list[Any]) -> dict[str, int]:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return {text(reply[i]): int(text(reply[i + 1])) for i in range(0, len(reply) - 1, 2)}


async def beat(client: Any, prefix: str, worker_id: str, capacity: int) -> None:
    await client.eval(BEAT, 2, *keys(prefix), worker_id, capacity)


async def leave(client: Any, prefix: str, worker_id: str) -> None:
    members, capacities = keys(prefix)
    await client.zrem(members, worker_id)
    await client.hdel(capacities, worker_id)


async def live(client: Any, prefix: str, liveness_s: float) -> dict[str, int]:
    """Live workers and their capacities (an asyncio Redis client)."""
    return _parse(await client.eval(LIVE, 2, *keys(prefix), liveness_s))


def live_sync(client: Any, prefix: str, liveness_s: float) -> dict[str, int]:
    """:func:`live` for a synchronous Redis client (beat, views)."""
    return _parse(client.eval(LIVE, 2, *keys(prefix), liveness_s))

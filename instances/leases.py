"""Cluster-wide ownership of instances through Redis leases.

A worker may hold an instance's gateway session only while it holds the
instance's lease: the key ``{prefix}:lease:{id}`` set with NX and a TTL,
whose value is ``{worker_id}:{epoch}``. Every acquisition takes a new,
larger epoch (a fencing token) from one counter; database writes about an
instance are conditional on the writer's epoch, so a worker that lost its
lease cannot overwrite what a newer owner wrote.

All operations on many leases are one scripted call, so that renewing ten
thousand leases costs one round trip per tick, not ten thousand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis as syncredis
import redis.asyncio as aioredis

# KEYS[1] lease key, KEYS[2] epoch counter; ARGV[1] worker id, ARGV[2] ttl ms,
# ARGV[3] floor epoch (the epoch last written to the database).
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch <= floor then
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
"""

# KEYS: the epoch counter, then lease keys; ARGV[1] worker id, ARGV[2] ttl
# ms, ARGV[3..] floor epochs, one per lease key. Returns the new epoch for
# each lease taken, 0 for each held by someone else.
_ACQUIRE_MANY = """
local out = {}
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[i - 1] = 0
  else
    local epoch = redis.call('INCR', KEYS[1])
    local floor = tonumber(ARGV[i + 1])
    if epoch <= floor then
      epoch = floor + 1
      redis.call('SET', KEYS[1], epoch)
    end
    redis.call('SET', KEYS[i], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
    out[i - 1] = epoch
  end
end
return out
"""

# KEYS lease keys; ARGV[1] ttl ms, ARGV[2..] expected values, one per key.
# Returns 1 for each lease still ours (and extended), 0 otherwise.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS lease keys; ARGV expected values. Deletes only the leases still ours.
_RELEASE = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then
    redis.call('DEL', key)
    n = n + 1
  end
end
return n
"""

# Scripts take at most this many keys per call, so one call never blocks
# Redis for long.
BATCH = 2000


@dataclass(frozen=True)
class Lease:
    instance_id: int
    worker_id: str
    epoch: int

    @property
    def value(self) -> str:
        return f"{self.worker_id}:{self.epoch}"


def parse_value(value: bytes | str | None) -> tuple[str, int] | None:
    """``(worker_id, epoch)`` from a lease value, or None when there is none."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    worker_id, _, epoch = text.rpartition(":")
    try:
        return worker_id, int(epoch)
    except ValueError:
        return None


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def lease(self, instance_id: int) -> str:
        return f"{self.prefix}:lease:{instance_id}"

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:lease-epoch"


def _chunks(items: Sequence[Lease], size: int = BATCH) -> Iterable[Sequence[Lease]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LeaseManager:
    """Async lease operations for a connection worker."""

    def __init__(self, client: aioredis.Redis, worker_id: str, ttl_s: float, prefix: str = "blast") -> None:
        self.client = client
        self.worker_id = worker_id
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.keys = Keys(prefix)
        self._acquire = client.register_script(_ACQUIRE)
        self._acquire_many = client.register_script(_ACQUIRE_MANY)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(self, instance_id: int, floor_epoch: int) -> Lease | None:
        """Take the lease if nobody holds it; the new epoch exceeds ``floor_epoch``."""
        epoch = await self._acquire(
            keys=[self.keys.lease(instance_id), self.keys.epoch],
            args=[self.worker_id, self.ttl_ms, floor_epoch],
        )
        epoch = int(epoch)
        return Lease(instance_id, self.worker_id, epoch) if epoch else None

    async def acquire_many(self, floors: dict[int, int]) -> dict[int, Lease]:
        """Take every free lease among ``floors`` (instance id -> floor epoch)
        in one call per batch; returns the leases taken."""
        taken: dict[int, Lease] = {}
        items = list(floors.items())
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            epochs = await self._acquire_many(
                keys=[self.keys.epoch, *(self.keys.lease(i) for i, _ in chunk)],
                args=[self.worker_id, self.ttl_ms, *(floor for _, floor in chunk)],
            )
            for (instance_id, _), epoch in zip(chunk, epochs, strict=True):
                if int(epoch):
                    taken[instance_id] = Lease(instance_id, self.worker_id, int(epoch))
        return taken

    async def renew(self, leases: Sequence[Lease]) -> set[int]:
        """Extend the leases still ours; return the instance ids renewed."""
        renewed: set[int] = set()
        for chunk in _chunks(leases):
            flags = await self._renew(
                keys=[self.keys.lease(lease.instance_id) for lease in chunk],
                args=[self.ttl_ms, *(lease.value for lease in chunk)],
            )
            renewed.update(lease.instance_id for lease, flag in zip(chunk, flags, strict=True) if int(flag))
        return renewed

    async def release(self, leases: Sequence[Lease]) -> int:
        released = 0
        for chunk in _chunks(leases):
            released += int(
                await self._release(
                    keys=[self.keys.lease(lease.instance_id) for lease in chunk],
                    args=[lease.value for lease in chunk],
                )
            )
        return released

    async def holders(self, instance_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
        """Who holds each lease now: instance id -> (worker id, epoch)."""
        return await holders_async(self.client, self.keys, instance_ids)


async def holders_async(client: aioredis.Redis, keys: Keys, instance_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    found: dict[int, tuple[str, int]] = {}
    for start in range(0, len(instance_ids), BATCH):
        chunk = list(instance_ids[start : start + BATCH])
        values = await client.mget([keys.lease(i) for i in chunk])
        for instance_id, value in zip(chunk, values, strict=True):
            parsed = parse_value(value)
            if parsed is not None:
                found[instance_id] = parsed
    return found


def holders_sync(client: syncredis.Redis, keys: Keys, instance_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    """The same as :func:`holders_async`, for beat jobs and commands."""
    found: dict[int, tuple[str, int]] = {}
    for start in range(0, len(instance_ids), BATCH):
        chunk = list(instance_ids[start : start + BATCH])
        values = client.mget([keys.lease(i) for i in chunk])
        for instance_id, value in zip(chunk, values, strict=True):
            parsed = parse_value(value)
            if parsed is not None:
                found[instance_id] = parsed
    return found

"""Scale-out: every live worker holds its share, joins and leaves hand off.

Each worker beats into the shared membership (``instances.membership``)
every second and reads the live workers back; from them and the running
instances it computes the placement (``instances.placement``), the same in
every worker. Then:

- **starting**: a worker starts only the instances placed on it, and never
  more than its capacity; a hint for an instance placed elsewhere is
  forwarded to that worker once (a forwarded hint is taken as it is, so two
  workers whose views differ for a moment never bounce it between them);
- **handing off**: sessions this worker holds that are placed on another
  live worker are its excess. Once the membership has been stable for a few
  seconds it closes them at ``BLAST_REBALANCE_MOVES_PER_S`` (the cluster's
  pace, split over its live workers), each with ``handoff``: the last state
  is written under its epoch, the lease released, and only then the new
  owner hinted, which takes the lease with a newer epoch. Never two sessions
  for one instance, and the gap is a close and an open;
- **leaving**: SIGTERM leaves the membership first, so that the hints of
  its instances go straight to the workers that remain;
- **taking over**: a worker killed without leaving ages out of the
  membership before its leases expire. Each survivor watches the sessions
  the dead worker's rows still name that are now placed on it and starts
  them as soon as their leases are gone, without waiting for the recovery
  job's next run (which finds nothing left to do, or those placed nowhere).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from channels.db import database_sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from engine import store
from engine.state import WorkerState
from instances import hints, membership, placement
from instances.models import Status
from instances.reasons import Reason

logger = logging.getLogger("blast.worker")

MEMBERS_EVERY_S = 1.0
RUNNING_EVERY_S = 5.0
# Moves wait until the membership has held still this long (a worker that
# joins, or one that misses a beat, does not set sessions moving at once).
STABLE_S = 3.0
# A session is moved only once it has been connected this long, so that one
# moved by mistake is never moved straight back.
SETTLED_S = 5.0


class Balancing(WorkerState):
    def owner_of(self, instance_id: int) -> str | None:
        """The live worker that should hold the instance; None while no
        worker is known, or when no live worker has room for it."""
        if not self.members:
            return None
        if instance_id in self.placement:
            return self.placement[instance_id]
        if instance_id in self.running_ids:
            return None  # placed nowhere: the live capacity is full
        return placement.ranking(instance_id, self.members)[0]

    def is_mine(self, owner: str | None) -> bool:
        """Whether ``owner`` (``owner_of``'s answer) means this worker: it is,
        or no worker is known yet (a lone worker starting up takes all)."""
        return owner == self.worker_id or (owner is None and not self.members)

    @property
    def room(self) -> int:
        """Sessions this worker may still start."""
        return max(0, self.capacity - len(self.held) - len(self.starting))

    # -- membership and placement -------------------------------------------------

    async def _members_loop(self) -> None:
        await self.join()
        await self._take_over()
        await asyncio.sleep(MEMBERS_EVERY_S)

    async def join(self) -> None:
        """Beat into the membership and place over the live workers."""
        assert self.redis is not None
        if self.stopping:
            return
        await membership.beat(self.redis, self.config.redis_prefix, self.worker_id, self.capacity)
        members = await membership.live(self.redis, self.config.redis_prefix, hints.liveness_s())
        if self.stopping:
            return
        members.setdefault(self.worker_id, self.capacity)
        await self._place(members)

    async def _place(self, members: dict[str, int]) -> None:
        """Place again when the live workers or the running instances changed."""
        now = time.monotonic()
        changed = members != self.members
        if changed:
            if self.members:
                joined = sorted(set(members) - set(self.members))
                left = sorted(set(self.members) - set(members))
                logger.info("🧭 workers: %d live (joined %s, left %s)", len(members), joined or "-", left or "-")
                # Their sessions are watched until their leases have surely
                # expired (a worker that only missed beats still renews them).
                until = now + 2 * self.config.lease_ttl
                self._departed.update({worker: until for worker in left if worker != self.worker_id})
            self.members = members
            self.members_since = now
        if now - self._running_at >= RUNNING_EVERY_S:
            running = await database_sync_to_async(store.running_ids)()
            self._running_at = now
            changed = changed or running != self.running_ids
            self.running_ids = running
        if changed:
            self.placement = placement.assign(self.running_ids, self.members)

    async def _take_over(self) -> None:
        """Start the sessions a departed worker left that are placed on this
        worker, as soon as their leases are gone."""
        now = time.monotonic()
        self._departed = {w: until for w, until in self._departed.items() if until > now and w not in self.members}
        if not self._departed or self.stopping:
            return
        left = await database_sync_to_async(store.left_behind)(sorted(self._departed))
        mine = [i for i in left if i not in self.held and i not in self.starting and self.owner_of(i) == self.worker_id]
        if not mine:
            return
        assert self.leases is not None
        held_elsewhere = await self.leases.holders(mine)
        free = [i for i in mine if i not in held_elsewhere]
        if free:
            logger.info("🧭 taking over %d sessions whose worker is gone", len(free))
            self.enqueue(free, wake_senders=False)

    # -- handing off -----------------------------------------------------------------

    async def _balance_loop(self) -> None:
        await asyncio.sleep(1.0)
        if self.stopping or not self.members or time.monotonic() - self.members_since < STABLE_S:
            return
        pace = settings.BLAST_REBALANCE_MOVES_PER_S / max(1, len(self.members))
        self._move_budget = min(pace, self._move_budget + pace)
        budget = int(self._move_budget)
        if budget <= 0:
            return
        now = time.time()
        moved = 0
        for held in list(self.held.values()):
            if moved >= budget:
                break
            owner = self.owner_of(held.instance_id)
            if owner is None or owner == self.worker_id:
                continue
            if held.session is None or held.instance_id in self.handoffs:
                continue
            if held.status != Status.CONNECTED or now - (held.connected_at or now) < SETTLED_S:
                continue
            self.handoffs[held.instance_id] = owner
            held.session.stop(Reason.HANDOFF)
            moved += 1
        if moved:
            self._move_budget -= moved
            logger.info("🧭 handing %d sessions to the workers that should hold them", moved)

    async def _handed_off(self, instance_ids: Iterable[int]) -> None:
        """Leases released: hint each handed-off instance to its new owner."""
        by_owner: dict[str | None, list[int]] = {}
        for instance_id in instance_ids:
            owner = self.handoffs.pop(instance_id, None)
            if owner is not None:
                by_owner.setdefault(owner, []).append(instance_id)
        await self._hint_owners(by_owner)

    async def send_routed(self, ids: list[int]) -> None:
        """Hint ``ids`` to the workers that should hold them (the common
        channel for those placed nowhere or while no worker is known)."""
        by_owner: dict[str | None, list[int]] = {}
        for instance_id in ids:
            owner = self.owner_of(instance_id)
            by_owner.setdefault(None if owner == self.worker_id else owner, []).append(instance_id)
        await self._hint_owners(by_owner)

    async def _hint_owners(self, by_owner: dict[str | None, list[int]]) -> None:
        """One hint per owner, marked forwarded; owner None: the common channel."""
        for owner, ids in by_owner.items():
            if owner is None:
                await hints.send_async(self.channel_layer, ids, self.config.common_channel, self.config.hint_batch)
            else:
                channel = hints.worker_channel(self.config.common_channel, owner)
                await hints.send_async(self.channel_layer, ids, channel, self.config.hint_batch, forwarded=True)

    async def leave(self) -> None:
        """Leave the membership and place without this worker (SIGTERM)."""
        members = {w: c for w, c in self.members.items() if w != self.worker_id}
        try:
            assert self.redis is not None
            await membership.leave(self.redis, self.config.redis_prefix, self.worker_id)
            members = await membership.live(self.redis, self.config.redis_prefix, hints.liveness_s())
            members.pop(self.worker_id, None)
        except (RedisError, OSError):
            logger.warning("⚠️ could not leave the membership; the others see this worker go when its beat ages")
        await self._place(members)

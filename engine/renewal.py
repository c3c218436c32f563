"""Renewal: one scripted Redis call renews every lease this worker holds; a
lease that vanished is taken again if nobody else did, and a session whose
lease cannot be proven is closed *before* the lease could expire by this
worker's clock."""

from __future__ import annotations

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from engine import store
from engine.state import DB_ERRORS, Held, WorkerState
from instances.reasons import Reason

logger = logging.getLogger("blast.worker")


class Renewing(WorkerState):
    async def _renew_loop(self) -> None:
        await asyncio.sleep(self.config.lease_ttl / 6)
        now = time.monotonic()
        due = [h for h in self.held.values() if h.valid_until - now <= self.config.lease_ttl * 2 / 3]
        if due:
            await self._renew(due)
        self._close_unproven()

    async def _renew(self, due: list[Held]) -> None:
        assert self.leases is not None
        started = time.monotonic()
        try:
            renewed = await asyncio.wait_for(
                self.leases.renew([h.lease for h in due]), timeout=self.config.lease_ttl / 3
            )
        except (RedisError, OSError, TimeoutError):
            logger.warning("⚠️ lease renewal failed for %d sessions", len(due))
            return
        for held in due:
            if self.held.get(held.instance_id) is not held:
                continue  # ended (and released) while the renewal was on its way
            if held.instance_id in renewed:
                held.valid_until = started + self.config.lease_ttl
            elif not self.stopping:
                await self._reacquire(held, started)

    async def _reacquire(self, held: Held, started: float) -> None:
        """The lease vanished (Redis restarted): take it again if nobody else did."""
        assert self.leases is not None
        try:
            lease = await self.leases.acquire(held.instance_id, held.epoch)
        except (RedisError, OSError):
            return
        if self.held.get(held.instance_id) is not held or self.stopping:
            if lease is not None:
                await self._release([lease])
            return
        if lease is None:
            logger.warning("🔒 instance=%s lease taken by another worker", held.instance_id)
            if held.session is not None:
                held.session.stop(Reason.LEASE_LOST)
            return
        try:
            rebound = await database_sync_to_async(store.rebind_epoch)(
                held.instance_id, held.epoch, lease.epoch, held.status, self.worker_id
            )
        except DB_ERRORS:
            rebound = False
        if rebound:
            held.lease = lease
            held.valid_until = started + self.config.lease_ttl
            logger.info("🔒 instance=%s lease re-acquired (epoch %s)", held.instance_id, lease.epoch)
        else:
            await self._release([lease])
            if held.session is not None:
                held.session.stop(Reason.LEASE_LOST)

    def _close_unproven(self) -> None:
        """Close sessions whose lease we can no longer prove, before it expires."""
        now = time.monotonic()
        for held in self.held.values():
            if held.valid_until - now <= self.config.lease_ttl / 3 and held.session is not None:
                if held.session.stop_reason is None:
                    logger.warning("🔒 instance=%s lease unproven; closing the session", held.instance_id)
                held.session.stop(Reason.LEASE_LOST)

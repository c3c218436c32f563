"""The connection worker's supervisor: owns instances, runs their sessions.

Small named steps, each driven by its own loop (ARCHITECTURE.md, STYLE.md),
each in its own module of this package:

- ``reconcile`` (:mod:`engine.reconcile`): hints name instances; for each,
  compare what the database wants with what this worker holds, and start,
  stop or forward. Its audit re-reads every held instance now and then, so a
  lost hint (disconnect, delete) never leaves a session running.
- owning (:mod:`engine.owning`): take a lease, claim the row, hold the
  session and write what its end means; :mod:`engine.hooks` turns what a
  live session reports into writes and the sender's work.
- ``renew`` (:mod:`engine.renewal`): one scripted Redis call renews every
  lease this worker holds; a session whose lease cannot be proven is closed
  *before* the lease could expire by this worker's clock.
- ``flush`` (:mod:`engine.flush`): state changes and events are applied to
  the database in batches, fenced by epoch, and kept for a retry when the
  database is away.
- ``heartbeat`` (here): sessions held and last progress, for health checks.

Log markers (one per kind of event; grep-able): 🔌 attempt, 📱 QR issued,
🔢 pairing code requested, issued or failed, 🤝 paired, ✅ connected, ❌ disconnected, ⏳ retry scheduled, 🚨 breaker
opened, 🟡 breaker half-open, 🟢 breaker closed, ⛔ terminal stop, 🔁 restart
required, 🔒 lease lost, 💓 heartbeat, ⚠️ malformed frame or recoverable error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, ClassVar

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from engine import store
from engine.balance import Balancing
from engine.flush import Flushing
from engine.hooks import SessionHooks
from engine.outages import Outages
from engine.owning import Owning
from engine.reconcile import Reconciling
from engine.renewal import Renewing
from engine.state import DB_ERRORS, Held, WorkerConfig, new_worker_id
from instances.leases import LeaseManager
from instances.reasons import Reason

__all__ = ["Held", "Supervisor", "WorkerConfig", "new_worker_id"]

logger = logging.getLogger("blast.worker")

# While stopping, what has closed is flushed, released and handed on this often.
DRAIN_FLUSH_S = 0.25


class Supervisor(Reconciling, Owning, SessionHooks, Flushing, Renewing, Outages, Balancing):
    """The worker: its loops started and stopped; each step lives in its own
    module (see :mod:`engine.state`)."""

    current: ClassVar[Supervisor | None] = None

    async def start(self) -> None:
        Supervisor.current = self
        self.redis = aioredis.Redis.from_url(
            self.redis_url, socket_connect_timeout=2, socket_timeout=max(2.0, self.config.lease_ttl / 3)
        )
        self.leases = LeaseManager(self.redis, self.worker_id, self.config.lease_ttl, self.config.redis_prefix)
        try:
            await self.join()
        except (*DB_ERRORS, RedisError, OSError) as exc:
            logger.warning("⚠️ could not join the membership yet (%s); retrying every second", exc)
        for step in (
            self._reconcile_loop,
            self._renew_loop,
            self._flush_loop,
            self._heartbeat_loop,
            self._audit_loop,
            self._gateway_loop,
            self._members_loop,
            self._balance_loop,
        ):
            self._tasks.append(asyncio.create_task(self._forever(step), name=step.__name__))
        logger.info("💓 worker %s started; listening on %s", self.worker_id, self.own_channel)

    async def shutdown(self, drain_s: float = 10.0) -> None:
        """Close every session with 1001, write the last state, release leases."""
        self.stopping = True
        # Leave first: the others place this worker's instances among
        # themselves, and the hints below go straight to them.
        await self.leave()
        held_ids = list(self.held)
        logger.info("worker %s stopping: closing %d sessions", self.worker_id, len(held_ids))
        for held in list(self.held.values()):
            owner = self.owner_of(held.instance_id)
            if owner is not None and owner != self.worker_id:
                # Hinted as soon as its last state is written and its lease
                # released (the flushes below), not after the last one closed.
                self.handoffs[held.instance_id] = owner
            if held.session is not None:
                held.session.stop(Reason.SHUTDOWN)
        handing = set(self.handoffs)
        # A flush is never cancelled half-way (its thread would finish the
        # write anyway and the retry would write it twice): let the flush loop
        # end by itself (it does once stopping), then flush here while the
        # sessions close; cancel the other loops.
        self._flush_wake.set()
        flushing = [task for task in self._tasks if task.get_name() == "_flush_loop"]
        if flushing:
            await asyncio.wait(flushing)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while self._session_tasks and loop.time() < deadline:
            await asyncio.wait(self._session_tasks, timeout=min(DRAIN_FLUSH_S, deadline - loop.time()))
            await self._flush_once()
        for task in self._tasks:
            if task.get_name() != "_flush_loop":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _ in range(3):
            if await self._flush_once():
                break
            await asyncio.sleep(0.5)
        leftover = [h.lease for h in self.held.values()]
        if leftover and self.leases is not None:
            try:
                await self.leases.release(leftover)
            except RedisError:
                logger.warning("⚠️ could not release %d leases; they expire by themselves", len(leftover))
        try:
            await database_sync_to_async(store.heartbeat)(
                self.worker_id, socket.gethostname(), os.getpid(), 0, self.last_progress, stopped=True
            )
        except DB_ERRORS:
            logger.warning("⚠️ could not write the final heartbeat")
        # Hand the rest to the workers that should hold them now, at once
        # (those handed off as they closed were hinted by the flushes).
        rest = [i for i in held_ids if i not in handing or i in self.handoffs]
        self.handoffs.clear()
        if rest:
            await self.send_routed(rest)
        if self.redis is not None:
            await self.redis.aclose()
        Supervisor.current = None
        logger.info("worker %s stopped", self.worker_id)

    async def _forever(self, step: Any) -> None:
        """Run a loop step; a database or Redis blip never ends the worker."""
        while not self.stopping:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except (*DB_ERRORS, RedisError, OSError) as exc:
                # Expected while a dependency is away: one line, not a trace.
                logger.warning("⚠️ %s failed (%s: %s); carrying on", step.__name__, type(exc).__name__, exc)
                await asyncio.sleep(1.0)
            except Exception:
                logger.exception("⚠️ %s failed; carrying on", step.__name__)
                await asyncio.sleep(1.0)

    async def _heartbeat_loop(self) -> None:
        await database_sync_to_async(store.heartbeat)(
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            len(self.held),
            self.last_progress,
            capacity=self.capacity,
        )
        await asyncio.sleep(self.config.heartbeat_interval)

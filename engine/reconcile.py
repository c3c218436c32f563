"""Reconcile: hints name instances; for each, compare what the database wants
with what this worker holds, and start, stop or forward. The audit re-reads
every held instance now and then, so a lost hint (disconnect, delete) never
leaves a session running."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from engine import store
from engine.state import DB_ERRORS, Held, WorkerState
from instances import attempts, hints
from instances.reasons import Reason

logger = logging.getLogger("blast.worker")


class Reconciling(WorkerState):
    def enqueue(self, ids: Iterable[int], wake_senders: bool = True, forwarded: bool = False) -> None:
        """Note instances to reconcile; the reconcile loop does the work. A
        hint may also mean new messages: the senders of held instances are
        woken (not by the periodic audit, which would wake every sender).
        ``forwarded``: another worker sent them here as their owner, so they
        are started here, not forwarded again."""
        ids = list(ids)
        self.pending.update(ids)
        if forwarded:
            self._forwarded.update(ids)
        self._wake.set()
        if wake_senders:
            for instance_id in ids:
                held = self.held.get(instance_id)
                if held is not None and held.sender is not None:
                    held.sender.wake()

    async def _reconcile_loop(self) -> None:
        await self._wake.wait()
        self._wake.clear()
        while self.pending and not self.stopping:
            batch = [self.pending.pop() for _ in range(min(len(self.pending), 1000))]
            try:
                await self.reconcile(batch)
            except (RedisError, *DB_ERRORS, OSError) as exc:
                logger.warning(
                    "⚠️ reconcile of %d instances failed (%s: %s); retrying soon", len(batch), type(exc).__name__, exc
                )
                self.pending.update(batch)
                await asyncio.sleep(1.0)

    async def reconcile(self, ids: list[int]) -> None:
        assert self.leases is not None
        rows = await database_sync_to_async(store.load_rows)(ids)
        found = {row.id for row in rows}
        for instance_id in ids:
            held = self.held.get(instance_id)
            if instance_id not in found and held is not None and held.session is not None:
                held.desired_running = False
                held.session.stop(Reason.STOPPED)  # the instance was deleted
        now = time.time()
        loop = asyncio.get_running_loop()
        for row in rows:
            if row.id in self.held or row.id in self.deferred:
                continue
            delay = row.due_later(now, self.config.retry_horizon)
            if delay is not None:
                # Attempt at the retry's own jittered time, not at the hint's.
                self.deferred.add(row.id)
                loop.call_later(delay, self._due, row.id)
        candidates = [
            row
            for row in rows
            if row.id not in self.held
            and row.id not in self._pacing
            and not self._is_starting(row.id)
            and (row.wants_session(now) or row.wants_stop_written())
        ]
        holders = await self.leases.holders([row.id for row in candidates]) if candidates else {}
        forward: dict[str, list[int]] = collections.defaultdict(list)
        for row in rows:
            held = self.held.get(row.id)
            if held is not None:
                self._reconcile_held(held, row, now)
        to_start: list[store.Row] = []
        placed_elsewhere: list[int] = []
        for row in candidates:
            holder = holders.get(row.id)
            if holder is not None:
                if holder[0] != self.worker_id:
                    forward[holder[0]].append(row.id)
                continue
            if self.stopping:
                continue
            owner = self.owner_of(row.id)
            if not row.running or row.id in self._forwarded or self.is_mine(owner):
                to_start.append(row)  # a stop is written by whoever reads it
            elif owner is not None:
                placed_elsewhere.append(row.id)
            # else placed nowhere: the live capacity is full; it waits for room.
        for worker_id, owned in forward.items():
            # The owner acts on its own sessions (disconnect, force retry).
            channel = hints.worker_channel(self.config.common_channel, worker_id)
            await hints.send_async(self.channel_layer, owned, channel, self.config.hint_batch)
        if placed_elsewhere:
            await self.send_routed(placed_elsewhere)
        self._forwarded.difference_update(ids)
        if len(to_start) > self.room:
            # Never more than this worker's capacity: the rest wait for room
            # (the recovery jobs hint them again).
            to_start = to_start[: self.room]
        if to_start:
            to_start = await self.pace(to_start)
        self._paced.difference_update(ids)
        if to_start:
            await self._start(to_start)

    def _due(self, instance_id: int) -> None:
        self.deferred.discard(instance_id)
        self.enqueue([instance_id])

    def _reconcile_held(self, held: Held, row: store.Row, now: float) -> None:
        """Bring a held session in line with its row.

        A force retry of an instance whose session is live (connecting,
        awaiting a QR scan, connected) is answered here, by its owner: the
        live session is the attempt, so nothing more is attempted and the flag
        is cleared. Left set, it would outlive the session and force an
        attempt after the next drop, past a breaker that drop opened.

        A pairing-code request on the row is sent here too, by the owner of
        the session it is for (``_request_pair_code``, once).
        """
        if held.session is None:
            return
        if not row.running:
            held.desired_running = False
            held.session.stop(Reason.STOPPED)
            return
        if row.lease_epoch > held.epoch:
            logger.warning("🔒 instance=%s a newer owner wrote epoch %s", held.instance_id, row.lease_epoch)
            held.session.stop(Reason.LEASE_LOST)
            return
        if row.lease_epoch != held.epoch:
            return
        fields: dict[str, Any] = {}
        if row.status != held.status:
            # The row drifted from the live session (a recovery job saw the
            # lease vanish while Redis restarted): say again what is true.
            fields.update(status=held.status, owner=self.worker_id)
        if row.decide(now, attempts.Asker.OWNER).forced:
            fields["force_retry"] = False
            logger.info(
                "🔌 instance=%s force retry: the session is %s already, no further attempt",
                held.instance_id,
                held.status,
            )
        if fields:
            self.batch.state(held.instance_id, held.epoch, **fields)
            self._flush_wake.set()
        if row.pair_requested:
            self._spawn_task(
                self._request_pair_code(held, held.session, row.pair_phone), f"pair-code-{held.instance_id}"
            )
        if row.logout_requested:
            self._spawn_task(self._logout(held, held.session), f"logout-{held.instance_id}")
        if row.checks_pending and held.instance_id not in self._checking:
            self._checking.add(held.instance_id)
            self._spawn_task(self._run_checks(held, held.session), f"number-checks-{held.instance_id}")

    def _is_starting(self, instance_id: int) -> bool:
        started = self.starting.get(instance_id)
        if started is None:
            return False
        stale_after = self.session_config.open_timeout + self.session_config.hello_timeout + self.config.lease_ttl
        if time.monotonic() - started > stale_after:
            # A marker older than any open could take is stale (the seed's
            # connecting_sessions clean-up); forget it.
            logger.warning("⚠️ instance=%s stale connecting marker removed", instance_id)
            del self.starting[instance_id]
            return False
        return True

    async def _audit_loop(self) -> None:
        await asyncio.sleep(self.config.audit_interval)
        if self.held:
            self.enqueue(list(self.held), wake_senders=False)

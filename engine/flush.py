"""Flush: state changes, events and message outcomes are applied to the
database in batches, fenced by epoch, and kept for a retry when the database
is away; the leases of ended sessions are released only after their last
writes landed."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from engine import outbox, store
from engine.state import DB_ERRORS, WorkerState

logger = logging.getLogger("blast.worker")


class Flushing(WorkerState):
    async def _flush_loop(self) -> None:
        try:
            await asyncio.wait_for(self._flush_wake.wait(), timeout=1.0)
        except TimeoutError:
            pass
        self._flush_wake.clear()
        if not await self._flush_once():
            await asyncio.sleep(1.0)

    async def _flush_once(self) -> bool:
        """Apply what is pending, then release the leases of sessions that
        ended before it; on a database error keep both for the next try (an
        unreleased lease is not renewed, so it expires by itself)."""
        if not await self._flush_outcomes():
            return False
        if not self.batch and not self.releasing:
            return True
        batch, self.batch = self.batch, store.Batch()
        releasing, self.releasing = self.releasing, []
        if batch:
            try:
                await database_sync_to_async(store.apply)(batch)
            except DB_ERRORS as exc:
                # The transaction rolled back: keep everything for the next try.
                logger.warning("⚠️ database unavailable (%s); %d writes kept for retry", exc, len(batch))
                self.batch = batch.merge_newer(self.batch)
                self.releasing = releasing + self.releasing
                return False
            self._progress()
        await self._release(releasing)
        if self.handoffs:
            await self._handed_off(lease.instance_id for lease in releasing)
        return True

    async def _flush_outcomes(self) -> bool:
        if not self.outcomes:
            return True
        outcomes, self.outcomes = self.outcomes, outbox.Outcomes()
        try:
            await database_sync_to_async(outbox.apply)(outcomes, self.nack_retry_s)
        except DB_ERRORS as exc:
            logger.warning("⚠️ database unavailable (%s); %d message outcomes kept for retry", exc, len(outcomes))
            self.outcomes = outcomes.merge_newer(self.outcomes)
            return False
        self._progress()
        return True

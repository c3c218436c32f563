"""Owning one instance: take its lease and claim it, hold its session until it
ends for good (reconnecting at once where the policy says so), and write
what each end means: status, retry, breaker, events."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from channels.db import database_sync_to_async

from engine import store
from engine.session import GatewaySession
from engine.state import Held, WorkerState
from instances.breaker import Transition
from instances.breaker_rows import to_dt
from instances.decisions import Outcome, SessionEnd, after_session
from instances.models import EventKind, Status
from instances.reasons import Kind, kind_of

logger = logging.getLogger("blast.worker")

MARKERS = {
    Status.CONNECTED: "✅",
    Status.BACKING_OFF: "⏳",
    Status.CIRCUIT_OPEN: "🚨",
    Status.STOPPED: "⏹️",
    Status.DISCONNECTED: "❌",
    Status.CONNECTING: "🔁",
}


class Owning(WorkerState):
    async def _start(self, rows: list[store.Row], probes: frozenset[int] = frozenset()) -> None:
        """Take the leases of ``rows`` and claim them in the database, in one
        Redis call and one transaction, then open a session for each claim.
        ``probes``: instances claimed to probe their down gateway."""
        assert self.leases is not None
        for row in rows:
            self.starting[row.id] = time.monotonic()
        try:
            leases = await self.leases.acquire_many({row.id: row.lease_epoch for row in rows})
            if not leases:
                return
            proven_until = time.monotonic() + self.config.lease_ttl
            try:
                claims = await database_sync_to_async(store.claim_many)(
                    {i: lease.epoch for i, lease in leases.items()},
                    self.worker_id,
                    time.time(),
                    self.policies,
                    probes,
                )
            except BaseException:
                await self._release(list(leases.values()))
                raise
            if self.stopping:
                claims = {}
            await self._release([lease for i, lease in leases.items() if i not in claims])
            for instance_id, claim in claims.items():
                held = Held(
                    instance_id=instance_id,
                    lease=leases[instance_id],
                    url=claim.url,
                    token=claim.token,
                    retry_count=claim.retry_count,
                    breaker=claim.breaker,
                    valid_until=proven_until,
                    gateway_id=claim.gateway_id,
                    probe=claim.probe,
                )
                self.held[instance_id] = held
                task = asyncio.create_task(self._own(held, claim.forced), name=f"instance-{instance_id}")
                self._session_tasks.add(task)
                task.add_done_callback(self._session_done)
        finally:
            for row in rows:
                self.starting.pop(row.id, None)

    async def _own(self, held: Held, forced: bool) -> None:
        """Hold one claimed instance until its session ends for good."""
        try:
            logger.info(
                "🔌 instance=%s attempt (epoch %s%s)",
                held.instance_id,
                held.epoch,
                ", forced" if forced else "",
            )
            await self._hold(held)
        finally:
            # Let go only after the session's last state is written under our
            # epoch, so that the next owner starts from it: the flush releases.
            self.held.pop(held.instance_id, None)
            self.releasing.append(held.lease)
            self._flush_wake.set()

    async def _hold(self, held: Held) -> None:
        ramping = await self.gate(held.gateway_id)  # while its gateway ramps back in (engine.outages)
        while True:
            session = GatewaySession(
                instance_id=held.instance_id,
                url=held.url,
                token=held.token,
                config=self.session_config,
                hooks=self,
                before_request=functools.partial(self.regate, held.gateway_id) if ramping else None,
            )
            ramping = False  # a reconnect within the hold is not part of the ramp
            held.session = session
            held.qr_logged = False
            end = await session.run()
            await self._stop_sender(held)
            now = time.time()
            self.gateway_session_ended(held, end, session.hello_at, now)
            while held.restarts and now - held.restarts[0] > self.policies.retry.restart_window_s:
                held.restarts.popleft()
            outcome = after_session(
                end,
                retry_count=held.retry_count,
                breaker=held.breaker,
                desired_running=held.desired_running,
                recent_restarts=len(held.restarts),
                now=now,
                policies=self.policies,
                gateway_down=self.gateway_is_down(held.gateway_id),
            )
            self._record_end(held, end, outcome, now)
            if (
                outcome.reconnect_now
                and not self.stopping
                and session.stop_reason is None
                and time.monotonic() < held.valid_until
            ):
                if kind_of(end.reason) is Kind.RESTART:
                    held.restarts.append(now)
                self.batch.event(
                    held.instance_id,
                    EventKind.ATTEMPT,
                    epoch=held.epoch,
                    actor=self.actor,
                    message=f"reconnect after {end.reason}",
                )
                logger.info("🔁 instance=%s reconnecting at once after %s", held.instance_id, end.reason)
                continue
            return

    def _record_end(self, held: Held, end: SessionEnd, outcome: Outcome, now: float) -> None:
        instance_id, epoch = held.instance_id, held.epoch
        when = to_dt(now)
        held.retry_count = outcome.retry_count
        held.breaker = outcome.breaker
        held.status = outcome.status
        fields: dict[str, Any] = {
            "status": outcome.status,
            "status_changed_at": when,
            "last_reason": str(end.reason),
            "last_message": end.message[:500],
            "retry_count": outcome.retry_count,
            "next_retry_at": to_dt(outcome.next_retry_at),
            **store.NO_PAIRING,
        }
        if end.ready_at is not None:
            fields["disconnected_at"] = when
        if outcome.unpair:
            fields.update(paired=False, account="")
        if not outcome.reconnect_now:
            fields["owner"] = ""
        self.batch.state(instance_id, epoch, **fields)
        if outcome.failure or outcome.transition is not None:
            self.batch.breaker(instance_id, epoch, outcome.breaker)
        self.batch.event(
            instance_id,
            EventKind.DISCONNECT,
            epoch=epoch,
            actor=self.actor,
            reason=str(end.reason),
            message=end.message[:500],
            data={
                "failure": outcome.failure,
                "kind": str(kind_of(end.reason)),
                "was_ready": end.ready_at is not None,
            },
        )
        if outcome.transition is Transition.CLOSED:
            # A trial that stayed ready for the flap window, ending before its check.
            self.batch.event(
                instance_id, EventKind.BREAKER_CLOSED, epoch=epoch, actor=self.actor, message="trial succeeded"
            )
        if outcome.transition is Transition.OPENED:
            self.batch.event(
                instance_id,
                EventKind.BREAKER_OPENED,
                epoch=epoch,
                actor=self.actor,
                reason=str(end.reason),
                # An opening while the gateway fails for everyone is the
                # gateway's doing: the alert evaluator leaves it to the
                # gateway's own alert.
                data={
                    "trip_count": outcome.breaker.trip_count,
                    "gateway_suspect": self.gateway_suspect(held.gateway_id),
                },
            )
            logger.warning(
                "🚨 instance=%s breaker opened after %s (trip %s)",
                instance_id,
                end.reason,
                outcome.breaker.trip_count,
            )
        if outcome.next_retry_at is not None and outcome.status == Status.BACKING_OFF:
            self.batch.event(
                instance_id,
                EventKind.RETRY_SCHEDULED,
                epoch=epoch,
                actor=self.actor,
                reason=str(end.reason),
                data={"delay_s": round(outcome.delay or 0.0, 3)},
            )
        marker = "⛔" if kind_of(end.reason) is Kind.TERMINAL else MARKERS.get(Status(outcome.status), "❌")
        logger.info(
            "%s instance=%s disconnected: %s (%s) -> %s%s",
            marker,
            instance_id,
            end.reason,
            end.message,
            outcome.status,
            f", retry in {outcome.delay:.1f}s" if outcome.delay else "",
        )
        self._progress()

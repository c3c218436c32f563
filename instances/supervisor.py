"""The connection worker's supervisor: owns instances, runs their sessions.

Small named steps, each driven by its own loop (ARCHITECTURE.md, STYLE.md):

- ``reconcile``: hints name instances; for each, compare what the database
  wants with what this worker holds, and start, stop or forward.
- ``renew``: one scripted Redis call renews every lease this worker holds;
  a session whose lease cannot be proven is closed *before* the lease could
  expire by this worker's clock.
- ``flush``: state changes and events are applied to the database in
  batches, fenced by epoch, and kept for a retry when the database is away.
- ``heartbeat``: sessions held and last progress, for health checks.
- ``audit``: every held instance is re-read now and then, so a lost hint
  (disconnect, delete) never leaves a session running.

Log markers (one per kind of event; grep-able): 🔌 attempt, 📱 QR issued,
🤝 paired, ✅ connected, ❌ disconnected, ⏳ retry scheduled, 🚨 breaker
opened, 🟡 breaker half-open, 🟢 breaker closed, ⛔ terminal stop, 🔁 restart
required, 🔒 lease lost, 💓 heartbeat, ⚠️ malformed frame or recoverable error.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.db import DatabaseError, InterfaceError
from redis.exceptions import RedisError

from campaigns import sending
from campaigns.sender import Claims, Reads, Sender
from engine import protocol
from instances import attempts, hints, store
from instances.breaker import Breaker, Transition
from instances.decisions import Outcome, Policies, SessionEnd, after_ready, after_session
from instances.leases import Lease, LeaseManager
from instances.models import EventKind, Status
from instances.reasons import Kind, Reason, kind_of
from instances.session import GatewaySession, SessionConfig

logger = logging.getLogger("blast.worker")

DB_ERRORS = (DatabaseError, InterfaceError)

MARKERS = {
    Status.CONNECTED: "✅",
    Status.BACKING_OFF: "⏳",
    Status.CIRCUIT_OPEN: "🚨",
    Status.STOPPED: "⏹️",
    Status.DISCONNECTED: "❌",
    Status.CONNECTING: "🔁",
}


@dataclass(frozen=True)
class WorkerConfig:
    lease_ttl: float = 15.0
    heartbeat_interval: float = 5.0
    audit_interval: float = 10.0
    redis_prefix: str = "blast"
    common_channel: str = "blast-connections"
    hint_batch: int = 500
    retry_horizon: float = 5.0
    nack_retry_s: float = 30.0

    @classmethod
    def from_settings(cls) -> WorkerConfig:
        from django.conf import settings

        return cls(
            lease_ttl=settings.BLAST_LEASE_TTL_S,
            heartbeat_interval=settings.BLAST_HEARTBEAT_INTERVAL_S,
            audit_interval=max(settings.BLAST_LEASE_TTL_S, 2 * settings.BLAST_HEARTBEAT_INTERVAL_S),
            redis_prefix=settings.BLAST_REDIS_PREFIX,
            common_channel=settings.BLAST_WORKER_CHANNEL,
            hint_batch=settings.BLAST_HINT_BATCH,
            retry_horizon=settings.BLAST_RECOVERY_PERIOD_S + 1.0,
            nack_retry_s=settings.BLAST_NACK_RETRY_S,
        )


def new_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass
class Held:
    """An instance this worker owns, and its current session."""

    instance_id: int
    lease: Lease
    url: str
    token: str
    retry_count: int
    breaker: Breaker
    valid_until: float  # monotonic: the lease is proven ours until then
    desired_running: bool = True
    status: str = Status.CONNECTING
    session: GatewaySession | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    qr_logged: bool = False
    sender: Sender | None = None
    # Send times of the last 24 hours, kept across sessions for pacing caps.
    recent_sends: collections.deque[float] | None = None

    @property
    def epoch(self) -> int:
        return self.lease.epoch


class Supervisor:
    current: ClassVar[Supervisor | None] = None

    def __init__(
        self,
        *,
        redis_url: str,
        policies: Policies,
        session_config: SessionConfig,
        config: WorkerConfig,
        channel_layer: Any,
        worker_id: str | None = None,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.own_channel = hints.worker_channel(config.common_channel, self.worker_id)
        self.redis_url = redis_url
        self.policies = policies
        self.session_config = session_config
        self.config = config
        self.channel_layer = channel_layer
        self.actor = f"worker:{self.worker_id}"
        self.nack_retry_s = config.nack_retry_s
        self.held: dict[int, Held] = {}
        # In-process connecting markers: instance id -> monotonic start time.
        self.starting: dict[int, float] = {}
        self.pending: set[int] = set()
        # Instances whose retry falls due soon, waiting for their time.
        self.deferred: set[int] = set()
        self._wake = asyncio.Event()
        self.batch = store.Batch()
        self.outcomes = sending.Outcomes()
        # Every sender's reads and claims, one round trip for many under load.
        self.sender_reads = Reads()
        self.sender_claims = Claims()
        # Leases of ended sessions, released once their last writes landed.
        self.releasing: list[Lease] = []
        self._flush_wake = asyncio.Event()
        self.stopping = False
        self.last_progress: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.redis: aioredis.Redis | None = None
        self.leases: LeaseManager | None = None

    # -- start and stop ---------------------------------------------------------

    async def start(self) -> None:
        Supervisor.current = self
        self.redis = aioredis.Redis.from_url(
            self.redis_url, socket_connect_timeout=2, socket_timeout=max(2.0, self.config.lease_ttl / 3)
        )
        self.leases = LeaseManager(self.redis, self.worker_id, self.config.lease_ttl, self.config.redis_prefix)
        for step in (
            self._reconcile_loop,
            self._renew_loop,
            self._flush_loop,
            self._heartbeat_loop,
            self._audit_loop,
        ):
            self._tasks.append(asyncio.create_task(self._forever(step), name=step.__name__))
        logger.info("💓 worker %s started; listening on %s", self.worker_id, self.own_channel)

    async def shutdown(self, drain_s: float = 10.0) -> None:
        """Close every session with 1001, write the last state, release leases."""
        self.stopping = True
        held_ids = list(self.held)
        logger.info("worker %s stopping: closing %d sessions", self.worker_id, len(held_ids))
        for held in list(self.held.values()):
            if held.session is not None:
                held.session.stop(Reason.SHUTDOWN)
        if self._session_tasks:
            await asyncio.wait(self._session_tasks, timeout=drain_s)
        # A flush is never cancelled half-way (its thread would finish the
        # write anyway and the retry would write it twice): let the flush loop
        # end by itself, cancel the others.
        for task in self._tasks:
            if task.get_name() != "_flush_loop":
                task.cancel()
        self._flush_wake.set()
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
        # Hand the instances to the other workers at once.
        if held_ids:
            await hints.send_async(self.channel_layer, held_ids, self.config.common_channel, self.config.hint_batch)
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

    # -- hints --------------------------------------------------------------------

    def enqueue(self, ids: Iterable[int], wake_senders: bool = True) -> None:
        """Note instances to reconcile; the reconcile loop does the work. A
        hint may also mean new messages: the senders of held instances are
        woken (not by the periodic audit, which would wake every sender)."""
        ids = list(ids)
        self.pending.update(ids)
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
        for row in candidates:
            holder = holders.get(row.id)
            if holder is not None:
                if holder[0] != self.worker_id:
                    forward[holder[0]].append(row.id)
                continue
            if not self.stopping:
                to_start.append(row)
        for worker_id, owned in forward.items():
            # The owner acts on its own sessions (disconnect, force retry).
            channel = hints.worker_channel(self.config.common_channel, worker_id)
            await hints.send_async(self.channel_layer, owned, channel, self.config.hint_batch)
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

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self._session_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved, so never "never retrieved"
        if exc is not None:
            logger.error("⚠️ %s ended with an error", task.get_name(), exc_info=exc)

    # -- owning one instance ------------------------------------------------------

    async def _start(self, rows: list[store.Row]) -> None:
        """Take the leases of ``rows`` and claim them in the database, in one
        Redis call and one transaction, then open a session for each claim."""
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
        while True:
            session = GatewaySession(
                instance_id=held.instance_id,
                url=held.url,
                token=held.token,
                config=self.session_config,
                hooks=self,
            )
            held.session = session
            held.qr_logged = False
            end = await session.run()
            await self._stop_sender(held)
            now = time.time()
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
        when = store.to_dt(now)
        held.retry_count = outcome.retry_count
        held.breaker = outcome.breaker
        held.status = outcome.status
        fields: dict[str, Any] = {
            "status": outcome.status,
            "status_changed_at": when,
            "last_reason": str(end.reason),
            "last_message": end.message[:500],
            "retry_count": outcome.retry_count,
            "next_retry_at": store.to_dt(outcome.next_retry_at),
            "qr_code": "",
            "qr_expires_at": None,
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
        if outcome.transition is Transition.OPENED:
            self.batch.event(
                instance_id,
                EventKind.BREAKER_OPENED,
                epoch=epoch,
                actor=self.actor,
                reason=str(end.reason),
                data={"trip_count": outcome.breaker.trip_count},
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

    # -- session hooks (never block) --------------------------------------------

    def _held_for(self, session: GatewaySession) -> Held | None:
        held = self.held.get(session.instance_id)
        return held if held is not None and held.session is session else None

    def on_hello(self, session: GatewaySession, hello: protocol.Hello) -> None:
        held = self._held_for(session)
        if held is not None:
            self.batch.state(held.instance_id, held.epoch, session_id=session.session_id)
            self._flush_wake.set()

    def on_qr(self, session: GatewaySession, code: str, expires_s: float) -> None:
        held = self._held_for(session)
        if held is None:
            return
        held.status = Status.AWAITING_QR
        now = time.time()
        self.batch.state(
            held.instance_id,
            held.epoch,
            status=Status.AWAITING_QR,
            status_changed_at=store.to_dt(now),
            qr_code=code,
            qr_expires_at=store.to_dt(now + expires_s) if expires_s else None,
        )
        if not held.qr_logged:
            held.qr_logged = True
            self.batch.event(held.instance_id, EventKind.QR, epoch=held.epoch, actor=self.actor)
            logger.info("📱 instance=%s awaiting QR scan", held.instance_id)
        self._flush_wake.set()

    def on_paired(self, session: GatewaySession, account: str) -> None:
        held = self._held_for(session)
        if held is None:
            return
        self.batch.state(held.instance_id, held.epoch, paired=True, account=account, qr_code="", qr_expires_at=None)
        self.batch.event(
            held.instance_id, EventKind.PAIRED, epoch=held.epoch, actor=self.actor, data={"account": account}
        )
        logger.info("🤝 instance=%s paired", held.instance_id)
        self._flush_wake.set()

    def on_ready(self, session: GatewaySession) -> None:
        held = self._held_for(session)
        if held is None:
            return
        now = time.time()
        breaker, transition = after_ready(held.breaker, now=now, policies=self.policies)
        held.breaker = breaker
        held.retry_count = 0
        held.status = Status.CONNECTED
        when = store.to_dt(now)
        self.batch.state(
            held.instance_id,
            held.epoch,
            status=Status.CONNECTED,
            status_changed_at=when,
            connected_at=when,
            retry_count=0,
            next_retry_at=None,
            last_reason="",
            last_message="",
            paired=True,
            qr_code="",
            qr_expires_at=None,
            owner=self.worker_id,
        )
        self.batch.event(held.instance_id, EventKind.READY, epoch=held.epoch, actor=self.actor)
        if transition is not None:
            self.batch.breaker(held.instance_id, held.epoch, breaker)
            self.batch.event(
                held.instance_id,
                store.BREAKER_EVENT[transition],
                epoch=held.epoch,
                actor=self.actor,
                message="trial succeeded",
            )
            logger.info("🟢 instance=%s breaker closed", held.instance_id)
        logger.info("✅ instance=%s connected", held.instance_id)
        self._start_sender(held, session)
        self._progress()
        self._flush_wake.set()

    def on_malformed(self, session: GatewaySession, detail: str) -> None:
        held = self._held_for(session)
        if held is not None:
            self.batch.event(held.instance_id, EventKind.MALFORMED, epoch=held.epoch, actor=self.actor, message=detail)

    def on_frame(self, session: GatewaySession, event: protocol.MessageUpdate | protocol.Inbound) -> None:
        """Message events: outcomes for the sender, inbound messages stored."""
        held = self._held_for(session)
        if held is None:
            return
        if isinstance(event, protocol.Inbound):
            self._spawn_task(self._inbound(held.instance_id, event), f"inbound-{held.instance_id}")
        elif held.sender is not None:
            held.sender.on_update(event)

    async def _inbound(self, instance_id: int, inbound: protocol.Inbound) -> None:
        from campaigns.inbound import handle_inbound

        try:
            await database_sync_to_async(handle_inbound)(instance_id, inbound.server_id, inbound.sender, inbound.text)
        except DB_ERRORS:
            logger.warning("⚠️ instance=%s inbound message not stored: database unavailable", instance_id)

    def _start_sender(self, held: Held, session: GatewaySession) -> None:
        held.sender = Sender(
            session,
            outcomes=lambda: self.outcomes,
            wake_flush=self._flush_wake.set,
            recent=held.recent_sends,
            reads=self.sender_reads,
            claims=self.sender_claims,
        )
        task = held.sender.start()
        self._session_tasks.add(task)
        task.add_done_callback(self._session_done)

    async def _stop_sender(self, held: Held) -> None:
        if held.sender is not None:
            await held.sender.stop()
            held.recent_sends = held.sender.recent
            held.sender = None

    def _spawn_task(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._session_tasks.add(task)
        task.add_done_callback(self._session_done)

    def _progress(self) -> None:
        self.last_progress = time.time()

    # -- flush ----------------------------------------------------------------------

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
        return True

    async def _flush_outcomes(self) -> bool:
        if not self.outcomes:
            return True
        outcomes, self.outcomes = self.outcomes, sending.Outcomes()
        try:
            await database_sync_to_async(sending.apply)(outcomes, self.nack_retry_s)
        except DB_ERRORS as exc:
            logger.warning("⚠️ database unavailable (%s); %d message outcomes kept for retry", exc, len(outcomes))
            self.outcomes = outcomes.merge_newer(self.outcomes)
            return False
        self._progress()
        return True

    # -- leases -----------------------------------------------------------------------

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

    async def _release(self, leases: list[Lease]) -> None:
        if self.leases is None or not leases:
            return
        try:
            await self.leases.release(leases)
        except (RedisError, OSError):
            logger.warning("⚠️ could not release %d leases; they expire by themselves", len(leases))

    # -- heartbeat and audit ---------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        await database_sync_to_async(store.heartbeat)(
            self.worker_id, socket.gethostname(), os.getpid(), len(self.held), self.last_progress
        )
        await asyncio.sleep(self.config.heartbeat_interval)

    async def _audit_loop(self) -> None:
        await asyncio.sleep(self.config.audit_interval)
        if self.held:
            self.enqueue(list(self.held), wake_senders=False)

"""What a session reports (hello, QR, pairing codes, paired, ready,
malformed frames, message events), turned into fenced writes and the
sender's work. Hooks run inside the session's read loop and never block it."""

from __future__ import annotations

import asyncio
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import IntegrityError

from engine import protocol, store
from engine.sender import Sender
from engine.session import GatewaySession
from engine.state import DB_ERRORS, Held, WorkerState
from instances.breaker import State as BreakerState
from instances.breaker_rows import BREAKER_EVENT, to_dt
from instances.decisions import after_ready, trial_check
from instances.models import EventKind, PairState, Status

logger = logging.getLogger("blast.worker")

# Inbound messages stored per transaction (campaigns.inbound.handle_many).
INBOUND_BATCH = 500


class SessionHooks(WorkerState):
    def _held_for(self, session: GatewaySession) -> Held | None:
        held = self.held.get(session.instance_id)
        return held if held is not None and held.session is session else None

    def on_hello(self, session: GatewaySession, hello: protocol.Hello) -> None:
        held = self._held_for(session)
        if held is not None:
            self.batch.state(
                held.instance_id,
                held.epoch,
                session_id=session.session_id,
                gateway_features=sorted(hello.features),
            )
            self._flush_wake.set()
            self.gateway_answered(held)

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
            status_changed_at=to_dt(now),
            qr_code=code,
            qr_expires_at=to_dt(now + expires_s) if expires_s else None,
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
        # A number that pairs (new, or paired again) warms up from now (instances.sending).
        self.batch.state(
            held.instance_id,
            held.epoch,
            paired=True,
            account=account,
            warmup_started_at=to_dt(time.time()),
            **store.NO_PAIRING,
        )
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
        held.connected_at = time.time()
        when = to_dt(now)
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
            owner=self.worker_id,
            **store.NO_PAIRING,
        )
        self.batch.event(held.instance_id, EventKind.READY, epoch=held.epoch, actor=self.actor)
        if transition is not None:
            self.batch.breaker(held.instance_id, held.epoch, breaker)
            self.batch.event(
                held.instance_id,
                BREAKER_EVENT[transition],
                epoch=held.epoch,
                actor=self.actor,
                message="trial succeeded",
            )
            logger.info("🟢 instance=%s breaker closed", held.instance_id)
        if breaker.state is not BreakerState.CLOSED:
            # A trial: it succeeds only if the session stays ready for the flap window.
            self._check_trial_later(held, session, now)
        logger.info("✅ instance=%s connected", held.instance_id)
        self._start_sender(held, session)

    def _check_trial_later(self, held: Held, session: GatewaySession, ready_at: float) -> None:
        left = self.policies.breaker.flap_window_s - (time.time() - ready_at)
        asyncio.get_running_loop().call_later(max(0.0, left) + 0.05, self._check_trial, held, session, ready_at)

    def _check_trial(self, held: Held, session: GatewaySession, ready_at: float) -> None:
        """The trial's session is still the instance's ready one a flap window
        after ``ready``: the breaker closes. (One that dropped sooner has
        reopened it through its session end.)"""
        if self._held_for(session) is not held or not session.ready or held.breaker.state is BreakerState.CLOSED:
            return
        breaker, transition = trial_check(held.breaker, ready_at=ready_at, now=time.time(), policies=self.policies)
        if transition is None:
            self._check_trial_later(held, session, ready_at)  # the clocks disagreed by a hair
            return
        held.breaker = breaker
        self.batch.breaker(held.instance_id, held.epoch, breaker)
        self.batch.event(
            held.instance_id,
            BREAKER_EVENT[transition],
            epoch=held.epoch,
            actor=self.actor,
            message=f"trial succeeded: ready for {self.policies.breaker.flap_window_s:g} s",
        )
        logger.info("🟢 instance=%s breaker closed: the trial stayed ready", held.instance_id)
        self._flush_wake.set()
        self._progress()
        self._flush_wake.set()

    def on_malformed(self, session: GatewaySession, detail: str) -> None:
        held = self._held_for(session)
        if held is not None:
            self.batch.event(held.instance_id, EventKind.MALFORMED, epoch=held.epoch, actor=self.actor, message=detail)

    def on_pair_code(self, session: GatewaySession, code: str) -> None:
        held = self._held_for(session)
        if held is None:
            return
        self.batch.state(held.instance_id, held.epoch, pair_state=PairState.ISSUED, pair_code=code, pair_error="")
        # The code pairs the account like a QR code does: kept out of the log.
        self.batch.event(held.instance_id, EventKind.PAIR_CODE, epoch=held.epoch, actor=self.actor)
        logger.info("🔢 instance=%s pairing code issued", held.instance_id)
        self._flush_wake.set()

    def on_pair_code_failed(self, session: GatewaySession, code: str, message: str) -> None:
        held = self._held_for(session)
        if held is not None:
            self._pair_code_failed(held, f"{code}: {message}")

    def _pair_code_failed(self, held: Held, why: str) -> None:
        """The pairing-code request failed: the row says why, an event records it."""
        why = why[:200]
        self.batch.state(held.instance_id, held.epoch, pair_state=PairState.FAILED, pair_code="", pair_error=why)
        self.batch.event(held.instance_id, EventKind.PAIR_CODE_FAILED, epoch=held.epoch, actor=self.actor, message=why)
        logger.info("🔢 instance=%s pairing code failed: %s", held.instance_id, why)
        self._flush_wake.set()

    async def _request_pair_code(self, held: Held, session: GatewaySession, phone: str) -> None:
        """Send the row's pairing-code request to the gateway, once.

        The request is marked sent in the database first, conditionally
        (``store.take_pair_request``): only the one caller that marked it
        sends the frame. A session that refuses (no ``pair_code`` announced,
        not awaiting pairing) sends nothing and the refusal is recorded.
        """
        try:
            taken = await database_sync_to_async(store.take_pair_request)(held.instance_id, held.epoch, phone)
        except DB_ERRORS:
            # The request stays on the row: the next reconcile of it retries.
            logger.warning("⚠️ instance=%s pairing code not requested: database unavailable", held.instance_id)
            return
        if not taken:
            return
        refusal = await session.request_pair_code(phone)
        if refusal is not None:
            self._pair_code_failed(held, refusal)
            return
        logger.info("🔢 instance=%s pairing code requested", held.instance_id)

    async def _logout(self, held: Held, session: GatewaySession) -> None:
        """Send the row's logout request to the gateway, once (the request is
        cleared in the database first, conditionally)."""
        try:
            taken = await database_sync_to_async(store.take_logout_request)(held.instance_id, held.epoch)
        except DB_ERRORS:
            logger.warning("⚠️ instance=%s logout not sent: database unavailable", held.instance_id)
            return
        if taken and await session.logout():
            logger.info("🚪 instance=%s logout sent: the gateway unlinks the account", held.instance_id)

    async def _run_checks(self, held: Held, session: GatewaySession) -> None:
        """Ask the instance's pending number checks, 50 numbers per ``check``
        frame, paced, while this session is the instance's ready one."""
        from campaigns import numbers

        try:
            while held.session is session and session.ready and not self.stopping:
                batch = await database_sync_to_async(numbers.next_batch)(held.instance_id)
                if batch is None:
                    return
                check_id, phones = batch
                answer = await session.check(phones)
                if isinstance(answer, str):
                    if not session.ready:
                        return  # asked again on the next session
                    logger.info("☎️ instance=%s number check failed: %s", held.instance_id, answer)
                    await database_sync_to_async(numbers.fail)(check_id, answer)
                    continue
                await database_sync_to_async(numbers.record)(check_id, answer)
                await asyncio.sleep(settings.BLAST_NUMBER_CHECK_PACE_S)
        except DB_ERRORS:
            logger.warning("⚠️ instance=%s number checks paused: database unavailable", held.instance_id)
        finally:
            self._checking.discard(held.instance_id)

    def on_frame(self, session: GatewaySession, event: protocol.MessageUpdate | protocol.Inbound) -> None:
        """Message events: outcomes for the sender, inbound messages stored."""
        held = self._held_for(session)
        if held is None:
            return
        if isinstance(event, protocol.Inbound):
            self.inbound.append((held.instance_id, event.server_id, event.sender, event.text))
            if not self._storing_inbound:
                self._storing_inbound = True
                self._spawn_task(self._store_inbound(), "inbound")
        elif held.sender is not None:
            held.sender.on_update(event)

    async def _store_inbound(self) -> None:
        """Store the inbound messages received so far, ``INBOUND_BATCH`` at a
        time (campaigns.inbound.handle_many: one transaction each), until
        none is left. A batch the database refused is kept and tried again
        a second later: nothing received is dropped while the worker lives."""
        from campaigns.inbound import handle_many

        try:
            while self.inbound:
                batch = self.inbound[:INBOUND_BATCH]
                try:
                    await database_sync_to_async(handle_many)(batch)
                except (*DB_ERRORS, IntegrityError) as exc:
                    logger.warning("⚠️ %d inbound messages kept for retry: %s", len(self.inbound), exc)
                    await asyncio.sleep(1.0)
                    continue
                del self.inbound[: len(batch)]
        finally:
            self._storing_inbound = False

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

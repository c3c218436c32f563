"""Sending one instance's queued messages over its ready session.

The connection worker runs one :class:`Sender` per ready session. It takes
the instance's queued messages in order, paces them with the instance's (or
the campaign's) policy, sends each through the session under the message's
stable client id, and turns the ``ack``, ``nack`` and ``receipt`` events the
protocol core (:mod:`engine.protocol`) reads from the gateway's frames into
outcomes that the worker applies to the database in batches. It stops the
moment the session leaves ``ready``; a message sent but not acknowledged
stays queued and is sent again, with the same id, on the next session (the
gateway deduplicates it: delivered once).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, InterfaceError

from campaigns.pacing import Pacing, next_send_at
from engine import outbox
from engine.protocol import MEDIA, Ack, MessageUpdate, Nack
from media.links import media_frame

logger = logging.getLogger("blast.sender")

DAY_S = 86_400.0
# A frame sent without an answer is sent again after this long.
RESEND_AFTER_S = 60.0
# A send that waits for its turn longer than this goes back to read the
# instance's policy: an edited delay or cap applies to the next send.
POLICY_RECHECK_S = 5.0
# An acked or nacked message is kept out of the next batches this long, so
# that a batch read before its outcome was written does not resend it.
SETTLE_S = 30.0
# An idle sender reads again after this long even without a hint (the
# periodic sweep hints instances with due messages; this is the backstop).
IDLE_WAIT_S = 300.0
# Messages read per query.
BATCH = 100


A = TypeVar("A")
R = TypeVar("R")


class Coalesced(Generic[A, R]):
    """A database call that many senders make, run for all of them at once.

    ``run`` takes the arguments of every call waiting and returns their
    results in order; it runs in the database thread. Calls made while one
    run is in progress wait for the next run, so under load one round trip
    serves every sender that asked in the meantime, and an idle call waits
    only for the next turn of the event loop.
    """

    # Calls served by one run at most, so that other database work (the
    # connection engine's writes share the thread) is never held up long.
    LIMIT = 500

    def __init__(self, run: Callable[[list[A]], list[R]]) -> None:
        self._run = database_sync_to_async(run)
        self._waiting: list[tuple[A, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, arg: A) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((arg, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain(), name="coalesced")
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            waiting, self._waiting = self._waiting[: self.LIMIT], self._waiting[self.LIMIT :]
            try:
                results = await self._run([arg for arg, _ in waiting])
            except Exception as exc:  # each caller gets the error of its own call
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(waiting, results, strict=True):
                if not future.done():
                    future.set_result(result)


class Reads(Coalesced[tuple[int, list[int], int], outbox.Read]):
    """Senders' next batches, read together (:func:`outbox.next_batches`)."""

    def __init__(self) -> None:
        super().__init__(lambda requests: outbox.next_batches(requests, time.time()))


class Claims(Coalesced[tuple[int, list[int]], list[int]]):
    """Senders' claims, made together (:func:`outbox.claim_many`)."""

    def __init__(self) -> None:
        super().__init__(lambda requests: outbox.claim_many(requests, time.time()))


class MessageSession(Protocol):
    """The session a sender sends through; it serialises the frames."""

    instance_id: int

    @property
    def ready(self) -> bool: ...

    async def send_message(self, client_id: str, to: str, text: str, media: dict[str, Any] | None = None) -> bool: ...

    def supports(self, feature: str) -> bool: ...

    async def typing(self, to: str) -> bool: ...


class Sender:
    def __init__(
        self,
        session: MessageSession,
        outcomes: Callable[[], outbox.Outcomes],
        wake_flush: Callable[[], None],
        recent: collections.deque[float] | None = None,
        reads: Reads | None = None,
        claims: Claims | None = None,
    ) -> None:
        self._reads = reads or Reads()
        self._claims = claims or Claims()
        self.session = session
        self.instance_id = session.instance_id
        self._outcomes = outcomes
        self._wake_flush = wake_flush
        self.recent = recent  # send times in the last 24 h, shared across sessions
        self.last_send: float | None = recent[-1] if recent else None
        self.hold: dict[int, float] = {}  # message id -> not picked again before this time
        self.client_ids: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._again = False  # the last batch stopped early: read again at once
        self._draws: dict[int, float] = {}  # message id -> its pacing draw, until it is sent
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"sender-{self.instance_id}")
        return self._task

    async def stop(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    # -- what the gateway said ------------------------------------------------------

    def on_update(self, update: MessageUpdate) -> None:
        """Record an ``ack``, ``nack`` or ``receipt`` for the next flush."""
        now = time.time()
        outcomes = self._outcomes()
        if isinstance(update, Ack):
            outcomes.acks[update.id] = (update.server_id, now)
            self._settle(update.id, now + SETTLE_S)
        elif isinstance(update, Nack):
            retry_after = update.retry_after_s
            outcomes.nacks[update.id] = (update.permanent, update.error, retry_after, now)
            self._settle(update.id, now + (SETTLE_S if update.permanent else max(retry_after or 0.0, 1.0)))
        else:
            outcomes.receipt(update.id, update.status, now)
        self._wake_flush()

    def _settle(self, client_id: str, until: float) -> None:
        message_id = self.client_ids.pop(client_id, None)
        if message_id is not None:
            self.hold[message_id] = until

    # -- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while self.session.ready:
            now = time.time()
            self.hold = {mid: until for mid, until in self.hold.items() if until > now}
            # Cleared before the read: a message queued after it wakes us.
            self._wake.clear()
            policy, batch, full = await self._reads((self.instance_id, list(self.hold), BATCH))
            if batch:
                if self.recent is None:  # read once, when there is something to pace
                    self.recent = collections.deque(
                        await database_sync_to_async(outbox.recent_sends)(self.instance_id, time.time())
                    )
                    self.last_send = self.recent[-1] if self.recent else None
                self._again = False
                if not await self._send(policy, batch):
                    return
            if not full and not self._again and self.session.ready:
                # The queue was drained by this read: nothing more until a
                # hint (a new message, or the periodic sweep's for a retry
                # that came due), a held message's time to be sent again,
                # or the idle timeout.
                timeout = IDLE_WAIT_S
                if self.hold:
                    timeout = min(timeout, max(min(self.hold.values()) - time.time(), 0.0) + 0.1)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                except TimeoutError:
                    pass

    async def _send(self, policy: outbox.Policy, batch: list[outbox.Outgoing]) -> bool:
        """Claim and send one batch, in order, paced; False when the session
        can no longer send."""
        # Each message is claimed (a conditional update: still queued, still
        # due) right before its frame goes out, so that a pause, a cancel or
        # an opt-out that lands while it waited for its turn holds it back.
        # Unpaced batches are claimed at once.
        in_batch = {m.id for m in batch}
        self._draws = {mid: d for mid, d in self._draws.items() if mid in in_batch}
        if policy.paused_until > time.time():
            # Paused for repeated limits from the network (instances.restrictions),
            # or outside the sending hours (instances.sending): nothing goes
            # out; read again when the pause ends, or a while on.
            await asyncio.sleep(min(policy.paused_until - time.time(), POLICY_RECHECK_S))
            self._again = True
            return self.session.ready
        unpaced = all(m.delay_max_s <= 0 for m in batch) and not (policy.hourly_cap or policy.daily_cap)
        claimed: set[int] | None = None
        if unpaced:
            claimed = set(await self._claims((self.instance_id, [m.id for m in batch])))
        read_at = time.time()
        for n, message in enumerate(batch):
            if time.time() - read_at > POLICY_RECHECK_S and claimed is None:
                # Read the policy again (a pause for limits, an edited cap) every few seconds.
                self._again = True
                return True
            pacing = Pacing(
                delay_min_s=message.delay_min_s,
                delay_max_s=message.delay_max_s,
                hourly_cap=policy.hourly_cap,
                daily_cap=policy.daily_cap,
            )
            if claimed is None:
                if not await self._wait_turn(pacing, message.id):
                    # Waited a while: read the policy (and the queue) again, so
                    # that an edited cap or delay applies to the next send.
                    self._again = True
                    return self.session.ready
                if not self.session.ready:
                    return False
                self._draws.pop(message.id, None)
                if not await self._claims((self.instance_id, [message.id])):
                    continue
            elif message.id not in claimed:
                continue
            if not self.session.ready:
                return False
            frame_media: dict[str, Any] | None = None
            if message.media is not None:
                if not self.session.supports(MEDIA):
                    await self._media_unsupported(message)
                    continue
                frame_media = media_frame(message.media)
            if policy.typing and await self.session.typing(message.to):
                # Typing before sending, as a person does (instances.sending).
                await asyncio.sleep(random.uniform(settings.BLAST_TYPING_MIN_S, settings.BLAST_TYPING_MAX_S))
                if not self.session.ready:
                    return False
            if not await self.session.send_message(message.client_id, message.to, message.text, frame_media):
                if claimed is not None:
                    # Claimed together but never written: they may move to another instance.
                    await self._unclaim([m.id for m in batch[n:] if m.id in claimed])
                return False
            sent = time.time()
            self.hold[message.id] = sent + RESEND_AFTER_S
            self.client_ids[message.client_id] = message.id
            self.last_send = sent
            assert self.recent is not None  # _run reads it before the first batch is sent
            self.recent.append(sent)
        self._wake_flush()
        return True

    async def _unclaim(self, ids: list[int]) -> None:
        try:
            await database_sync_to_async(outbox.unclaim)(self.instance_id, ids)
        except (DatabaseError, InterfaceError):  # best effort: they stay attempted, on this instance
            logger.warning("⚠️ instance=%s %d unsent claims left attempted", self.instance_id, len(ids))

    async def _media_unsupported(self, message: outbox.Outgoing) -> None:
        """A message with a file on a session whose gateway did not announce
        ``media``: failed at once with its reason, never sent as a frame the
        gateway cannot read."""
        logger.warning(
            "📎 instance=%s message=%s has a file, but the gateway did not announce media: failed",
            self.instance_id,
            message.client_id,
        )
        await database_sync_to_async(outbox.fail_media_unsupported)(message.id, time.time())

    async def _wait_turn(self, pacing: Pacing, message_id: int) -> bool:
        """Sleep until pacing allows the next send (True), or for at most
        ``POLICY_RECHECK_S`` (False: the caller reads the policy again). One
        random draw per message, so that waking up early (caps re-checked)
        keeps its delay."""
        assert self.recent is not None
        # Kept across re-reads until the message is sent: a fresh draw every
        # few seconds would skew the delays toward their minimum.
        draw = self._draws.setdefault(message_id, random.random())
        deadline = time.time() + POLICY_RECHECK_S
        while True:
            now = time.time()
            while self.recent and now - self.recent[0] > DAY_S:
                self.recent.popleft()
            at = next_send_at(pacing, self.recent, self.last_send, now, lambda: draw)
            if at <= now:
                return True
            if now >= deadline:
                return False
            await asyncio.sleep(min(at, deadline) - now)

"""The gateway side of the simulator: the upgrade endpoint and what sessions share.

:class:`Simulator` owns the :class:`~simulator.state.State` and the random
source of every id, and answers ``GET /v1/instances/{instance_key}/socket``
(PROTOCOL.md section 1): key check, upgrade faults (``refuse``, ``hang``),
bearer authentication (trust on first use), then one
:class:`~simulator.session.Session` per accepted upgrade. It registers
sessions (a newer one replaces an older one with 4440), pairs and unpairs
instances, applies the session faults (``close``, ``silent``, ``malformed``)
to sessions as they become ready or at once to live ones, and schedules
receipts. Everything it starts in the background is tracked, so
:meth:`Simulator.shutdown` and a reset can end it, and a failure is logged,
never lost. The control API (:mod:`simulator.control_api`) drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from simulator.codes import LOGGED_OUT, REPLACED
from simulator.config import SimConfig
from simulator.faults import Fault
from simulator.inputs import BadRequest, NotFound
from simulator.protocol import ABORT, MAX_FRAME_BYTES, SUBPROTOCOL, bearer_token, canonical_key
from simulator.session import Session
from simulator.state import Instance, State

logger = logging.getLogger(__name__)

# How long a close handshake the simulator starts may take before it drops TCP.
CLOSE_TIMEOUT_S = 5.0
# How often a hanging upgrade checks whether its client gave up.
HANG_POLL_S = 0.1
PAIR_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTVWXYZ"


def json_error(status: int, error: str, message: str, **headers: str) -> web.Response:
    """An HTTP error answer: ``{"error": error, "message": message}`` with ``status`` and ``headers``."""
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


class Simulator:
    """The gateway simulator: owns the state, answers upgrades and holds what sessions share."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.state = State()
        self._background: set[asyncio.Task[None]] = set()

    # ids

    def new_session_id(self) -> str:
        return f"sess-{self.rng.getrandbits(64):016x}"

    def new_qr_code(self) -> str:
        return f"2@{self.rng.getrandbits(128):032x}"

    def new_pair_code(self) -> str:
        # Eight characters, as WhatsApp's pairing codes: no 0, O, 1 or I to misread.
        return "".join(self.rng.choice(PAIR_CODE_ALPHABET) for _ in range(8))

    def new_server_id(self) -> str:
        return f"3EB0{self.rng.getrandbits(80):020X}"

    def new_account(self) -> str:
        return f"+1555{self.rng.randrange(10**7):07d}"

    # tasks

    def background(self, coro: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]] | None = None) -> None:
        """Run ``coro`` detached; its exception, if any, is logged, never lost."""
        bucket = self._background if tasks is None else tasks
        task = asyncio.get_running_loop().create_task(coro)
        bucket.add(task)

        def done(t: asyncio.Task[None]) -> None:
            bucket.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("background task failed", exc_info=t.exception())

        task.add_done_callback(done)

    # instances

    def instance(self, key: str) -> Instance:
        """The instance ``key``, created (paired if ``--start-paired``) on first sight."""
        inst = self.state.instances.get(key)
        if inst is None:
            inst = Instance(key=key, paired=self.config.start_paired)
            if inst.paired:
                inst.account = self.new_account()
            self.state.instances[key] = inst
        return inst

    def known_instance(self, key: str) -> Instance:
        if canonical_key(key) is None:
            raise BadRequest("instance key must be a canonical UUID")
        inst = self.state.instances.get(key)
        if inst is None:
            raise NotFound(f"instance {key} is unknown to the simulator")
        return inst

    def pair_instance(self, inst: Instance, account: str | None) -> None:
        """Pair ``inst``; its live sessions waiting on a QR go `paired` then `ready`."""
        if account is not None:
            inst.account = account
        elif inst.account is None:
            inst.account = self.new_account()
        if not inst.paired:
            inst.paired = True
            logger.info("PAIRED instance=%s account=%s", inst.key, inst.account)
        for session in inst.sessions:
            session.paired_event.set()

    def unpair_instance(self, inst: Instance, *, why: str) -> int:
        """Unpair ``inst`` and close its live sessions with 4401 (logged out)."""
        inst.paired = False
        inst.account = None
        return sum(session.close_soon(LOGGED_OUT, why) for session in list(inst.sessions))

    # sessions

    def _register(self, session: Session) -> None:
        inst, state = session.instance, self.state
        inst.sessions.append(session)
        inst.max_concurrent = max(inst.max_concurrent, len(inst.sessions))
        state.sessions += 1
        state.idle.clear()
        state.max_sessions = max(state.max_sessions, state.sessions)
        logger.info(
            "OPEN instance=%s session=%s paired=%s concurrent=%d",
            inst.key,
            session.session_id,
            inst.paired,
            len(inst.sessions),
        )
        for older in inst.sessions[:-1]:
            if older.close_soon(REPLACED, "replaced"):
                logger.info("REPLACED instance=%s older=%s newer=%s", inst.key, older.session_id, session.session_id)

    def _unregister(self, session: Session, state: State) -> None:
        inst = session.instance
        with contextlib.suppress(ValueError):
            inst.sessions.remove(session)
            state.sessions -= 1
            if state.sessions == 0:
                state.idle.set()
        logger.info(
            "CLOSE instance=%s session=%s code=%s by=%s",
            inst.key,
            session.session_id,
            session.close_code if session.close_code is not None else session.ws.close_code,
            session.close_why,
        )

    def apply_ready_faults(self, session: Session) -> None:
        """Faults that act on a session once it is ready: close and malformed."""
        faults, key = self.state.faults, session.instance.key
        fault = faults.take("close", key)
        if fault is not None:
            self._apply_close(fault, session)
        fault = faults.take("malformed", key)
        if fault is not None:
            session.spawn(session.send_malformed(fault.params["count"], fault.params["interval_s"]))

    def _apply_close(self, fault: Fault, session: Session) -> None:
        assert session.ready_at is not None
        loop = asyncio.get_running_loop()
        deadline = max(session.ready_at, fault.created_at) + fault.params["after_s"]
        session.schedule_close(fault.params["code"], deadline - loop.time(), "fault:close")

    def apply_to_live(self, fault: Fault) -> int:
        """Apply a newly set fault to the live sessions in its scope; return how many."""
        if fault.name not in ("close", "silent", "malformed"):
            return 0
        applied = 0
        for session in self.state.live_sessions():
            if fault.instance is not None and session.instance.key != fault.instance:
                continue
            if session.close_requested:
                continue
            if fault.name != "silent" and session.ready_at is None:
                continue  # it gets the fault when it becomes ready
            if fault.name == "silent" and session.silent:
                continue
            if not self.state.faults.consume(fault):
                break
            applied += 1
            if fault.name == "close":
                self._apply_close(fault, session)
            elif fault.name == "silent":
                session.silent = True
            else:
                session.spawn(session.send_malformed(fault.params["count"], fault.params["interval_s"]))
        return applied

    def schedule_receipts(self, inst: Instance, message_id: str) -> None:
        delay = self.config.receipt_delay
        if delay < 0:
            return

        async def receipts() -> None:
            for status in ("delivered", "read"):
                if delay > 0:
                    await asyncio.sleep(delay)
                session = inst.ready_session()
                if session is not None:
                    await session.send({"type": "receipt", "id": message_id, "status": status})

        self.background(receipts(), self.state.tasks)

    # the gateway endpoint

    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/instances/{instance_key}/socket`` (PROTOCOL.md section 1)."""
        key = canonical_key(request.match_info["instance_key"])
        if key is None:
            return json_error(404, "not_found", "instance key must be a canonical UUID")
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            heartbeat=None,  # the client pings, the gateway answers (section 3)
            autoping=False,  # pongs are sent by the session, so a silent one can withhold them
            autoclose=False,
            compress=False,
            max_msg_size=MAX_FRAME_BYTES,
            timeout=CLOSE_TIMEOUT_S,
        )
        if not ws.can_prepare(request).ok:
            return json_error(400, "bad_request", "expected a WebSocket upgrade")
        state = self.state
        inst = self.instance(key)
        inst.attempts += 1
        state.count_attempt(time.time())

        fault = state.faults.take("refuse", key)
        if fault is not None:
            inst.refused += 1
            status, retry_after = fault.params["status"], fault.params["retry_after"]
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            logger.info("REFUSE instance=%s status=%s retry_after=%s", key, status, retry_after)
            return json_error(status, "refused", "refused by a simulator fault", **headers)
        if state.faults.take("hang", key) is not None:
            return await self._hang(request, inst, state)

        token = bearer_token(request.headers.get("Authorization"))
        if token is None or (inst.token is not None and token != inst.token):
            inst.refused += 1
            logger.info("UNAUTHORIZED instance=%s", key)
            return json_error(401, "unauthorized", "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        if inst.token is None:
            inst.token = token  # trust on first use

        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError) as exc:  # the client left mid-handshake
            logger.info("upgrade failed instance=%s: %s", key, exc)
            return ws if ws.prepared else web.Response(status=503)
        inst.connects += 1
        transport = request.transport

        fault = state.faults.take("close_before_hello", key)
        if fault is not None:
            code = fault.params["code"]
            logger.info("CLOSE-BEFORE-HELLO instance=%s code=%s", key, code)
            if code == ABORT:
                if transport is not None:
                    transport.close()
            else:
                with contextlib.suppress(Exception):
                    await ws.close(code=code)
            return ws

        session = Session(self, inst, ws, transport, self.new_session_id())
        if state.faults.take("silent", key) is not None:
            session.silent = True
        self._register(session)
        try:
            await session.run()
        finally:
            self._unregister(session, state)
        return ws

    async def _hang(self, request: web.Request, inst: Instance, state: State) -> web.StreamResponse:
        """Hold the upgrade request unanswered until the client (or a restart) drops it."""
        transport = request.transport
        inst.hung += 1
        logger.info("HANG instance=%s", inst.key)
        if transport is None:
            return web.Response(status=503)
        state.hanging.add(transport)
        try:
            # aiohttp has no hook for "the client of a pending request left", so poll.
            while not transport.is_closing() and transport in state.hanging:  # noqa: ASYNC110
                await asyncio.sleep(HANG_POLL_S)
        finally:
            state.hanging.discard(transport)
        if not transport.is_closing():
            transport.close()
        # The connection is gone; aiohttp discards this response.
        return web.Response(status=503)

    # closing everything

    def drop_all(self, state: State, code: int, why: str) -> int:
        """Close every session of ``state`` with ``code`` (or drop it) and every hanging upgrade."""
        closed = sum(session.close_soon(code, why) for session in state.live_sessions())
        for transport in list(state.hanging):
            state.hanging.discard(transport)
            transport.close()
        return closed

    async def shutdown(self, grace_s: float = 3.0) -> None:
        """Close every session with 1001 and wait (up to ``grace_s``) for them to end."""
        state = self.state
        self.drop_all(state, 1001, "shutdown")
        if state.sessions > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.idle.wait(), grace_s)
        for session in state.live_sessions():
            session.drop()
        for task in list(state.tasks):
            task.cancel()

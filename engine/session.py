"""One gateway session: the client side of PROTOCOL.md for one instance.

:meth:`GatewaySession.run` opens the socket, speaks the protocol until the
session ends, and returns a :class:`~instances.decisions.SessionEnd`. It never
raises because of the network or the gateway: every exception is caught at
this boundary and classified into a reason. It only reports what it sees,
through :class:`SessionHooks`; the worker decides what follows.

It is the I/O driver of :class:`engine.protocol.ClientProtocol`: every frame
received goes into the protocol with the time, and the session acts on the
typed event that comes out; every frame it sends is serialised there. It
reads no frame itself.

Closing is safe by construction: :meth:`stop` may be called at any moment,
while connecting, while open, while already closing, or twice; the socket is
closed only when it is connecting or open, and a close that fails is logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Subprotocol

from engine import protocol
from instances.decisions import SessionEnd
from instances.reasons import Reason, from_exception

logger = logging.getLogger("blast.session")

SUBPROTOCOL = Subprotocol(protocol.SUBPROTOCOL)
# PROTOCOL.md section 2.4: a client waits up to 30 s for a `check_result`.
CHECK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SessionConfig:
    open_timeout: float = 10.0
    hello_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 2.0
    malformed_limit: int = protocol.MALFORMED_LIMIT
    malformed_window: float = protocol.MALFORMED_WINDOW_S
    max_frame_bytes: int = protocol.MAX_FRAME_BYTES

    @classmethod
    def from_settings(cls) -> SessionConfig:
        from django.conf import settings

        return cls(
            open_timeout=settings.BLAST_OPEN_TIMEOUT_S,
            hello_timeout=settings.BLAST_HELLO_TIMEOUT_S,
            ping_interval=settings.BLAST_PING_INTERVAL_S,
            ping_timeout=settings.BLAST_PING_TIMEOUT_S,
            close_timeout=settings.BLAST_CLOSE_TIMEOUT_S,
            malformed_limit=settings.BLAST_MALFORMED_LIMIT,
            malformed_window=settings.BLAST_MALFORMED_WINDOW_S,
        )


class SessionHooks(Protocol):
    """What a session reports to its owner. Hooks must not block."""

    def on_hello(self, session: GatewaySession, hello: protocol.Hello) -> None: ...
    def on_qr(self, session: GatewaySession, code: str, expires_s: float) -> None: ...
    def on_paired(self, session: GatewaySession, account: str) -> None: ...
    def on_ready(self, session: GatewaySession) -> None: ...
    def on_malformed(self, session: GatewaySession, detail: str) -> None: ...
    def on_pair_code(self, session: GatewaySession, code: str) -> None: ...
    def on_pair_code_failed(self, session: GatewaySession, code: str, message: str) -> None: ...
    def on_frame(self, session: GatewaySession, event: protocol.MessageUpdate | protocol.Inbound) -> None:
        """An ``ack``, ``nack``, ``receipt`` or ``inbound`` frame, read."""


class _connect(connect):
    """``connect`` that never follows redirects: a tenant's session goes to
    the gateway an administrator allowed, nowhere else."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


# What the session opening a connection in this task awaits before its
# upgrade request (set by GatewaySession._run, read by the handshake).
_BEFORE_REQUEST: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar(
    "before_request", default=None
)


class _GatedConnection(ClientConnection):
    """A client connection that awaits the session's ``before_request`` once
    its TCP connection is open, right before the upgrade request is written."""

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        before_request = _BEFORE_REQUEST.get()
        if before_request is not None:
            await before_request()
        await super().handshake(*args, **kwargs)


class _HelloTimeout(Exception):
    pass


class _TooManyMalformed(Exception):
    pass


class GatewaySession:
    def __init__(
        self,
        *,
        instance_id: int,
        url: str,
        token: str,
        config: SessionConfig,
        hooks: SessionHooks,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self._before_request = before_request
        self.url = url
        self._token = token
        self.config = config
        self.hooks = hooks
        self.ws: ClientConnection | None = None
        self.session_id = ""
        self.ready_at: float | None = None
        self.hello_at: float | None = None  # epoch seconds: the gateway answered
        self.stop_reason: Reason | None = None
        self._task: asyncio.Task[SessionEnd] | None = None
        self.protocol = protocol.ClientProtocol(
            malformed_limit=config.malformed_limit,
            malformed_window=config.malformed_window,
            max_frame_bytes=config.max_frame_bytes,
        )
        self._close_code = 1000
        self._checks: dict[str, asyncio.Future[dict[str, bool] | str]] = {}

    def __repr__(self) -> str:
        return f"<GatewaySession instance={self.instance_id}>"

    @property
    def ready(self) -> bool:
        return self.ready_at is not None and self.ws is not None and self.ws.state is State.OPEN

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> SessionEnd:
        """Run the session to its end and say how it ended. Never raises,
        except CancelledError when cancelled by someone other than stop()."""
        self._task = asyncio.current_task()
        try:
            return await self._run()
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return self._stopped()
        except _HelloTimeout:
            return SessionEnd(Reason.TIMED_OUT, "no hello within the hello timeout", self.ready_at)
        except _TooManyMalformed:
            # PROTOCOL.md section 5: close with 1002, protocol_error.
            self._close_code = 1002
            return SessionEnd(Reason.PROTOCOL_ERROR, "too many malformed frames", self.ready_at)
        except Exception as exc:
            if self.stop_reason is not None:
                return self._stopped()
            reason, retry_after = from_exception(exc)
            return SessionEnd(reason, _describe(exc), self.ready_at, retry_after)
        finally:
            if self.stop_reason in (Reason.SHUTDOWN, Reason.LEASE_LOST, Reason.HANDOFF):
                self._close_code = 1001
            await self._close(self._close_code)

    def stop(self, reason: Reason) -> None:
        """End the session for ``reason`` (stopped, lease lost, shutdown).

        Safe at any moment and idempotent: the first reason wins. A session
        still connecting is cancelled; an open one is closed by run()."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _stopped(self) -> SessionEnd:
        assert self.stop_reason is not None
        return SessionEnd(self.stop_reason, "ended by the platform", self.ready_at)

    async def _close(self, code: int) -> None:
        ws = self.ws
        if ws is None or ws.state not in (State.CONNECTING, State.OPEN):
            return
        try:
            await asyncio.wait_for(ws.close(code), timeout=self.config.close_timeout + 1)
        except (TimeoutError, asyncio.CancelledError):
            ws.transport.abort()
        except Exception:
            logger.warning("instance=%s close failed; aborting the connection", self.instance_id, exc_info=True)
            ws.transport.abort()

    # -- protocol ------------------------------------------------------------

    async def _run(self) -> SessionEnd:
        _BEFORE_REQUEST.set(self._before_request)  # this task's context only
        self.ws = await _connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            subprotocols=[SUBPROTOCOL],
            compression=None,
            proxy=None,
            open_timeout=self.config.open_timeout,
            ping_interval=self.config.ping_interval,
            ping_timeout=self.config.ping_timeout,
            close_timeout=self.config.close_timeout,
            max_size=self.config.max_frame_bytes,
            max_queue=8,
            user_agent_header="blast-worker",
            create_connection=_GatedConnection,
        )
        ws = self.ws
        await self._await_hello(ws)
        while True:
            self._handle(self._receive(await ws.recv()))

    async def _await_hello(self, ws: ClientConnection) -> None:
        try:
            async with asyncio.timeout(self.config.hello_timeout):
                while not isinstance(hello := self._receive(await ws.recv()), protocol.Hello):
                    pass  # malformed frames are counted; anything else before hello is ignored
        except TimeoutError:
            raise _HelloTimeout from None
        self.session_id = hello.session_id
        self.hello_at = time.time()
        if hello.heartbeat_s is not None:
            # websockets' keepalive reads ping_interval on every turn.
            ws.ping_interval = hello.heartbeat_s
        self.hooks.on_hello(self, hello)

    def _receive(self, message: str | bytes) -> protocol.Event | None:
        """The protocol's event for a frame; a malformed one is reported here
        (and ends the session when it exceeds the budget)."""
        now = time.monotonic()
        if isinstance(message, bytes):
            event: protocol.Event | None = self.protocol.receive_binary(now)
        else:
            event = self.protocol.receive_text(message, now)
        if isinstance(event, protocol.Malformed):
            logger.warning("⚠️ malformed frame instance=%s: %s", self.instance_id, event.reason)
            self.hooks.on_malformed(self, str(event.reason))
            if event.over_budget:
                raise _TooManyMalformed
        return event

    def _handle(self, event: protocol.Event | None) -> None:
        match event:
            case protocol.Qr(code=code, expires_s=expires_s):
                self.hooks.on_qr(self, code, expires_s)
            case protocol.Paired(account=account):
                self.hooks.on_paired(self, account)
            case protocol.Ready():
                self.ready_at = time.time()
                self.hooks.on_ready(self)
            case protocol.PairCode(code=code):
                self.hooks.on_pair_code(self, code)
            case protocol.PairCodeFailed(code=code, message=message):
                self.hooks.on_pair_code_failed(self, code, message)
            case protocol.CheckResult(id=check_id, results=results):
                waiting = self._checks.pop(check_id, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(results)
            case protocol.Error(code=code, message=message, id=ref) if ref in self._checks:
                waiting = self._checks.pop(ref)
                if not waiting.done():
                    waiting.set_result(f"{code}: {message}")
            case protocol.Error(code=code, message=message):
                logger.warning("gateway complaint instance=%s code=%s message=%s", self.instance_id, code, message)
            case protocol.Ack() | protocol.Nack() | protocol.Receipt() | protocol.Inbound():
                self.hooks.on_frame(self, event)
            case _:
                pass  # malformed (already reported), ignored frames, a hello again

    async def send_message(self, client_id: str, to: str, text: str, media: dict[str, Any] | None = None) -> bool:
        """Send one message's ``send`` frame if the session is ready; False
        if it is not (or the socket closed meanwhile). With ``media`` (the
        frame's ``media`` object), ``text`` is its caption."""
        ws = self.ws
        if not self.ready or ws is None:
            return False
        if media is None:
            frame = self.protocol.send(client_id, to, text)
        else:
            frame = self.protocol.send_media(client_id, to, media, text)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return False
        return True

    def supports(self, feature: str) -> bool:
        """Whether the gateway announced ``feature`` in this session's ``hello``."""
        return self.protocol.supports(feature)

    async def typing(self, to: str) -> bool:
        """Show the account typing to ``to`` (v1.1 ``presence`` composing);
        False when the session is not ready or the gateway did not announce
        ``presence``."""
        ws = self.ws
        if not self.ready or ws is None or not self.supports(protocol.PRESENCE):
            return False
        try:
            await ws.send(self.protocol.presence(to, "composing"))
        except ConnectionClosed:
            return False
        return True

    async def logout(self) -> bool:
        """Send ``logout``; False when the session is not open."""
        ws = self.ws
        if ws is None or ws.state is not State.OPEN:
            return False
        try:
            await ws.send(self.protocol.logout())
        except ConnectionClosed:
            return False
        return True

    async def check(self, phones: list[str]) -> dict[str, bool] | str:
        """Ask the gateway which of ``phones`` (at most 50) are on the
        network (v1.1 ``check``): the answer, or why there is none."""
        ws = self.ws
        if not self.ready or ws is None:
            return "the session is not ready"
        if not self.supports(protocol.CHECK):
            return "the gateway did not announce check (protocol v1.1)"
        check_id = uuid.uuid4().hex[:16]
        waiting: asyncio.Future[dict[str, bool] | str] = asyncio.get_running_loop().create_future()
        self._checks[check_id] = waiting
        try:
            await ws.send(self.protocol.check(check_id, phones))
            return await asyncio.wait_for(waiting, CHECK_TIMEOUT_S)
        except ConnectionClosed:
            return "the session closed"
        except TimeoutError:
            return f"the gateway did not answer within {CHECK_TIMEOUT_S:g} s"
        finally:
            self._checks.pop(check_id, None)

    async def request_pair_code(self, phone: str) -> str | None:
        """Ask the gateway for a pairing code for ``phone`` (E.164).

        Returns None once the frame is sent (the answer comes as
        ``on_pair_code`` or ``on_pair_code_failed``), else why nothing was
        sent: the gateway did not announce ``pair_code``, the session is not
        awaiting pairing, the phone is not E.164, or the socket is closed.
        """
        refusal = self.protocol.pair_code_refusal()
        if refusal is not None:
            return refusal
        ws = self.ws
        if ws is None or ws.state is not State.OPEN:
            return "the session is not open"
        try:
            frame = self.protocol.pair_code(phone)
        except ValueError as exc:
            return str(exc)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return "the session closed before the request was sent"
        return None


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:500]

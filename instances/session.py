"""One gateway session: the client side of PROTOCOL.md for one instance.

:meth:`GatewaySession.run` opens the socket, speaks the protocol until the
session ends, and returns a :class:`~instances.decisions.SessionEnd`. It never
raises because of the network or the gateway: every exception is caught at
this boundary and classified into a reason. It only reports what it sees,
through :class:`SessionHooks`; the worker decides what follows.

Closing is safe by construction: :meth:`stop` may be called at any moment,
while connecting, while open, while already closing, or twice; the socket is
closed only when it is connecting or open, and a close that fails is logged.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Subprotocol

from instances.decisions import SessionEnd
from instances.reasons import Reason, from_exception

logger = logging.getLogger("blast.session")

SUBPROTOCOL = Subprotocol("blast-gateway.v1")


@dataclass(frozen=True)
class SessionConfig:
    open_timeout: float = 10.0
    hello_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 2.0
    malformed_limit: int = 5
    malformed_window: float = 60.0
    max_frame_bytes: int = 64 * 1024

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

    def on_hello(self, session: GatewaySession, frame: dict[str, Any]) -> None: ...
    def on_qr(self, session: GatewaySession, code: str, expires_s: float) -> None: ...
    def on_paired(self, session: GatewaySession, account: str) -> None: ...
    def on_ready(self, session: GatewaySession) -> None: ...
    def on_malformed(self, session: GatewaySession, detail: str) -> None: ...
    def on_frame(self, session: GatewaySession, frame: dict[str, Any]) -> None: ...


class _connect(connect):
    """``connect`` that never follows redirects: a tenant's session goes to
    the gateway an administrator allowed, nowhere else."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


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
    ) -> None:
        self.instance_id = instance_id
        self.url = url
        self._token = token
        self.config = config
        self.hooks = hooks
        self.ws: ClientConnection | None = None
        self.session_id = ""
        self.ready_at: float | None = None
        self.stop_reason: Reason | None = None
        self._task: asyncio.Task[SessionEnd] | None = None
        self._malformed: collections.deque[float] = collections.deque()
        self._close_code = 1000

    def __repr__(self) -> str:
        return f"<GatewaySession instance={self.instance_id}>"

    @property
    def ready(self) -> bool:
        return self.ready_at is not None and self.ws is not None and self.ws.state is State.OPEN

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> SessionEnd:
        """Run the session to its end and say how it ended. Never raises,
        except CancelledError when cancelled by someone other than stop()."""
        self._task = asyncio.current_task()  # type: ignore[assignment]
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
            if self.stop_reason in (Reason.SHUTDOWN, Reason.LEASE_LOST):
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
        )
        ws = self.ws
        await self._await_hello(ws)
        while True:
            message = await ws.recv()
            self._dispatch(message)

    async def _await_hello(self, ws: ClientConnection) -> None:
        try:
            async with asyncio.timeout(self.config.hello_timeout):
                while True:
                    frame = self._parse(await ws.recv())
                    if frame is not None and frame["type"] == "hello":
                        break
        except TimeoutError:
            raise _HelloTimeout from None
        self.session_id = str(frame.get("session_id", ""))[:100]
        heartbeat = frame.get("heartbeat_s")
        if isinstance(heartbeat, int | float) and not isinstance(heartbeat, bool) and heartbeat > 0:
            # websockets' keepalive reads ping_interval on every turn.
            ws.ping_interval = float(heartbeat)
        self.hooks.on_hello(self, frame)

    def _parse(self, message: str | bytes) -> dict[str, Any] | None:
        """A frame as a dict, or None after counting it as malformed."""
        if isinstance(message, bytes):
            self._malformed_frame("binary frame")
            return None
        try:
            frame = json.loads(message)
        except ValueError:
            self._malformed_frame("not JSON")
            return None
        if not isinstance(frame, dict):
            self._malformed_frame("not an object")
            return None
        if not isinstance(frame.get("type"), str):
            self._malformed_frame("no type")
            return None
        return frame

    def _malformed_frame(self, detail: str) -> None:
        now = time.monotonic()
        window = self._malformed
        window.append(now)
        while window and now - window[0] > self.config.malformed_window:
            window.popleft()
        logger.warning("⚠️ malformed frame instance=%s: %s", self.instance_id, detail)
        self.hooks.on_malformed(self, detail)
        if len(window) > self.config.malformed_limit:
            raise _TooManyMalformed

    def _dispatch(self, message: str | bytes) -> None:
        frame = self._parse(message)
        if frame is None:
            return
        kind = frame["type"]
        if kind == "qr":
            code = frame.get("code")
            if isinstance(code, str):
                expires = frame.get("expires_s")
                self.hooks.on_qr(self, code[:500], float(expires) if isinstance(expires, int | float) else 0.0)
        elif kind == "paired":
            account = frame.get("account")
            self.hooks.on_paired(self, account[:20] if isinstance(account, str) else "")
        elif kind == "ready":
            if self.ready_at is None:
                self.ready_at = time.time()
                self.hooks.on_ready(self)
        elif kind == "error":
            logger.warning(
                "gateway complaint instance=%s code=%s message=%s",
                self.instance_id,
                frame.get("code"),
                str(frame.get("message"))[:200],
            )
        elif kind in ("ack", "nack", "receipt", "inbound"):
            self.hooks.on_frame(self, frame)
        # hello again, or unknown types: ignored (forward compatibility).

    async def send_frame(self, frame: dict[str, Any]) -> bool:
        """Send a client frame if the session is ready; False if it is not."""
        ws = self.ws
        if not self.ready or ws is None:
            return False
        try:
            await ws.send(json.dumps(frame, separators=(",", ":")))
        except ConnectionClosed:
            return False
        return True


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:500]

"""One accepted WebSocket session: PROTOCOL.md from ``hello`` to the close.

:class:`Session` serves one upgraded connection of one instance. It sends
``hello``, then ``ready`` (paired instance) or ``qr`` frames until the
instance pairs; it reads client frames until the socket closes, answers
pings itself (so a ``silent`` session can withhold pongs), validates and
acks ``send`` frames with the dedup table, answers a ``pair_code`` request
with a code that pairs the instance after ``--pair-code-delay`` (as if it
were typed on the phone), and answers anything malformed with an ``error``
frame. Closes it is told to make (:meth:`Session.close_soon`)
return at once and run in the background. It never raises out of
:meth:`Session.run` except on cancellation. What the session shares with
other sessions (pairing, faults, receipts, ids) it asks of its
:class:`~simulator.gateway.Simulator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType, web

from simulator.faults import MALFORMED_FRAMES
from simulator.protocol import (
    ABORT,
    CHECK,
    E164_RE,
    MAX_CHECK_PHONES,
    MAX_TEXT_CHARS,
    MEDIA,
    MESSAGE_ID_RE,
    PAIR_CODE,
    PRESENCE,
    PRESENCE_STATES,
    PROTOCOL_VERSION,
    V11_FEATURES,
    media_problem,
    valid_close_code,
)

if TYPE_CHECKING:
    from simulator.gateway import Simulator
    from simulator.state import Instance

logger = logging.getLogger(__name__)

MEDIA_FETCH_TIMEOUT_S = 10.0


class Session:
    """One accepted WebSocket session of one instance.

    The handler task runs :meth:`run`: it sends `hello`, pairs or goes
    `ready`, then reads client frames until the socket closes. Timers (QR
    rotation, scheduled closes, malformed frames) are tasks owned by the
    session and cancelled when it ends.
    """

    def __init__(
        self,
        sim: Simulator,
        instance: Instance,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport | None,
        session_id: str,
    ) -> None:
        self.sim = sim
        self.instance = instance
        self.ws = ws
        self.transport = transport
        self.session_id = session_id
        self.ready_at: float | None = None
        self.silent = False
        self.close_requested = False
        self.close_why = "client"
        self.close_code: int | None = None  # the code the simulator closed with, if it did
        self.paired_event = asyncio.Event()
        # The phone a pairing code was given for: it pairs by that code, not by the QR.
        self.pair_code_phone: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # sending

    async def send(self, frame: Mapping[str, Any]) -> bool:
        """Send one JSON frame; False (never an exception) if it could not go out."""
        return await self._send_raw(json.dumps(frame, separators=(",", ":")))

    async def _send_raw(self, data: str | bytes) -> bool:
        if self.silent or self.ws.closed:
            return False
        try:
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("send failed instance=%s session=%s: %s", self.instance.key, self.session_id, exc)
            return False
        return True

    async def error(self, code: str, message: str, **extra: Any) -> None:
        await self.send({"type": "error", "code": code, "message": message, **extra})

    # tasks and closing

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that ends with this session."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "session task failed instance=%s session=%s",
                self.instance.key,
                self.session_id,
                exc_info=task.exception(),
            )

    def close_soon(self, code: int, why: str) -> bool:
        """Start closing with ``code`` (:data:`ABORT`: drop TCP); False if already closing.

        Returns at once: the close handshake runs in a background task.
        """
        if self.close_requested:
            return False
        self.close_requested = True
        self.close_why = why
        self.close_code = code
        if code == ABORT:
            self.drop()
        else:
            self.sim.background(self._close(code))
        return True

    def drop(self) -> None:
        """Drop TCP without a close frame (the client sees 1006)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def _close(self, code: int) -> None:
        try:
            await self.ws.close(code=code)
        except Exception:  # the peer vanished mid-close: nothing left to do but drop
            logger.debug("close failed instance=%s session=%s", self.instance.key, self.session_id)
            self.drop()

    def schedule_close(self, code: int, delay: float, why: str) -> None:
        async def later() -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            self.close_soon(code, why)

        self.spawn(later())

    # the session's life

    async def run(self) -> None:
        """Serve the session until it closes; never raises except on cancellation."""
        try:
            if not self.silent:
                hello: dict[str, Any] = {
                    "type": "hello",
                    "v": PROTOCOL_VERSION,
                    "session_id": self.session_id,
                    "paired": self.instance.paired,
                    "heartbeat_s": self.sim.config.heartbeat_s,
                }
                features = [PAIR_CODE] if self.sim.config.pair_code else []
                if self.sim.config.v11:
                    features += V11_FEATURES
                if features:
                    hello["features"] = features
                await self.send(hello)
                if self.instance.paired:
                    await self.become_ready()
                else:
                    self.spawn(self._pairing())
            await self._read_frames()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("session failed instance=%s session=%s", self.instance.key, self.session_id)
            self.close_why = "internal_error"
            self.drop()
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _pairing(self) -> None:
        config = self.sim.config
        loop = asyncio.get_running_loop()
        auto_at = loop.time() + config.auto_pair_after if config.auto_pair_after > 0 else None
        while not self.paired_event.is_set():
            code = self.sim.new_qr_code()
            await self.send({"type": "qr", "code": code, "expires_s": math.ceil(config.qr_ttl)})
            wake = loop.time() + config.qr_ttl
            if auto_at is not None:
                wake = min(wake, auto_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.paired_event.wait(), max(0.0, wake - loop.time()))
            if not self.paired_event.is_set() and auto_at is not None and loop.time() >= auto_at - 0.001:
                auto_at = None
                if self.pair_code_phone is None:  # else the code pairs it
                    self.sim.pair_instance(self.instance, None)
        await self.send({"type": "paired", "account": self.instance.account})
        await self.become_ready()

    async def become_ready(self) -> None:
        if self.ready_at is not None or self.close_requested:
            return
        self.ready_at = asyncio.get_running_loop().time()
        await self.send({"type": "ready"})
        self.sim.apply_ready_faults(self)

    async def send_malformed(self, count: int, interval_s: float) -> None:
        for n in range(count):
            if n and interval_s > 0:
                await asyncio.sleep(interval_s)
            await self._send_raw(MALFORMED_FRAMES[n % len(MALFORMED_FRAMES)])

    async def _read_frames(self) -> None:
        ws = self.ws
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                if not self.silent:
                    await self._on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                if not self.silent:
                    await self._on_malformed("binary frames are not part of the protocol")
            elif msg.type is WSMsgType.PING:
                if not self.silent:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                continue
            elif msg.type is WSMsgType.CLOSE:
                if self.silent:
                    self.drop()  # a silent peer does not answer a close either
                else:  # echo the client's code, as RFC 6455 section 5.5.1 suggests
                    code = msg.data if isinstance(msg.data, int) and valid_close_code(msg.data) else 1000
                    with contextlib.suppress(Exception):
                        await ws.close(code=code)
                return
            else:  # CLOSING, CLOSED, ERROR: the connection is over
                return

    async def _on_malformed(self, message: str) -> None:
        self.instance.malformed_received += 1
        self.sim.state.malformed_received += 1
        await self.error("malformed_frame", message)

    async def _on_text(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            await self._on_malformed("frame is not valid JSON")
            return
        if not isinstance(frame, dict):
            await self._on_malformed("frame is not a JSON object")
            return
        kind = frame.get("type")
        if not isinstance(kind, str):
            await self._on_malformed("frame has no string `type`")
            return
        if kind == "send":
            await self._on_send(frame)
        elif kind == "pair_code":
            await self._on_pair_code(frame)
        elif kind == CHECK and self.sim.config.v11:
            await self._on_check(frame)
        elif kind == PRESENCE and self.sim.config.v11:
            await self._on_presence(frame)
        elif kind == "logout":
            logger.info("LOGOUT instance=%s session=%s", self.instance.key, self.session_id)
            self.sim.unpair_instance(self.instance, why="logout")
        # any other type is ignored (PROTOCOL.md section 2)

    async def _on_pair_code(self, frame: dict[str, Any]) -> None:
        """A request for a pairing code (PROTOCOL.md section 6): the code, or an ``error``."""
        instance = self.instance
        instance.pair_code_requests += 1
        if not self.sim.config.pair_code:
            return  # not announced: an unknown type to this gateway, ignored
        phone = frame.get("phone")
        if not isinstance(phone, str) or not E164_RE.fullmatch(phone):
            await self.error("invalid_pair_code", "phone must be an E.164 number: + then 8-15 digits")
            return
        if instance.paired or self.ready_at is not None:
            await self.error("pair_code_unavailable", "the account is already paired")
            return
        fault = self.sim.state.faults.take("pair_code", instance.key)
        if fault is not None:
            await self.error("pair_code_failed", fault.params["message"])
            return
        self.pair_code_phone = phone
        instance.pair_codes += 1
        logger.info("PAIR-CODE instance=%s session=%s", instance.key, self.session_id)
        await self.send({"type": "pair_code", "code": self.sim.new_pair_code()})
        delay = self.sim.config.pair_code_delay
        if delay > 0:
            self.spawn(self._pair_by_code(phone, delay))

    async def _fetch_media(self, media: dict[str, Any]) -> int | None:
        """GET the media's link, as a gateway does before handing the file to
        the network: the bytes read when it answered 200 with ``size``
        bytes, else None."""
        try:
            timeout = aiohttp.ClientTimeout(total=MEDIA_FETCH_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as client, client.get(media["url"]) as reply:
                if reply.status != 200:
                    logger.info("MEDIA-FETCH instance=%s answered %s", self.instance.key, reply.status)
                    return None
                body = b""
                while len(body) <= media["size"] and (chunk := await reply.content.read(64 * 1024)):
                    body += chunk
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.info("MEDIA-FETCH instance=%s failed: %s", self.instance.key, type(exc).__name__)
            return None
        self.sim.state.media_bytes_fetched += len(body)
        if len(body) != media["size"]:
            logger.info("MEDIA-FETCH instance=%s got %d bytes, not %d", self.instance.key, len(body), media["size"])
            return None
        return len(body)

    async def _on_check(self, frame: dict[str, Any]) -> None:
        """A v1.1 ``check``: which numbers are on the network (all but the
        ones the control API marked absent)."""
        check_id, phones = frame.get("id"), frame.get("phones")
        ref = {"id": check_id} if isinstance(check_id, str) and len(check_id) <= 64 else {}
        if self.ready_at is None:
            await self.error("not_ready", "check is accepted only after ready", **ref)
            return
        if not isinstance(check_id, str) or not MESSAGE_ID_RE.fullmatch(check_id):
            await self.error("invalid_check", "id must be 1-64 characters of [A-Za-z0-9_-]", **ref)
            return
        if (
            not isinstance(phones, list)
            or not 1 <= len(phones) <= MAX_CHECK_PHONES
            or not all(isinstance(p, str) and E164_RE.fullmatch(p) for p in phones)
            or len(set(phones)) != len(phones)
        ):
            await self.error("invalid_check", f"phones must be 1-{MAX_CHECK_PHONES} distinct E.164 numbers", **ref)
            return
        self.instance.checks += 1
        absent = self.sim.state.absent_numbers
        await self.send({"type": "check_result", "id": check_id, "results": {p: p not in absent for p in phones}})

    async def _on_presence(self, frame: dict[str, Any]) -> None:
        to, state = frame.get("to"), frame.get("state")
        if self.ready_at is None:
            await self.error("not_ready", "presence is accepted only after ready")
            return
        if not isinstance(to, str) or not E164_RE.fullmatch(to) or state not in PRESENCE_STATES:
            await self.error("invalid_presence", "to must be E.164 and state composing or paused")
            return
        self.instance.presence.append((to, str(state)))

    async def _pair_by_code(self, phone: str, delay: float) -> None:
        """The code is typed on the phone ``delay`` seconds later: the account is ``phone``."""
        await asyncio.sleep(delay)
        if not self.instance.paired and self.pair_code_phone == phone:
            self.sim.pair_instance(self.instance, phone)

    async def _on_send(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("id")
        ref = {"id": message_id} if isinstance(message_id, str) and len(message_id) <= 64 else {}
        if self.ready_at is None:
            await self.error("not_ready", "send is accepted only after ready", **ref)
            return
        to, text = frame.get("to"), frame.get("text")
        media = frame.get("media") if self.sim.config.v11 and MEDIA in frame else None
        if not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id):
            await self.error("invalid_send", "id must be 1-64 characters of [A-Za-z0-9_-]", **ref)
            return
        if not isinstance(to, str) or not E164_RE.fullmatch(to):
            await self.error("invalid_send", "to must be an E.164 number: + then 8-15 digits", **ref)
            return
        if media is None and MEDIA in frame and self.sim.config.v11:
            await self.error("invalid_send", "media must be an object", **ref)
            return
        if media is not None:
            problem = media_problem(media, frame.get("caption"))
            if problem is None and "text" in frame:
                problem = "a media send carries a caption, not a text"
            if problem is not None:
                await self.error("invalid_send", problem, **ref)
                return
        elif not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
            await self.error("invalid_send", f"text must be 1-{MAX_TEXT_CHARS} characters", **ref)
            return
        instance = self.instance
        server_id = instance.accepted.get(message_id)
        if server_id is not None:
            instance.duplicates += 1
            await self.send({"type": "ack", "id": message_id, "server_id": server_id})
            return
        if media is not None:
            fetched = await self._fetch_media(media) if self.sim.config.fetch_media else None
            if self.sim.config.fetch_media and fetched is None:
                instance.media_fetch_failures += 1
                await self.send({"type": "nack", "id": message_id, "error": "media_unavailable", "permanent": False})
                return
            if message_id in instance.accepted:  # the same id, sent again while this one fetched
                await self.send({"type": "ack", "id": message_id, "server_id": instance.accepted[message_id]})
                return
            instance.media[message_id] = {
                **{k: media[k] for k in ("kind", "mime", "filename", "size", "url")},
                "caption": frame.get("caption", ""),
                "fetched_bytes": fetched,
            }
        fault = self.sim.state.faults.take("nack", instance.key)
        if fault is not None:
            instance.nacked += 1
            nack: dict[str, Any] = {
                "type": "nack",
                "id": message_id,
                "error": fault.params["error"],
                "permanent": fault.params["permanent"],
            }
            if "retry_after_s" in fault.params:
                nack["retry_after_s"] = fault.params["retry_after_s"]
            await self.send(nack)
            return
        server_id = self.sim.new_server_id()
        instance.accepted[message_id] = server_id
        deliveries = self.sim.state.deliveries
        delivery_key = f"{instance.key}:{message_id}"
        deliveries[delivery_key] = deliveries.get(delivery_key, 0) + 1
        await self.send({"type": "ack", "id": message_id, "server_id": server_id})
        self.sim.schedule_receipts(instance, message_id)

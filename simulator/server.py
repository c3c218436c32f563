"""The gateway simulator: a test double for a real messaging gateway.

It implements ``shared/PROTOCOL.md`` (version 1) in full for any number of
instances, and adds a control API under ``/_control/`` on the same port that
lets tests, the demo, the benchmarks and the chaos soak pair accounts, inject
inbound messages and inject faults (refused or hanging upgrades, close codes,
silent peers, malformed frames, nacks, a gateway restart).

Contract:

* It is plain asyncio on ``aiohttp.web`` and imports nothing from Django, so it
  can be started cheaply (``python -m simulator.server``) and reused.
* Every session is one ``WebSocketResponse`` plus a few small tasks; thousands
  of concurrent sessions fit in one process.
* A bad client frame is answered with an ``error`` frame, bad control input
  with a 400 JSON body; nothing a client or a control caller sends can crash
  the server or produce a 500.
* The control API never waits on a WebSocket client: closes it orders are
  started in background tasks, so a test that drives the control API
  synchronously from the client's event loop cannot deadlock.

See ``docs/SIMULATOR.md`` for the CLI flags and the control API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import re
import resource
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from simulator.codes import GATEWAY_CLOSE_CODES, LOGGED_OUT, REPLACED

logger = logging.getLogger("simulator.server")  # the same name under `python -m`

SUBPROTOCOL = "blast-gateway.v1"
PROTOCOL_VERSION = 1
# A `send` holds at most 4096 characters of text; even fully \u-escaped that
# stays far below this, and anything bigger is not a gateway frame.
MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4096
# How long a close handshake the simulator starts may take before it drops TCP.
CLOSE_TIMEOUT_S = 5.0
# How often a hanging upgrade checks whether its client gave up.
HANG_POLL_S = 0.1
# The "close" code that means: drop TCP without a close frame (the client sees 1006).
ABORT = 1006

MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
E164_RE = re.compile(r"\+[0-9]{8,15}")

FAULTS = ("refuse", "hang", "close_before_hello", "close", "silent", "malformed", "nack")

# Malformed frames, in the order a `malformed` fault sends them (cycling).
MALFORMED_FRAMES: tuple[str | bytes, ...] = (
    '{"type": "ack", "id": ',  # not JSON
    '["not", "an", "object"]',  # JSON, not an object
    '{"id": "no-type"}',  # an object without `type`
    b"\x00\x01binary",  # a binary frame
)


# --- configuration -------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """How the simulator behaves; every field is a CLI flag of the same name."""

    host: str = "127.0.0.1"
    port: int = 8765
    start_paired: bool = False
    auto_pair_after: float = 10.0  # seconds; <= 0: only the control API pairs
    qr_ttl: float = 20.0  # seconds between QR codes
    receipt_delay: float = 0.5  # seconds; 0: at once; < 0: never
    heartbeat_s: int = 20  # announced in `hello`
    seed: int | None = None  # seeds session ids, QR codes, accounts, server ids

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if not (self.qr_ttl > 0 and math.isfinite(self.qr_ttl)):
            raise ValueError(f"qr_ttl must be a positive number of seconds, got {self.qr_ttl}")
        if not math.isfinite(self.auto_pair_after) or not math.isfinite(self.receipt_delay):
            raise ValueError("auto_pair_after and receipt_delay must be finite")
        if self.heartbeat_s < 1:
            raise ValueError(f"heartbeat_s must be at least 1, got {self.heartbeat_s}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's CLI flags to ``parser`` (shared with the management command)."""
    defaults = SimConfig()
    parser.add_argument("--host", default=defaults.host, help="interface to listen on")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port (0: any free port)")
    parser.add_argument("--start-paired", action="store_true", help="every instance is paired from the start")
    parser.add_argument(
        "--auto-pair-after",
        type=float,
        default=defaults.auto_pair_after,
        help="seconds after which an unpaired session pairs by itself; <= 0: only the control API pairs",
    )
    parser.add_argument("--qr-ttl", type=float, default=defaults.qr_ttl, help="seconds between two QR codes")
    parser.add_argument(
        "--receipt-delay",
        type=float,
        default=defaults.receipt_delay,
        help="seconds from ack to the `delivered` receipt (`read` follows as long again); 0: at once; negative: never",
    )
    parser.add_argument("--heartbeat-s", type=int, default=defaults.heartbeat_s, help="heartbeat_s announced in hello")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible ids and codes")


def config_from_options(options: Mapping[str, Any]) -> SimConfig:
    """Build a :class:`SimConfig` from parsed CLI options (raises ``ValueError``)."""
    return SimConfig(
        host=options["host"],
        port=options["port"],
        start_paired=bool(options["start_paired"]),
        auto_pair_after=options["auto_pair_after"],
        qr_ttl=options["qr_ttl"],
        receipt_delay=options["receipt_delay"],
        heartbeat_s=options["heartbeat_s"],
        seed=options["seed"],
    )


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard limit; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --- input validation ------------------------------------------------------------


class BadRequest(Exception):
    """Control input that is not acceptable: answered with 400 and this message."""


class NotFound(Exception):
    """A control call about an instance the simulator does not know: 404."""


class Conflict(Exception):
    """A control call that cannot act in the instance's current state: 409."""


def canonical_key(value: str) -> str | None:
    """``value`` if it is a UUID in canonical (lower-case, hyphenated) form, else None."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
    return value if str(parsed) == value else None


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame (RFC 6455 section 7.4)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_code(value: Any, default: int, *, name: str = "code") -> int:
    """A close code from control input: a number, a reason name or ``"abort"``.

    Reason names are those of PROTOCOL.md section 4, as
    :data:`simulator.codes.GATEWAY_CLOSE_CODES` lists them
    (``"replaced"`` -> 4440, ...). 1006 and ``"abort"`` both return
    :data:`ABORT`: drop TCP without a close frame.
    """
    if value is None:
        return default
    if isinstance(value, str):
        if value == "abort":
            return ABORT
        try:
            return GATEWAY_CLOSE_CODES[value]
        except KeyError:
            names = ", ".join(sorted(GATEWAY_CLOSE_CODES))
            raise BadRequest(f"{name} must be a close code, 'abort' or one of: {names}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer close code")
    if value != ABORT and not valid_close_code(value):
        raise BadRequest(f"{name} {value} is not a close code that can be sent (1000-1003, 1007-1014, 3000-4999)")
    return int(value)


class Params:
    """Typed, strict reads from one JSON object of control input."""

    def __init__(self, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        self.data = data

    def number(self, name: str, default: float | None, *, minimum: float | None = None) -> float | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadRequest(f"{name} must be a finite number")
        if minimum is not None and value < minimum:
            raise BadRequest(f"{name} must be at least {minimum}")
        return float(value)

    def integer(
        self, name: str, default: int | None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{name} must be an integer")
        if minimum is not None and value < minimum:
            raise BadRequest(f"{name} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise BadRequest(f"{name} must be at most {maximum}")
        return int(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise BadRequest(f"{name} must be true or false")
        return value

    def string(self, name: str, default: str | None, *, max_length: int = 4096) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= max_length:
            raise BadRequest(f"{name} must be a string of 1-{max_length} characters")
        return value

    def phone(self, name: str, default: str | None) -> str | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not E164_RE.fullmatch(value):
            raise BadRequest(f"{name} must be an E.164 number: + then 8-15 digits")
        return value


# --- faults ----------------------------------------------------------------------


@dataclass
class Fault:
    """One active fault. ``remaining`` counts what it still applies to (None: no limit).

    What one unit of ``remaining`` is depends on the fault: an upgrade attempt
    (refuse, hang, close_before_hello), a session (close, silent, malformed)
    or a `send` frame (nack).
    """

    id: int
    name: str
    instance: str | None
    params: dict[str, Any]
    remaining: int | None
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fault": self.name,
            "instance": self.instance,
            "params": self.params,
            "remaining": self.remaining,
        }


def parse_fault(body: Mapping[str, Any]) -> tuple[str | None, str, dict[str, Any], int | None]:
    """Validate a ``POST /_control/faults`` body; return (instance, name, params, limit)."""
    name = body.get("fault")
    if name not in FAULTS:
        raise BadRequest(f"fault must be one of: {', '.join(FAULTS)}")
    instance_value = body.get("instance")
    instance: str | None = None
    if instance_value is not None:
        if not isinstance(instance_value, str) or canonical_key(instance_value) is None:
            raise BadRequest("instance must be an instance key (a canonical UUID) or omitted")
        instance = instance_value
    common = ("fault", "instance")
    params: dict[str, Any] = {}
    limit_name = "sessions" if name == "malformed" else "count"
    if name == "refuse":
        p = Params(body, (*common, "count", "status", "retry_after"))
        params["status"] = p.integer("status", 503, minimum=400, maximum=599)
        params["retry_after"] = p.integer("retry_after", None, minimum=0)
    elif name == "hang" or name == "silent":
        p = Params(body, (*common, "count"))
    elif name == "close_before_hello":
        p = Params(body, (*common, "count", "code"))
        params["code"] = parse_close_code(body.get("code"), 1011)
    elif name == "close":
        p = Params(body, (*common, "count", "code", "after_s"))
        params["code"] = parse_close_code(body.get("code"), 1011)
        params["after_s"] = p.number("after_s", 0.0, minimum=0)
    elif name == "malformed":
        p = Params(body, (*common, "sessions", "count", "interval_s"))
        params["count"] = p.integer("count", len(MALFORMED_FRAMES), minimum=1, maximum=10_000)
        params["interval_s"] = p.number("interval_s", 0.0, minimum=0)
    else:  # nack
        p = Params(body, (*common, "count", "permanent", "error", "retry_after_s"))
        params["permanent"] = p.boolean("permanent", False)
        params["error"] = p.string("error", "simulated_failure", max_length=200)
        retry_after_s = p.number("retry_after_s", None, minimum=0)
        if retry_after_s is not None:
            params["retry_after_s"] = retry_after_s
    limit = p.integer(limit_name, None, minimum=1)
    return instance, str(name), params, limit


class FaultBook:
    """The active faults, at most one per (instance or global, name)."""

    def __init__(self) -> None:
        self._faults: dict[tuple[str | None, str], Fault] = {}
        self._next_id = 1

    def add(self, instance: str | None, name: str, params: dict[str, Any], limit: int | None) -> Fault:
        """Set a fault, replacing one of the same name and scope."""
        loop = asyncio.get_running_loop()
        fault = Fault(self._next_id, name, instance, params, limit, loop.time())
        self._next_id += 1
        self._faults[(instance, name)] = fault
        return fault

    def find(self, name: str, key: str) -> Fault | None:
        """The fault ``name`` for instance ``key``: its own before a global one."""
        return self._faults.get((key, name)) or self._faults.get((None, name))

    def consume(self, fault: Fault) -> bool:
        """Use one unit of ``fault``; False if it was already used up."""
        if self._faults.get((fault.instance, fault.name)) is not fault:
            return False
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[(fault.instance, fault.name)]
        return True

    def take(self, name: str, key: str) -> Fault | None:
        """Find the fault ``name`` for ``key`` and use one unit of it."""
        fault = self.find(name, key)
        if fault is not None and self.consume(fault):
            return fault
        return None

    def clear(self, instance: str | None = None, *, everything: bool = True) -> int:
        """Remove all faults (``everything``) or those of one instance; return how many."""
        if everything:
            count = len(self._faults)
            self._faults.clear()
            return count
        doomed = [k for k in self._faults if k[0] == instance]
        for k in doomed:
            del self._faults[k]
        return len(doomed)

    def as_json(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in sorted(self._faults.values(), key=lambda f: f.id)]


# --- state -----------------------------------------------------------------------


@dataclass(eq=False)
class Instance:
    """What the simulator knows about one instance key."""

    key: str
    paired: bool
    account: str | None = None
    token: str | None = None
    sessions: list[Session] = field(default_factory=list)  # oldest first
    max_concurrent: int = 0
    attempts: int = 0  # upgrade requests for this key (valid UUID)
    connects: int = 0  # upgrades accepted (101 sent)
    refused: int = 0  # attempts answered with an HTTP error (auth or `refuse` fault)
    hung: int = 0  # attempts held open without an answer (`hang` fault)
    accepted: dict[str, str] = field(default_factory=dict)  # client message id -> server_id
    duplicates: int = 0  # sends answered from the dedup table
    nacked: int = 0
    malformed_received: int = 0

    def ready_session(self) -> Session | None:
        """The newest live session that reached `ready` and is not being closed."""
        for session in reversed(self.sessions):
            if session.ready_at is not None and not session.close_requested:
                return session
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "current": len(self.sessions),
            "max_concurrent": self.max_concurrent,
            "attempts": self.attempts,
            "connects": self.connects,
            "refused": self.refused,
            "hung": self.hung,
            "paired": self.paired,
            "account": self.account,
            "token_known": self.token is not None,
            "accepted": len(self.accepted),
            "duplicates": self.duplicates,
            "nacked": self.nacked,
            "malformed_received": self.malformed_received,
        }


class State:
    """Everything ``POST /_control/reset`` throws away: instances, faults, counters."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.faults = FaultBook()
        self.deliveries: dict[str, int] = {}
        self.malformed_received = 0
        self.sessions = 0
        self.max_sessions = 0
        self.hanging: set[asyncio.BaseTransport] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # receipts, inbound sends
        self.idle = asyncio.Event()  # set whenever the last open session ends

    def live_sessions(self) -> list[Session]:
        return [s for inst in self.instances.values() for s in inst.sessions]

    def stats(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "max_sessions": self.max_sessions,
            "hanging": len(self.hanging),
            "instances": {key: inst.as_json() for key, inst in self.instances.items()},
            "deliveries": dict(self.deliveries),
            "malformed_received": self.malformed_received,
            "faults": len(self.faults.as_json()),
        }


# --- one session ---------------------------------------------------------------


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
                await self.send(
                    {
                        "type": "hello",
                        "v": PROTOCOL_VERSION,
                        "session_id": self.session_id,
                        "paired": self.instance.paired,
                        "heartbeat_s": self.sim.config.heartbeat_s,
                    }
                )
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
        elif kind == "logout":
            logger.info("LOGOUT instance=%s session=%s", self.instance.key, self.session_id)
            self.sim.unpair_instance(self.instance, why="logout")
        # any other type is ignored (PROTOCOL.md section 2)

    async def _on_send(self, frame: dict[str, Any]) -> None:
        message_id = frame.get("id")
        ref = {"id": message_id} if isinstance(message_id, str) and len(message_id) <= 64 else {}
        if self.ready_at is None:
            await self.error("not_ready", "send is accepted only after ready", **ref)
            return
        to, text = frame.get("to"), frame.get("text")
        if not isinstance(message_id, str) or not MESSAGE_ID_RE.fullmatch(message_id):
            await self.error("invalid_send", "id must be 1-64 characters of [A-Za-z0-9_-]", **ref)
            return
        if not isinstance(to, str) or not E164_RE.fullmatch(to):
            await self.error("invalid_send", "to must be an E.164 number: + then 8-15 digits", **ref)
            return
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
            await self.error("invalid_send", f"text must be 1-{MAX_TEXT_CHARS} characters", **ref)
            return
        instance = self.instance
        server_id = instance.accepted.get(message_id)
        if server_id is not None:
            instance.duplicates += 1
            await self.send({"type": "ack", "id": message_id, "server_id": server_id})
            return
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


# --- the server --------------------------------------------------------------------


def json_error(status: int, error: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=headers)


class Simulator:
    """The gateway simulator: owns the state and builds the aiohttp application."""

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

    # the control API

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:  # includes UnicodeDecodeError
            raise BadRequest("body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        return data

    async def c_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def c_stats(self, request: web.Request) -> web.Response:
        key = request.query.get("instance")
        if key is not None:
            return web.json_response(self.known_instance(key).as_json())
        return web.json_response(self.state.stats())

    async def c_faults_list(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self.state.faults.as_json()})

    async def c_faults_set(self, request: web.Request) -> web.Response:
        instance, name, params, limit = parse_fault(await self._body(request))
        fault = self.state.faults.add(instance, name, params, limit)
        applied = self.apply_to_live(fault)
        logger.info("FAULT set %s instance=%s params=%s limit=%s live=%d", name, instance, params, limit, applied)
        return web.json_response({"fault": fault.as_json(), "applied_to_live_sessions": applied}, status=201)

    async def c_faults_clear(self, request: web.Request) -> web.Response:
        key = request.query.get("instance")
        if key is None:
            cleared = self.state.faults.clear()
        else:
            if canonical_key(key) is None:
                raise BadRequest("instance must be a canonical UUID")
            cleared = self.state.faults.clear(key, everything=False)
        logger.info("FAULT cleared %d instance=%s", cleared, key)
        return web.json_response({"cleared": cleared})

    def _drop_all(self, state: State, code: int, why: str) -> int:
        closed = sum(session.close_soon(code, why) for session in state.live_sessions())
        for transport in list(state.hanging):
            state.hanging.discard(transport)
            transport.close()
        return closed

    async def c_restart(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        p = Params(body, ("code", "abort"))
        code = parse_close_code(body.get("code"), 1001)
        if p.boolean("abort", False):
            code = ABORT
        closed = self._drop_all(self.state, code, "restart")
        logger.info("RESTART code=%s sessions=%d", code, closed)
        return web.json_response({"closed": closed, "code": code})

    async def c_reset(self, request: web.Request) -> web.Response:
        Params(await self._body(request), ())
        old, self.state = self.state, State()
        closed = self._drop_all(old, 1001, "reset")
        for task in list(old.tasks):
            task.cancel()
        logger.info("RESET sessions=%d", closed)
        return web.json_response({"ok": True, "closed": closed})

    async def c_pair(self, request: web.Request) -> web.Response:
        key = request.match_info["instance_key"]
        if canonical_key(key) is None:
            raise BadRequest("instance key must be a canonical UUID")
        p = Params(await self._body(request), ("account",))
        account = p.phone("account", None)
        inst = self.instance(key)
        self.pair_instance(inst, account)
        return web.json_response({"paired": True, "account": inst.account})

    async def c_unpair(self, request: web.Request) -> web.Response:
        inst = self.known_instance(request.match_info["instance_key"])
        Params(await self._body(request), ())
        closed = self.unpair_instance(inst, why="unpair")
        return web.json_response({"paired": False, "closed": closed})

    async def c_close(self, request: web.Request) -> web.Response:
        inst = self.known_instance(request.match_info["instance_key"])
        body = await self._body(request)
        Params(body, ("code",))
        code = parse_close_code(body.get("code"), 1000)
        closed = sum(session.close_soon(code, "control") for session in list(inst.sessions))
        return web.json_response({"closed": closed, "code": code})

    async def c_inbound(self, request: web.Request) -> web.Response:
        inst = self.known_instance(request.match_info["instance_key"])
        p = Params(await self._body(request), ("from", "text"))
        sender = p.phone("from", None)
        text = p.string("text", None, max_length=MAX_TEXT_CHARS)
        if sender is None or text is None:
            raise BadRequest("from (E.164) and text (1-4096 characters) are required")
        session = inst.ready_session()
        if session is None:
            raise Conflict(f"instance {inst.key} has no ready session")
        server_id = self.new_server_id()
        frame = {"type": "inbound", "server_id": server_id, "from": sender, "text": text}
        self.background(self._send_frame(session, frame), self.state.tasks)
        return web.json_response({"server_id": server_id, "session_id": session.session_id})

    async def _send_frame(self, session: Session, frame: Mapping[str, Any]) -> None:
        await session.send(frame)

    async def c_forget_token(self, request: web.Request) -> web.Response:
        inst = self.known_instance(request.match_info["instance_key"])
        Params(await self._body(request), ())
        inst.token = None
        return web.json_response({"ok": True})

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Turn control-API failures into JSON answers; never let one become a 500."""
        try:
            return await handler(request)
        except BadRequest as exc:
            return json_error(400, "bad_request", str(exc))
        except NotFound as exc:
            return json_error(404, "not_found", str(exc))
        except Conflict as exc:
            return json_error(409, "conflict", str(exc))
        except web.HTTPException as exc:
            if exc.status >= 400 and request.path.startswith("/_control/"):
                return json_error(exc.status, "http_error", exc.reason)
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("control call failed: %s %s", request.method, request.path)
            return json_error(500, "internal_error", "the simulator failed; see its log")

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/v1/instances/{instance_key}/socket", self.handle_socket)
        c = "/_control"
        app.router.add_get(f"{c}/health", self.c_health)
        app.router.add_get(f"{c}/stats", self.c_stats)
        app.router.add_get(f"{c}/faults", self.c_faults_list)
        app.router.add_post(f"{c}/faults", self.c_faults_set)
        app.router.add_delete(f"{c}/faults", self.c_faults_clear)
        app.router.add_post(f"{c}/restart", self.c_restart)
        app.router.add_post(f"{c}/reset", self.c_reset)
        app.router.add_post(c + "/instances/{instance_key}/pair", self.c_pair)
        app.router.add_post(c + "/instances/{instance_key}/unpair", self.c_unpair)
        app.router.add_post(c + "/instances/{instance_key}/close", self.c_close)
        app.router.add_post(c + "/instances/{instance_key}/inbound", self.c_inbound)
        app.router.add_post(c + "/instances/{instance_key}/forget-token", self.c_forget_token)
        return app

    async def shutdown(self, grace_s: float = 3.0) -> None:
        """Close every session with 1001 and wait (up to ``grace_s``) for them to end."""
        state = self.state
        self._drop_all(state, 1001, "shutdown")
        if state.sessions > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.idle.wait(), grace_s)
        for session in state.live_sessions():
            session.drop()
        for task in list(state.tasks):
            task.cancel()


class _ClientProtocolErrorFilter(logging.Filter):
    """Log a client's malformed HTTP as one warning line, not an error with a traceback.

    aiohttp reports an unparsable request (garbage on the port, a missing
    Host header) as "Error handling request" with a traceback; that is the
    client's fault and the simulator carries on, so it is not an error here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            message = record.getMessage()
            record.msg, record.args = "%s: %s", (message, " ".join(str(exc).split()))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _listen_backlog() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(128, int(f.read().strip()))
    except (OSError, ValueError):
        return 1024


async def serve(
    config: SimConfig,
    *,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str, int], None] | None = None,
) -> None:
    """Run the simulator until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    sim = Simulator(config)
    aiohttp_server_logger = logging.getLogger("aiohttp.server")
    protocol_filter = _ClientProtocolErrorFilter()
    aiohttp_server_logger.addFilter(protocol_filter)
    runner = web.AppRunner(sim.build_app(), access_log=None, handle_signals=False, shutdown_timeout=3.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=_listen_backlog(), reuse_address=True)
    await site.start()
    addresses = runner.addresses
    port = int(addresses[0][1]) if addresses else config.port
    logger.info(
        "gateway simulator listening on ws://%s:%d (start_paired=%s auto_pair_after=%s qr_ttl=%s "
        "receipt_delay=%s heartbeat_s=%s seed=%s)",
        config.host,
        port,
        config.start_paired,
        config.auto_pair_after,
        config.qr_ttl,
        config.receipt_delay,
        config.heartbeat_s,
        config.seed,
    )
    if on_listening is not None:
        on_listening(config.host, port)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
                installed.append(signum)
    try:
        await stop.wait()
        logger.info("gateway simulator stopping: closing %d session(s)", sim.state.sessions)
        await sim.shutdown()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        aiohttp_server_logger.removeFilter(protocol_filter)
        logger.info("gateway simulator stopped")


def run(config: SimConfig) -> None:
    """Run the simulator in the foreground until SIGINT or SIGTERM."""
    soft, hard = raise_nofile_limit()
    logger.info("open file limit %s (hard %s)", soft, hard)
    asyncio.run(serve(config))


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.server``: the same flags as ``manage.py run_gateway_sim``."""
    parser = argparse.ArgumentParser(prog="python -m simulator.server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(config)
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for starting a simulator on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())

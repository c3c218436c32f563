"""The HTTP control API under ``/_control/``, served on the gateway's port.

:class:`ControlAPI` answers the calls ``docs/SIMULATOR.md`` lists (health,
stats, faults, restart, reset, inbound bursts, and pair, unpair, close,
inbound and forget-token per instance), JSON in and out, by driving its
:class:`~simulator.gateway.Simulator`. Contract:

* Bad input is ``400 {"error": "bad_request", "message": ...}``, unknown
  fields included; an instance the simulator never saw is 404 where it
  matters; a call that cannot act now is 409; nothing is a 500
  (:meth:`ControlAPI.errors`, the application's middleware, sees to it).
* No call waits on a WebSocket client: the closes and frames it orders run
  in background tasks, so a test may call the blocking client
  (:mod:`simulator.control`) from the event loop its WebSocket clients run on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from simulator import bursts
from simulator.faults import parse_fault
from simulator.gateway import Simulator, json_error
from simulator.inputs import BadRequest, Conflict, NotFound, Params, parse_close_code
from simulator.protocol import ABORT, E164_RE, MAX_TEXT_CHARS, canonical_key
from simulator.session import Session
from simulator.state import State

logger = logging.getLogger(__name__)

PREFIX = "/_control"


class ControlAPI:
    """The control API's handlers for one :class:`~simulator.gateway.Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def add_routes(self, app: web.Application) -> None:
        """Route every ``/_control/`` call of ``app`` to its handler."""
        c = PREFIX
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
        app.router.add_post(f"{c}/numbers", self.c_numbers)
        app.router.add_post(f"{c}/inbound-burst", self.c_inbound_burst)
        app.router.add_get(c + "/inbound-burst/{burst_id}", self.c_inbound_burst_status)

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
            return web.json_response(self.sim.known_instance(key).as_json())
        return web.json_response(self.sim.state.stats())

    async def c_faults_list(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self.sim.state.faults.as_json()})

    async def c_faults_set(self, request: web.Request) -> web.Response:
        instance, name, params, limit = parse_fault(await self._body(request))
        fault = self.sim.state.faults.add(instance, name, params, limit)
        applied = self.sim.apply_to_live(fault)
        logger.info("FAULT set %s instance=%s params=%s limit=%s live=%d", name, instance, params, limit, applied)
        return web.json_response({"fault": fault.as_json(), "applied_to_live_sessions": applied}, status=201)

    async def c_faults_clear(self, request: web.Request) -> web.Response:
        key = request.query.get("instance")
        if key is None:
            cleared = self.sim.state.faults.clear()
        else:
            if canonical_key(key) is None:
                raise BadRequest("instance must be a canonical UUID")
            cleared = self.sim.state.faults.clear(key, everything=False)
        logger.info("FAULT cleared %d instance=%s", cleared, key)
        return web.json_response({"cleared": cleared})

    async def c_restart(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        p = Params(body, ("code", "abort"))
        code = parse_close_code(body.get("code"), 1001)
        if p.boolean("abort", False):
            code = ABORT
        closed = self.sim.drop_all(self.sim.state, code, "restart")
        logger.info("RESTART code=%s sessions=%d", code, closed)
        return web.json_response({"closed": closed, "code": code})

    async def c_reset(self, request: web.Request) -> web.Response:
        Params(await self._body(request), ())
        old, self.sim.state = self.sim.state, State()
        closed = self.sim.drop_all(old, 1001, "reset")
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
        inst = self.sim.instance(key)
        self.sim.pair_instance(inst, account)
        return web.json_response({"paired": True, "account": inst.account})

    async def c_unpair(self, request: web.Request) -> web.Response:
        inst = self.sim.known_instance(request.match_info["instance_key"])
        Params(await self._body(request), ())
        closed = self.sim.unpair_instance(inst, why="unpair")
        return web.json_response({"paired": False, "closed": closed})

    async def c_close(self, request: web.Request) -> web.Response:
        inst = self.sim.known_instance(request.match_info["instance_key"])
        body = await self._body(request)
        Params(body, ("code",))
        code = parse_close_code(body.get("code"), 1000)
        closed = sum(session.close_soon(code, "control") for session in list(inst.sessions))
        return web.json_response({"closed": closed, "code": code})

    async def c_inbound(self, request: web.Request) -> web.Response:
        inst = self.sim.known_instance(request.match_info["instance_key"])
        p = Params(await self._body(request), ("from", "text"))
        sender = p.phone("from", None)
        text = p.string("text", None, max_length=MAX_TEXT_CHARS)
        if sender is None or text is None:
            raise BadRequest("from (E.164) and text (1-4096 characters) are required")
        session = inst.ready_session()
        if session is None:
            raise Conflict(f"instance {inst.key} has no ready session")
        server_id = self.sim.new_server_id()
        frame = {"type": "inbound", "server_id": server_id, "from": sender, "text": text}
        self.sim.background(self._send_frame(session, frame), self.sim.state.tasks)
        return web.json_response({"server_id": server_id, "session_id": session.session_id})

    async def c_inbound_burst(self, request: web.Request) -> web.Response:
        """``{"count", "rate", "instances"?, "from"?, "text"?}``: start a burst
        (:mod:`simulator.bursts`) and answer at once with its id, 202."""
        data = await self._body(request)
        p = Params(data, ("count", "rate", "instances", "from", "text"))
        count = p.integer("count", None, minimum=1, maximum=bursts.MAX_COUNT)
        rate = p.number("rate", None, minimum=0.001)
        if count is None or rate is None:
            raise BadRequest("count (1-10000000) and rate (frames per second) are required")
        if rate > bursts.MAX_RATE:
            raise BadRequest(f"rate must be at most {bursts.MAX_RATE:g}")
        sender = p.phone("from", None)
        text = p.string("text", None, max_length=MAX_TEXT_CHARS - 64) or "burst"
        keys = data.get("instances")
        if keys is None:
            instances = [inst for inst in self.sim.state.instances.values() if inst.ready_session() is not None]
        elif isinstance(keys, list) and keys and all(isinstance(key, str) for key in keys):
            instances = [self.sim.known_instance(key) for key in keys]
        else:
            raise BadRequest("instances must be a non-empty list of instance keys")
        if not any(inst.ready_session() is not None for inst in instances):
            raise Conflict("no instance of the burst has a ready session")
        state = self.sim.state
        burst = bursts.Burst(len(state.bursts) + 1, instances, count, rate, text, sender)
        state.bursts[burst.id] = burst
        self.sim.background(bursts.run(burst, self.sim.new_server_id), state.tasks)
        return web.json_response(burst.as_json(), status=202)

    async def c_inbound_burst_status(self, request: web.Request) -> web.Response:
        try:
            burst = self.sim.state.bursts[int(request.match_info["burst_id"])]
        except (KeyError, ValueError):
            raise NotFound(f"no burst {request.match_info['burst_id']}") from None
        return web.json_response(burst.as_json())

    async def c_numbers(self, request: web.Request) -> web.Response:
        """``{"absent": [E.164, ...]}``: the numbers `check` answers as not on
        the network from now on (replacing the previous list)."""
        data = await self._body(request)
        Params(data, ("absent",))
        absent = data.get("absent", [])
        if not isinstance(absent, list) or not all(isinstance(p, str) and E164_RE.fullmatch(p) for p in absent):
            raise BadRequest("absent must be a list of E.164 numbers")
        self.sim.state.absent_numbers = set(absent)
        return web.json_response({"absent": sorted(absent)})

    async def _send_frame(self, session: Session, frame: Mapping[str, Any]) -> None:
        await session.send(frame)

    async def c_forget_token(self, request: web.Request) -> web.Response:
        inst = self.sim.known_instance(request.match_info["instance_key"])
        Params(await self._body(request), ())
        inst.token = None
        return web.json_response({"ok": True})

    @web.middleware
    async def errors(
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

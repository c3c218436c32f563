"""The fault model: which faults exist, how a control body sets one, which are active.

A fault is set through ``POST /_control/faults`` (:func:`parse_fault`
validates the body) and kept in the :class:`FaultBook`: at most one per name
and scope, where the scope is one instance or every instance (global), and
an instance's own fault wins over a global one. A fault with a limit removes
itself after acting that many times; what one time is depends on the fault
(see :class:`Fault`). The book only records and counts: the gateway
(:mod:`simulator.gateway`) and the sessions decide when a fault acts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulator.inputs import BadRequest, Params, parse_close_code
from simulator.protocol import canonical_key

FAULTS = ("refuse", "hang", "close_before_hello", "close", "silent", "malformed", "nack", "pair_code")

# Malformed frames, in the order a `malformed` fault sends them (cycling).
MALFORMED_FRAMES: tuple[str | bytes, ...] = (
    '{"type": "ack", "id": ',  # not JSON
    '["not", "an", "object"]',  # JSON, not an object
    '{"id": "no-type"}',  # an object without `type`
    b"\x00\x01binary",  # a binary frame
)


@dataclass
class Fault:
    """One active fault. ``remaining`` counts what it still applies to (None: no limit).

    What one unit of ``remaining`` is depends on the fault: an upgrade attempt
    (refuse, hang, close_before_hello), a session (close, silent, malformed),
    a `send` frame (nack) or a `pair_code` frame (pair_code).
    """

    id: int
    name: str
    instance: str | None
    params: dict[str, Any]
    remaining: int | None
    created_at: float
    seen: int = 0  # what it was offered so far (a nack fault with ``every`` acts on one in N)

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
    elif name == "pair_code":
        p = Params(body, (*common, "count", "message"))
        params["message"] = p.string("message", "WhatsApp refused to give a pairing code", max_length=200)
    else:  # nack
        p = Params(body, (*common, "count", "permanent", "error", "retry_after_s", "every"))
        params["permanent"] = p.boolean("permanent", False)
        params["every"] = p.integer("every", 1, minimum=1, maximum=1_000_000)
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
        """Find the fault ``name`` for ``key`` and use one unit of it. A
        fault with an ``every`` of N acts on the Nth, 2Nth, ... offer only."""
        fault = self.find(name, key)
        if fault is None:
            return None
        fault.seen += 1
        if fault.seen % int(fault.params.get("every", 1)):
            return None
        return fault if self.consume(fault) else None

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

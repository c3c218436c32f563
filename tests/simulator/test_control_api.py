"""The control API answers bad input with 400 JSON, unknown instances with 404, never 500."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.control import SimulatorControlError
from tests.fixtures.simulator import GatewaySim, gateway_sim_args, new_instance_key, recv_until, wait_for

KEY = "5b0c5a3e-8a53-4d7c-9a3e-0f3f2b7e9c11"

# (method, path, JSON body or raw bytes)
BAD_INPUT: list[tuple[str, str, Any]] = [
    ("POST", "faults", b"{not json"),
    ("POST", "faults", b"\xff\xfe"),
    ("POST", "faults", [1, 2]),
    ("POST", "faults", {}),
    ("POST", "faults", {"fault": "explode"}),
    ("POST", "faults", {"fault": "refuse", "instance": "not-a-uuid"}),
    ("POST", "faults", {"fault": "refuse", "instance": KEY.upper()}),
    ("POST", "faults", {"fault": "refuse", "status": 200}),
    ("POST", "faults", {"fault": "refuse", "status": 600}),
    ("POST", "faults", {"fault": "refuse", "status": "429"}),
    ("POST", "faults", {"fault": "refuse", "retry_after": -1}),
    ("POST", "faults", {"fault": "refuse", "count": 0}),
    ("POST", "faults", {"fault": "refuse", "count": True}),
    ("POST", "faults", {"fault": "refuse", "count": 1.5}),
    ("POST", "faults", {"fault": "refuse", "stauts": 429}),
    ("POST", "faults", {"fault": "close", "code": 1005}),
    ("POST", "faults", {"fault": "close", "code": 999}),
    ("POST", "faults", {"fault": "close", "code": 5000}),
    ("POST", "faults", {"fault": "close", "code": "no_such_reason"}),
    ("POST", "faults", {"fault": "close", "after_s": -1}),
    ("POST", "faults", {"fault": "close", "after_s": "soon"}),
    ("POST", "faults", {"fault": "close_before_hello", "code": 2000}),
    ("POST", "faults", {"fault": "malformed", "count": 0}),
    ("POST", "faults", {"fault": "malformed", "interval_s": -0.1}),
    ("POST", "faults", {"fault": "nack", "permanent": "yes"}),
    ("POST", "faults", {"fault": "nack", "error": ""}),
    ("POST", "faults", {"fault": "nack", "retry_after_s": -5}),
    ("POST", "faults", {"fault": "nack", "every": 0}),
    ("POST", "faults", {"fault": "nack", "every": "often"}),
    ("POST", "faults", {"fault": "hang", "status": 500}),
    ("POST", "restart", {"code": 1006.5}),
    ("POST", "restart", {"abort": "yes"}),
    ("POST", "restart", {"code": 1015}),
    ("POST", "reset", {"everything": True}),
    ("POST", f"instances/{KEY}/pair", {"account": "15551230000"}),
    ("POST", f"instances/{KEY}/pair", {"account": "+1"}),
    ("POST", "instances/not-a-uuid/pair", {}),
    ("POST", f"instances/{KEY}/pair", b"[]"),
]

# Calls about an instance the simulator has never seen.
UNKNOWN_INSTANCE: list[tuple[str, str, Any]] = [
    ("POST", f"instances/{KEY}/unpair", {}),
    ("POST", f"instances/{KEY}/close", {"code": 1000}),
    ("POST", f"instances/{KEY}/inbound", {"from": "+15551230000", "text": "hi"}),
    ("POST", f"instances/{KEY}/forget-token", {}),
]


def call(sim: GatewaySim, method: str, path: str, body: Any) -> tuple[int, Any]:
    if isinstance(body, bytes):
        return sim.control.request(method, path, raw=body)
    return sim.control.request(method, path, body)


async def test_health_answers_ok(gateway_sim: GatewaySim) -> None:
    assert gateway_sim.control.health() == {"ok": True}


async def test_bad_input_is_400_with_a_message(gateway_sim: GatewaySim) -> None:
    wrong = []
    for method, path, body in BAD_INPUT:
        status, answer = call(gateway_sim, method, path, body)
        if status != 400 or not isinstance(answer, dict) or not answer.get("message"):
            wrong.append((method, path, body, status, answer))
    assert wrong == []
    # Nothing was half-applied.
    assert gateway_sim.control.faults() == []


async def test_calls_about_an_unknown_instance_are_404(gateway_sim: GatewaySim) -> None:
    wrong = []
    for method, path, body in UNKNOWN_INSTANCE:
        status, answer = call(gateway_sim, method, path, body)
        if status != 404 or not isinstance(answer, dict):
            wrong.append((method, path, status, answer))
    assert wrong == []
    with pytest.raises(SimulatorControlError) as caught:
        gateway_sim.control.stats(KEY)
    assert caught.value.status == 404
    with pytest.raises(SimulatorControlError) as caught:
        gateway_sim.control.stats("not-a-uuid")
    assert caught.value.status == 400


async def test_unknown_routes_and_methods_answer_json(gateway_sim: GatewaySim) -> None:
    status, answer = gateway_sim.control.request("GET", "nowhere")
    assert status == 404 and isinstance(answer, dict)
    status, answer = gateway_sim.control.request("PUT", "faults", {})
    assert status == 405 and isinstance(answer, dict)


@gateway_sim_args("--start-paired")
async def test_stats_describe_the_instances_and_the_whole_gateway(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        stats = gateway_sim.control.stats()
        one = gateway_sim.control.stats(key)
    assert stats["sessions"] == 1 and stats["max_sessions"] == 1
    assert stats["instances"][key] == one
    assert one["current"] == 1 and one["max_concurrent"] == 1
    assert (one["attempts"], one["connects"], one["refused"]) == (1, 1, 0)
    assert one["paired"] is True and one["account"].startswith("+")
    assert set(stats) >= {"sessions", "max_sessions", "instances", "deliveries", "malformed_received"}


async def test_pairing_an_instance_before_it_connects_is_allowed(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    answer = gateway_sim.control.pair(key, account="+33612345678")
    assert answer == {"paired": True, "account": "+33612345678"}
    async with gateway_sim.connect(key) as ws:
        frames = await recv_until(ws, "ready")
    assert frames[0]["paired"] is True
    # Unpairing a known instance works, and closes nothing when nothing is live.
    await wait_for(lambda: gateway_sim.control.stats(key)["current"] == 0)
    assert gateway_sim.control.unpair(key) == {"paired": False, "closed": 0}

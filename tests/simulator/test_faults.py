"""Every fault of the control API, seen from a real client.

Each test sets a fault through ``SimulatorControl`` and checks what a real
``websockets`` client experiences: the HTTP status refusing the upgrade, an
open timeout, the close code, a keepalive timeout, the frames that arrive.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import InvalidStatus

from instances.reasons import GATEWAY_CLOSE_CODES
from tests.fixtures.simulator import (
    GatewaySim,
    gateway_sim_args,
    new_instance_key,
    recv_close,
    recv_json,
    recv_until,
    wait_for,
)

pytestmark = gateway_sim_args("--start-paired", "--receipt-delay", "-1")


def send_frame(message_id: str) -> str:
    return json.dumps({"type": "send", "id": message_id, "to": "+15551230000", "text": "hello"})


# --- faults on the upgrade ------------------------------------------------------------


async def test_refuse_answers_the_upgrade_with_the_status_and_retry_after(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("refuse", instance=key, status=429, retry_after=7, count=1)
    with pytest.raises(InvalidStatus) as caught:
        async with gateway_sim.connect(key):
            pass
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"

    # count=1: the fault removed itself, the next attempt succeeds.
    assert gateway_sim.control.faults() == []
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
    stats = gateway_sim.control.stats(key)
    assert (stats["attempts"], stats["connects"], stats["refused"]) == (2, 1, 1)


async def test_a_global_refuse_applies_to_every_instance(gateway_sim: GatewaySim) -> None:
    gateway_sim.control.set_fault("refuse", status=503)
    for key in (new_instance_key(), new_instance_key()):
        with pytest.raises(InvalidStatus) as caught:
            async with gateway_sim.connect(key):
                pass
        assert caught.value.response.status_code == 503
        assert "Retry-After" not in caught.value.response.headers


async def test_hang_makes_the_client_hit_its_open_timeout(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("hang", instance=key, count=1)
    with pytest.raises(TimeoutError):
        async with gateway_sim.connect(key, open_timeout=0.5):
            pass
    # The simulator notices that the client gave up and lets go of the connection.
    await wait_for(lambda: gateway_sim.control.stats()["hanging"] == 0)
    assert gateway_sim.control.stats(key)["hung"] == 1
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")


async def test_close_before_hello_closes_right_after_the_upgrade(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("close_before_hello", instance=key, count=1)
    async with gateway_sim.connect(key) as ws:
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1011

    gateway_sim.control.set_fault("close_before_hello", instance=key, code=4503, count=1)
    async with gateway_sim.connect(key) as ws:
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 4503
    assert gateway_sim.control.stats(key)["connects"] == 2


async def test_close_before_hello_with_abort_drops_tcp_without_a_close_frame(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    for code in ("abort", 1006):
        gateway_sim.control.set_fault("close_before_hello", instance=key, code=code, count=1)
        async with gateway_sim.connect(key) as ws:
            closed = await recv_close(ws)
            assert closed.rcvd is None
            assert ws.close_code == 1006


# --- faults on live sessions ------------------------------------------------------------


async def test_close_codes_arrive_as_given(gateway_sim: GatewaySim) -> None:
    codes = [1000, 1001, 1011, 1012, 4000, 4999, *GATEWAY_CLOSE_CODES.values()]
    for code in codes:
        key = new_instance_key()
        async with gateway_sim.connect(key) as ws:
            await recv_until(ws, "ready")
            gateway_sim.control.set_fault("close", instance=key, code=code)
            closed = await recv_close(ws)
        assert closed.rcvd is not None and closed.rcvd.code == code


async def test_a_close_code_can_be_named_by_its_reason(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        gateway_sim.control.close(key, code="restart_required")
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 4515


async def test_a_close_fault_set_in_advance_closes_after_s_after_ready(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("close", instance=key, code=4428, after_s=0.3, count=1)
    loop = asyncio.get_running_loop()
    started = loop.time()  # before the upgrade, so surely before the simulator's `ready`
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        closed = await recv_close(ws)
        lived = loop.time() - started
    assert closed.rcvd is not None and closed.rcvd.code == 4428
    assert lived >= 0.3  # never before after_s
    # count=1: the next session is left alone.
    assert gateway_sim.control.faults() == []
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("still-fine"))
        assert (await recv_json(ws))["type"] == "ack"


async def test_a_silent_gateway_is_detected_by_the_clients_ping_timeout(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    # ping_timeout leaves room for a loaded machine before the fault is set.
    async with gateway_sim.connect(key, ping_interval=0.25, ping_timeout=1.5) as ws:
        await recv_until(ws, "ready")
        await asyncio.wait_for(await ws.ping(), 5)  # pings are answered before the fault
        gateway_sim.control.set_fault("silent", instance=key)
        await ws.send(send_frame("into-the-void"))  # not answered either
        closed = await recv_close(ws)
    assert closed.sent is not None and closed.sent.code == 1011
    assert closed.sent.reason == "keepalive ping timeout"
    assert closed.rcvd is None
    assert key not in gateway_sim.control.stats()["deliveries"]
    await wait_for(lambda: gateway_sim.control.stats(key)["current"] == 0)


async def test_a_session_opened_while_silent_gets_no_hello(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("silent", instance=key, count=1)
    async with gateway_sim.connect(key, ping_interval=0.2, ping_timeout=0.5) as ws:
        closed = await recv_close(ws)
    assert closed.sent is not None and closed.sent.reason == "keepalive ping timeout"


async def test_malformed_sends_invalid_json_a_non_object_a_frame_without_type_and_binary(
    gateway_sim: GatewaySim,
) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        gateway_sim.control.set_fault("malformed", instance=key, count=5, interval_s=0.01)
        frames = [await asyncio.wait_for(ws.recv(), 10) for _ in range(5)]
        # The session is still usable afterwards.
        await ws.send(send_frame("after-malformed"))
        assert (await recv_json(ws))["type"] == "ack"
    text, non_object, no_type, binary, again = frames
    with pytest.raises(ValueError):
        json.loads(text)
    assert isinstance(json.loads(non_object), list)
    assert "type" not in json.loads(no_type)
    assert isinstance(binary, bytes)
    assert again == text  # the kinds cycle


async def test_a_malformed_fault_set_in_advance_acts_once_the_session_is_ready(
    gateway_sim: GatewaySim,
) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("malformed", instance=key, count=1, sessions=1)
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        raw = await asyncio.wait_for(ws.recv(), 10)
    with pytest.raises(ValueError):
        json.loads(raw)
    assert gateway_sim.control.faults() == []


async def test_nack_answers_sends_with_nack_instead_of_ack(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault(
        "nack", instance=key, permanent=False, error="rate_limited", retry_after_s=2.5, count=1
    )
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("nacked-1"))
        nack = await recv_json(ws)
        assert nack == {
            "type": "nack",
            "id": "nacked-1",
            "error": "rate_limited",
            "permanent": False,
            "retry_after_s": 2.5,
        }
        # Not accepted, so the same id may be sent again and is delivered then.
        await ws.send(send_frame("nacked-1"))
        assert (await recv_json(ws))["type"] == "ack"

        gateway_sim.control.set_fault("nack", instance=key, permanent=True, error="banned")
        await ws.send(send_frame("nacked-2"))
        nack = await recv_json(ws)
        assert nack == {"type": "nack", "id": "nacked-2", "error": "banned", "permanent": True}
    stats = gateway_sim.control.stats()
    assert stats["deliveries"] == {f"{key}:nacked-1": 1}
    assert stats["instances"][key]["nacked"] == 2


async def test_a_nack_fault_with_every_nacks_one_send_in_n_until_its_count(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("nack", instance=key, error="rate_limited", every=3, count=2)
    answers = []
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        for n in range(9):
            await ws.send(send_frame(f"m{n}"))
            answers.append((await recv_json(ws))["type"])
    # The 3rd and the 6th are nacked; the count is used up, so the 9th goes.
    assert answers == ["ack", "ack", "nack", "ack", "ack", "nack", "ack", "ack", "ack"]
    assert gateway_sim.control.faults() == []
    assert gateway_sim.control.stats()["instances"][key]["nacked"] == 2


async def test_restart_drops_every_session_at_once(gateway_sim: GatewaySim) -> None:
    keys = [new_instance_key() for _ in range(3)]
    clients = [await gateway_sim.connect(key) for key in keys]
    try:
        for ws in clients:
            await recv_until(ws, "ready")
        assert gateway_sim.control.restart()["closed"] == 3
        for ws in clients:
            closed = await recv_close(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1001
    finally:
        for ws in clients:
            await ws.close()
    await wait_for(lambda: gateway_sim.control.stats()["sessions"] == 0)

    clients = [await gateway_sim.connect(key) for key in keys]
    try:
        for ws in clients:
            await recv_until(ws, "ready")
        gateway_sim.control.restart(abort=True)
        for ws in clients:
            closed = await recv_close(ws)
            assert closed.rcvd is None and ws.close_code == 1006
    finally:
        for ws in clients:
            await ws.close()
    await wait_for(lambda: gateway_sim.control.stats()["sessions"] == 0)


async def test_faults_are_listed_and_cleared_per_instance_or_all(gateway_sim: GatewaySim) -> None:
    one, two = new_instance_key(), new_instance_key()
    control = gateway_sim.control
    control.set_fault("refuse", instance=one, status=429)
    control.set_fault("nack", instance=two, count=3)
    control.set_fault("hang")
    listed = {(f["fault"], f["instance"]): f for f in control.faults()}
    assert set(listed) == {("refuse", one), ("nack", two), ("hang", None)}
    assert listed[("nack", two)]["remaining"] == 3
    assert listed[("refuse", one)]["params"] == {"status": 429, "retry_after": None}

    assert control.clear_faults(one) == 1
    assert {(f["fault"], f["instance"]) for f in control.faults()} == {("nack", two), ("hang", None)}
    assert control.clear_faults() == 2
    assert control.faults() == []


async def test_an_instance_fault_wins_over_a_global_one(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    gateway_sim.control.set_fault("refuse", status=503)
    gateway_sim.control.set_fault("refuse", instance=key, status=429)
    for target, status in ((key, 429), (new_instance_key(), 503)):
        with pytest.raises(InvalidStatus) as caught:
            async with gateway_sim.connect(target):
                pass
        assert caught.value.response.status_code == status


async def test_reset_forgets_faults_stats_pairings_and_tokens(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key, token="old") as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("before-reset"))
        await recv_json(ws)
        gateway_sim.control.set_fault("nack")
        gateway_sim.control.reset()
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    stats = gateway_sim.control.stats()
    assert stats["instances"] == {} and stats["deliveries"] == {} and stats["max_sessions"] == 0
    assert gateway_sim.control.faults() == []
    # A different token is trusted again, and the old message id is new again.
    async with gateway_sim.connect(key, token="new") as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("before-reset"))
        assert (await recv_json(ws))["type"] == "ack"
    assert gateway_sim.control.stats()["deliveries"] == {f"{key}:before-reset": 1}

"""Pairing by phone number: the simulator's optional ``pair_code`` frame.

The simulator runs as its own process; a real ``websockets`` client asks it
for codes over 127.0.0.1 (PROTOCOL.md section 6).
"""

from __future__ import annotations

import json
import re

from tests.fixtures.simulator import GatewaySim, gateway_sim_args, new_instance_key, recv_json, recv_until

PHONE = "+6281234567890"
CODE = re.compile(r"[2-9A-HJ-NP-TV-Z]{8}")


def pair_code(phone: object = PHONE) -> str:
    return json.dumps({"type": "pair_code", "phone": phone})


async def test_hello_announces_pair_code(gateway_sim: GatewaySim) -> None:
    async with gateway_sim.connect(new_instance_key()) as ws:
        hello = await recv_json(ws)
    assert hello["features"] == ["pair_code", "media", "check", "presence"]


@gateway_sim_args("--qr-ttl", "0.25", "--auto-pair-after", "4", "--pair-code-delay", "0.5")
async def test_a_code_is_answered_and_pairs_the_phone_it_was_asked_for(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "qr")
        await ws.send(pair_code())
        answer = (await recv_until(ws, "pair_code"))[-1]
        assert CODE.fullmatch(answer["code"]), answer
        frames = await recv_until(ws, "ready")
    assert [f for f in frames if f["type"] == "paired"] == [{"type": "paired", "account": PHONE}]
    stats = gateway_sim.control.stats(key)
    assert (stats["pair_code_requests"], stats["pair_codes"], stats["account"]) == (1, 1, PHONE)


@gateway_sim_args("--qr-ttl", "0.25", "--auto-pair-after", "0.5", "--pair-code-delay", "0")
async def test_once_a_code_is_given_the_qr_no_longer_pairs_by_itself(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "qr")
        await ws.send(pair_code())
        await recv_until(ws, "pair_code")
        # Eight more codes take 2 s, well past the auto-pair delay: still unpaired.
        for _ in range(8):
            assert (await recv_json(ws))["type"] == "qr"
        assert gateway_sim.control.stats(key)["paired"] is False
        gateway_sim.control.pair(key, account=PHONE)
        assert [f["type"] for f in await recv_until(ws, "ready")][-2:] == ["paired", "ready"]


@gateway_sim_args("--auto-pair-after", "0", "--pair-code-delay", "0")
async def test_a_phone_that_is_not_e164_gets_an_error_and_the_session_goes_on(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "qr")
        for bad in ("6281234567890", "+62 812", 6281234567890, None):
            await ws.send(pair_code(bad))
            error = (await recv_until(ws, "error"))[-1]
            assert error["code"] == "invalid_pair_code", (bad, error)
        await ws.send(pair_code())
        assert CODE.fullmatch((await recv_until(ws, "pair_code"))[-1]["code"])
    stats = gateway_sim.control.stats(key)
    assert (stats["pair_code_requests"], stats["pair_codes"]) == (5, 1)


@gateway_sim_args("--start-paired")
async def test_a_paired_account_gets_no_code(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(pair_code())
        error = (await recv_until(ws, "error"))[-1]
    assert error["code"] == "pair_code_unavailable"
    assert gateway_sim.control.stats(key)["pair_codes"] == 0


@gateway_sim_args("--no-pair-code", "--v1", "--auto-pair-after", "0")
async def test_without_the_feature_nothing_is_announced_and_the_frame_is_ignored(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        hello = await recv_json(ws)
        assert "features" not in hello
        await recv_until(ws, "qr")
        await ws.send(pair_code())
        # Frames are answered in order: the reply to the next one shows that
        # the request got none.
        await ws.send("not json")
        frames = await recv_until(ws, "error")
    assert {f["type"] for f in frames} <= {"qr", "error"}
    assert frames[-1]["code"] == "malformed_frame"
    stats = gateway_sim.control.stats(key)
    assert (stats["pair_code_requests"], stats["pair_codes"]) == (1, 0)


@gateway_sim_args("--auto-pair-after", "0", "--pair-code-delay", "0")
async def test_a_pair_code_fault_refuses_the_next_request_only(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "qr")
        gateway_sim.control.set_fault("pair_code", instance=key, message="try later", count=1)
        await ws.send(pair_code())
        error = (await recv_until(ws, "error"))[-1]
        assert (error["code"], error["message"]) == ("pair_code_failed", "try later")
        await ws.send(pair_code())
        assert CODE.fullmatch((await recv_until(ws, "pair_code"))[-1]["code"])

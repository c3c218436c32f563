"""The simulator speaks PROTOCOL.md to a real client: opening, pairing, sending, closing.

Every test starts the simulator as its own process and talks to it with a
real ``websockets`` client over 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from websockets.exceptions import InvalidStatus

from tests.fixtures.simulator import (
    GatewaySim,
    gateway_sim_args,
    new_instance_key,
    recv_close,
    recv_json,
    recv_until,
    wait_for,
)

E164 = re.compile(r"\+[0-9]{8,15}")


def send_frame(message_id: str, to: str = "+15551230000", text: str = "hello") -> str:
    return json.dumps({"type": "send", "id": message_id, "to": to, "text": text})


# --- opening ------------------------------------------------------------------


@gateway_sim_args("--start-paired", "--heartbeat-s", "7")
async def test_a_paired_instance_gets_hello_then_ready(gateway_sim: GatewaySim) -> None:
    async with gateway_sim.connect(new_instance_key()) as ws:
        assert ws.subprotocol == "blast-gateway.v1"
        hello = await recv_json(ws)
        assert hello["type"] == "hello"
        assert hello["v"] == 1
        assert hello["paired"] is True
        assert hello["heartbeat_s"] == 7
        assert isinstance(hello["session_id"], str) and hello["session_id"]
        assert (await recv_json(ws)) == {"type": "ready"}


async def test_a_key_that_is_not_a_canonical_uuid_is_404(gateway_sim: GatewaySim) -> None:
    for key in ("not-a-uuid", new_instance_key().upper(), new_instance_key().replace("-", "")):
        with pytest.raises(InvalidStatus) as caught:
            async with gateway_sim.connect(key):
                pass
        assert caught.value.response.status_code == 404, key


async def test_a_missing_bearer_token_is_401(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    with pytest.raises(InvalidStatus) as caught:
        async with gateway_sim.connect(key, token=None):
            pass
    assert caught.value.response.status_code == 401
    assert gateway_sim.control.stats(key)["refused"] == 1


async def test_the_first_token_is_trusted_and_another_is_401_until_forgotten(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key, token="first") as ws:
        assert (await recv_json(ws))["type"] == "hello"
    with pytest.raises(InvalidStatus) as caught:
        async with gateway_sim.connect(key, token="second"):
            pass
    assert caught.value.response.status_code == 401

    gateway_sim.control.forget_token(key)
    async with gateway_sim.connect(key, token="second") as ws:
        assert (await recv_json(ws))["type"] == "hello"
    stats = gateway_sim.control.stats(key)
    assert (stats["attempts"], stats["connects"], stats["refused"]) == (3, 2, 1)


# --- pairing ------------------------------------------------------------------


@gateway_sim_args("--qr-ttl", "0.25", "--auto-pair-after", "1.5")
async def test_an_unpaired_session_rotates_qr_codes_then_pairs_by_itself(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello" and hello["paired"] is False
        frames = await recv_until(ws, "ready")
    qrs = [f for f in frames if f["type"] == "qr"]
    assert len(qrs) >= 2, frames
    assert len({f["code"] for f in qrs}) == len(qrs), "every QR code is new"
    assert all(f["expires_s"] == 1 for f in qrs)  # 0.25 s rounded up to whole seconds
    assert [f["type"] for f in frames[-2:]] == ["paired", "ready"]
    assert E164.fullmatch(frames[-2]["account"])

    # Pairing is remembered across sessions.
    async with gateway_sim.connect(key) as ws:
        assert (await recv_json(ws))["paired"] is True
        assert (await recv_json(ws))["type"] == "ready"
    assert gateway_sim.control.stats(key)["paired"] is True


@gateway_sim_args("--qr-ttl", "0.2", "--auto-pair-after", "0")
async def test_with_auto_pairing_off_only_the_control_call_pairs(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        assert (await recv_json(ws))["paired"] is False
        # Rotation goes on past any auto-pair delay: several codes, no pairing.
        for _ in range(3):
            assert (await recv_json(ws))["type"] == "qr"
        gateway_sim.control.pair(key, account="+4915112345678")
        frames = await recv_until(ws, "ready")
    paired = [f for f in frames if f["type"] == "paired"]
    assert paired == [{"type": "paired", "account": "+4915112345678"}]
    assert gateway_sim.control.stats(key)["account"] == "+4915112345678"


@gateway_sim_args("--auto-pair-after", "0")
async def test_a_send_before_ready_is_an_error_frame_and_the_session_goes_on(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "qr")
        await ws.send(send_frame("early-1"))
        frames = await recv_until(ws, "error")
        assert frames[-1]["code"] == "not_ready"
        assert frames[-1]["id"] == "early-1"
        gateway_sim.control.pair(key)
        await recv_until(ws, "ready")
        await ws.send(send_frame("early-1"))
        ack = await recv_json(ws)
        assert ack["type"] == "ack" and ack["id"] == "early-1"


@gateway_sim_args("--start-paired")
async def test_logout_unpairs_and_closes_with_4401(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(json.dumps({"type": "logout"}))
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 4401
    assert gateway_sim.control.stats(key)["paired"] is False
    # The next session must pair again.
    async with gateway_sim.connect(key) as ws:
        assert (await recv_json(ws))["paired"] is False
        assert (await recv_json(ws))["type"] == "qr"


# --- sending --------------------------------------------------------------------


@gateway_sim_args("--start-paired", "--receipt-delay", "0.05")
async def test_a_send_is_acked_then_delivered_then_read(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("msg-1", text="x" * 4096))
        ack = await recv_json(ws)
        assert ack["type"] == "ack" and ack["id"] == "msg-1" and ack["server_id"]
        assert (await recv_json(ws)) == {"type": "receipt", "id": "msg-1", "status": "delivered"}
        assert (await recv_json(ws)) == {"type": "receipt", "id": "msg-1", "status": "read"}
    assert gateway_sim.control.stats()["deliveries"] == {f"{key}:msg-1": 1}


@gateway_sim_args("--start-paired", "--receipt-delay", "-1")
async def test_the_same_id_twice_is_delivered_once_and_acked_twice(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("dup-1"))
        await ws.send(send_frame("dup-1"))
        first, second = await recv_json(ws), await recv_json(ws)
    assert first["type"] == second["type"] == "ack"
    assert first["server_id"] == second["server_id"]

    # After a reconnect (the client did not know whether the send went through)
    # the gateway still answers with the original ack and delivers nothing new.
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("dup-1"))
        third = await recv_json(ws)
    assert third == first
    stats = gateway_sim.control.stats()
    assert stats["deliveries"] == {f"{key}:dup-1": 1}
    assert stats["instances"][key]["duplicates"] == 2


INVALID_SENDS = [
    {"type": "send", "to": "+15551230000", "text": "no id"},
    {"type": "send", "id": "", "to": "+15551230000", "text": "empty id"},
    {"type": "send", "id": "has space", "to": "+15551230000", "text": "bad id"},
    {"type": "send", "id": "x" * 65, "to": "+15551230000", "text": "long id"},
    {"type": "send", "id": 42, "to": "+15551230000", "text": "numeric id"},
    {"type": "send", "id": "ok-1", "to": "15551230000", "text": "no plus"},
    {"type": "send", "id": "ok-1", "to": "+1234567", "text": "7 digits"},
    {"type": "send", "id": "ok-1", "to": "+1234567890123456", "text": "16 digits"},
    {"type": "send", "id": "ok-1", "text": "no to"},
    {"type": "send", "id": "ok-1", "to": "+15551230000", "text": ""},
    {"type": "send", "id": "ok-1", "to": "+15551230000", "text": "x" * 4097},
    {"type": "send", "id": "ok-1", "to": "+15551230000", "text": ["not", "a", "string"]},
    {"type": "send", "id": "ok-1", "to": "+15551230000"},
]


@gateway_sim_args("--start-paired")
async def test_invalid_sends_get_error_frames_and_the_session_keeps_serving(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        for frame in INVALID_SENDS:
            await ws.send(json.dumps(frame))
            error = await recv_json(ws)
            assert error["type"] == "error" and error["code"] == "invalid_send", (frame, error)
            assert error["message"]
        await ws.send(send_frame("ok-1"))
        assert (await recv_json(ws))["type"] == "ack"
    assert gateway_sim.control.stats()["deliveries"] == {f"{key}:ok-1": 1}


@gateway_sim_args("--start-paired", "--receipt-delay", "-1")
async def test_malformed_client_frames_get_error_frames_and_unknown_types_are_ignored(
    gateway_sim: GatewaySim,
) -> None:
    key = new_instance_key()
    malformed: list[str | bytes] = [
        "{not json",
        "[1, 2]",
        '"a string"',
        '{"id": "x"}',
        '{"type": 7}',
        b"\x00bin",
    ]
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        for frame in malformed:
            await ws.send(frame)
            error = await recv_json(ws)
            assert error["type"] == "error" and error["code"] == "malformed_frame", (frame, error)
        # An unknown type is not answered at all: the next frame is the ack.
        await ws.send(json.dumps({"type": "typing", "to": "+15551230000"}))
        await ws.send(send_frame("after-junk"))
        assert (await recv_json(ws))["type"] == "ack"
    stats = gateway_sim.control.stats()
    assert stats["malformed_received"] == len(malformed)
    assert stats["instances"][key]["malformed_received"] == len(malformed)


@gateway_sim_args("--start-paired")
async def test_inbound_from_the_control_api_arrives_on_the_live_session(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        answer = gateway_sim.control.inbound(key, "+447700900123", "hi there")
        frame = await recv_json(ws)
    assert frame == {
        "type": "inbound",
        "server_id": answer["server_id"],
        "from": "+447700900123",
        "text": "hi there",
    }

    # No ready session any more: 409; an instance never seen: 404.
    await wait_for(lambda: gateway_sim.control.stats(key)["current"] == 0)
    status, body = gateway_sim.control.request(
        "POST", f"instances/{key}/inbound", {"from": "+447700900123", "text": "x"}
    )
    assert status == 409, body
    status, body = gateway_sim.control.request(
        "POST", f"instances/{new_instance_key()}/inbound", {"from": "+447700900123", "text": "x"}
    )
    assert status == 404, body


# --- keepalive and closing ---------------------------------------------------------


@gateway_sim_args("--start-paired")
async def test_client_pings_are_answered(gateway_sim: GatewaySim) -> None:
    async with gateway_sim.connect(new_instance_key(), ping_interval=None) as ws:
        await recv_until(ws, "ready")
        for _ in range(3):
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)


@gateway_sim_args("--start-paired")
async def test_a_second_session_replaces_the_older_with_4440(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as older:
        await recv_until(older, "ready")
        async with gateway_sim.connect(key) as newer:
            await recv_until(newer, "ready")
            closed = await recv_close(older)
            assert closed.rcvd is not None and closed.rcvd.code == 4440
            stats = await wait_for(lambda: (s := gateway_sim.control.stats(key))["current"] == 1 and s)
            assert stats["max_concurrent"] == 2
            assert stats["connects"] == 2
            # The newer session is unaffected and serves.
            await newer.send(send_frame("after-replace"))
            assert (await recv_json(newer))["type"] == "ack"
    stats = gateway_sim.control.stats()
    assert stats["max_sessions"] == 2
    await wait_for(lambda: gateway_sim.control.stats()["sessions"] == 0)


@gateway_sim_args("--start-paired")
async def test_a_client_close_ends_the_session_on_both_sides(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        assert gateway_sim.control.stats(key)["current"] == 1
        await ws.close(1001)
        assert ws.close_code == 1001
    await wait_for(lambda: gateway_sim.control.stats(key)["current"] == 0)
    assert f"OPEN instance={key}" in gateway_sim.log()
    await wait_for(lambda: f"CLOSE instance={key}" in gateway_sim.log())

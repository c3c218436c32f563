"""Nothing a client sends crashes the simulator; it keeps serving everyone else.

The fixture fails a test whose simulator logged a traceback, so every test
here also checks that the abuse was handled, not merely survived.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.error
import urllib.request

from websockets.exceptions import ConnectionClosed

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


async def assert_still_serving(sim: GatewaySim) -> None:
    async with sim.connect(new_instance_key()) as ws:
        await recv_until(ws, "ready")
        await ws.send(send_frame("still-serving"))
        assert (await recv_json(ws))["type"] == "ack"


async def test_garbage_on_the_tcp_port_is_refused_and_serving_goes_on(gateway_sim: GatewaySim) -> None:
    for garbage in (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"HELLO?\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway_sim.port)
        writer.write(garbage)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # the simulator answers or hangs up, then EOF
        writer.close()
        await writer.wait_closed()
    await assert_still_serving(gateway_sim)


async def test_a_plain_http_get_on_the_socket_path_is_400(gateway_sim: GatewaySim) -> None:
    url = f"{gateway_sim.http_url}/v1/instances/{new_instance_key()}/socket"

    def get() -> int:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(get) == 400


async def test_an_oversized_frame_closes_that_session_with_1009_only(gateway_sim: GatewaySim) -> None:
    async with gateway_sim.connect(new_instance_key()) as ws:
        await recv_until(ws, "ready")
        await ws.send("x" * (128 * 1024))
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    await assert_still_serving(gateway_sim)


async def test_a_client_that_vanishes_is_forgotten(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    ws = await gateway_sim.connect(key)
    await recv_until(ws, "ready")
    ws.transport.abort()  # no close frame, no FIN handshake: a crashed client
    await wait_for(lambda: gateway_sim.control.stats(key)["current"] == 0)
    await assert_still_serving(gateway_sim)


async def test_random_frames_never_break_a_session(gateway_sim: GatewaySim) -> None:
    rng = random.Random(1234)
    values = [None, True, 0, -1, 1.5, "", "x", "send", "logout?", [], {}, "+15551230000", "a" * 70]
    async with gateway_sim.connect(new_instance_key()) as ws:
        await recv_until(ws, "ready")
        for n in range(300):
            frame = {k: rng.choice(values) for k in rng.sample(["type", "id", "to", "text", "v"], rng.randint(0, 5))}
            if rng.random() < 0.5:
                frame["type"] = "send"
            await ws.send(json.dumps(frame) if n % 7 else json.dumps(frame)[: rng.randint(0, 10)])
        await ws.send(send_frame("after-fuzz"))
        while (frame := await recv_json(ws))["type"] != "ack":
            assert frame["type"] == "error"
        assert frame["id"] == "after-fuzz"


async def test_hundreds_of_concurrent_sessions_all_get_ready(gateway_sim: GatewaySim) -> None:
    count = 200
    keys = [new_instance_key() for _ in range(count)]

    async def open_ready(key: str):  # type: ignore[no-untyped-def]
        ws = await gateway_sim.connect(key, ping_interval=None)
        await recv_until(ws, "ready", timeout=30)
        return ws

    clients = await asyncio.gather(*(open_ready(key) for key in keys))
    try:
        stats = gateway_sim.control.stats()
        assert stats["sessions"] == count and stats["max_sessions"] == count
        assert all(stats["instances"][key]["max_concurrent"] == 1 for key in keys)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    await wait_for(lambda: gateway_sim.control.stats()["sessions"] == 0, timeout=30)


async def test_sending_to_a_client_that_is_gone_is_harmless(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    ws = await gateway_sim.connect(key)
    await recv_until(ws, "ready")
    gateway_sim.control.set_fault("malformed", instance=key, count=200, interval_s=0.001)
    ws.transport.abort()
    try:
        await ws.recv()
    except ConnectionClosed:
        pass
    await wait_for(lambda: gateway_sim.control.stats(key)["current"] == 0)
    await assert_still_serving(gateway_sim)

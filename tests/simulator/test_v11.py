"""Protocol v1.1 in the simulator (PROTOCOL.md section 2.4): media sends
checked and their links fetched, number checks, presence; ``--v1`` announces
none of it. A real ``websockets`` client over 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.files import serve_files
from tests.fixtures.simulator import GatewaySim, gateway_sim_args, new_instance_key, recv_json, recv_until

BODY = b"\x89PNG\r\n\x1a\n" + bytes(5000)


@pytest.fixture
def link() -> Iterator[str]:
    """A file server on 127.0.0.1: /file answers BODY, anything else 404."""
    with serve_files({"/file": BODY}) as base:
        yield base


def media_send(message_id: str, url: str, **media: Any) -> str:
    fields = {"kind": "image", "url": url, "mime": "image/png", "filename": "p.png", "size": len(BODY), **media}
    return json.dumps({"type": "send", "id": message_id, "to": "+5511999990001", "media": fields, "caption": "hi"})


@gateway_sim_args("--start-paired")
async def test_a_media_send_is_fetched_then_acked_once_and_a_broken_link_is_a_transient_nack(
    gateway_sim: GatewaySim, link: str
) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(media_send("m1", f"{link}/file"))
        ack = (await recv_until(ws, "ack"))[-1]
        await ws.send(media_send("m1", f"{link}/file"))
        assert (await recv_until(ws, "ack"))[-1] == ack
        await ws.send(media_send("m2", f"{link}/missing"))
        nack = (await recv_until(ws, "nack"))[-1]
        assert nack == {"type": "nack", "id": "m2", "error": "media_unavailable", "permanent": False}
        await ws.send(media_send("m3", f"{link}/file", size=len(BODY) + 1))
        assert (await recv_until(ws, "nack"))[-1]["id"] == "m3"
        await ws.send(media_send("m4", f"{link}/file", kind="sticker"))
        error = (await recv_until(ws, "error"))[-1]
        assert (error["code"], error["id"]) == ("invalid_send", "m4") and "media.kind" in error["message"]
    stats = gateway_sim.control.stats(key)
    assert stats["media"]["m1"]["fetched_bytes"] == len(BODY) and stats["media"]["m1"]["caption"] == "hi"
    assert stats["media_fetch_failures"] == 2 and stats["duplicates"] == 1
    assert gateway_sim.control.stats()["deliveries"] == {f"{key}:m1": 1}


@gateway_sim_args("--start-paired")
async def test_checks_answer_every_number_and_presence_is_recorded(gateway_sim: GatewaySim) -> None:
    gateway_sim.control.set_absent_numbers(["+15550000001"])
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        await ws.send(json.dumps({"type": "check", "id": "c1", "phones": ["+15550000001", "+15550000002"]}))
        result = (await recv_until(ws, "check_result"))[-1]
        assert result == {"type": "check_result", "id": "c1", "results": {"+15550000001": False, "+15550000002": True}}
        await ws.send(json.dumps({"type": "check", "id": "c2", "phones": ["+1555"] * 2}))
        error = (await recv_until(ws, "error"))[-1]
        assert (error["code"], error["id"]) == ("invalid_check", "c2")
        await ws.send(json.dumps({"type": "presence", "to": "+15550000002", "state": "composing"}))
        await ws.send(json.dumps({"type": "presence", "to": "+15550000002", "state": "dancing"}))
        assert (await recv_until(ws, "error"))[-1]["code"] == "invalid_presence"
    stats = gateway_sim.control.stats(key)
    assert stats["checks"] == 1 and stats["presence"] == [["+15550000002", "composing"]]


@gateway_sim_args("--start-paired", "--v1")
async def test_a_v1_simulator_announces_no_v11_feature_and_reads_a_media_send_as_a_bad_text(
    gateway_sim: GatewaySim, link: str
) -> None:
    async with gateway_sim.connect(new_instance_key()) as ws:
        hello = await recv_json(ws)
        assert hello["features"] == ["pair_code"]
        await recv_until(ws, "ready")
        await ws.send(media_send("m1", f"{link}/file"))
        error = (await recv_until(ws, "error"))[-1]
        assert error["code"] == "invalid_send" and "text" in error["message"]

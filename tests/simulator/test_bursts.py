"""Inbound bursts: one control call, many paced ``inbound`` frames, each stamped.

The pacing and the stamps are pure and tested by passing the time; the
control call is tested against the simulator as its own process, with real
``websockets`` clients over 127.0.0.1.
"""

from __future__ import annotations

import time
from typing import Any

from simulator.bursts import due, parse_stamp, sender_of, stamped_text
from simulator.protocol import E164_RE
from tests.fixtures.simulator import GatewaySim, gateway_sim_args, new_instance_key, recv_json, recv_until, wait_for

# --- the pure parts -------------------------------------------------------------------


def test_the_first_frame_goes_at_once_and_frame_n_at_n_over_the_rate() -> None:
    assert due(-0.5, 100, 10) == 0
    assert due(0.0, 100, 10) == 1
    assert due(0.0099, 100, 10) == 1
    assert due(0.01, 100, 10) == 2
    assert due(0.05, 100, 10) == 6


def test_a_burst_never_sends_more_than_its_count() -> None:
    assert due(0.09, 100, 10) == 10
    assert due(3600.0, 100, 10) == 10


def test_a_stamped_text_gives_back_its_burst_number_and_time() -> None:
    text = stamped_text("bench", 3, 41, 1764748800.123456)
    assert text == "bench 3:41 @1764748800.123456"
    assert parse_stamp(text) == (3, 41, 1764748800.123456)
    assert parse_stamp("a prefix with spaces 1:2 @5.5") == (1, 2, 5.5)


def test_a_text_without_a_stamp_parses_to_none() -> None:
    assert parse_stamp("hello there") is None
    assert parse_stamp("bench x:y @soon") is None


def test_every_message_has_its_own_valid_sender() -> None:
    senders = [sender_of(n) for n in range(1000)]
    assert len(set(senders)) == 1000
    assert all(E164_RE.fullmatch(s) for s in senders)


# --- the control call ------------------------------------------------------------------


@gateway_sim_args("--start-paired")
async def test_a_burst_sends_count_frames_round_robin_at_its_rate(gateway_sim: GatewaySim) -> None:
    keys = [new_instance_key(), new_instance_key()]
    async with gateway_sim.connect(keys[0]) as first, gateway_sim.connect(keys[1]) as second:
        await recv_until(first, "ready")
        await recv_until(second, "ready")
        started = time.time()
        answer = gateway_sim.control.inbound_burst(20, 100, instances=keys, text="load test")
        assert answer["burst"] == 1 and answer["count"] == 20 and answer["instances"] == 2
        frames = {key: [await recv_json(ws) for _ in range(10)] for key, ws in zip(keys, (first, second), strict=True)}
        await wait_for(lambda: gateway_sim.control.burst(1)["done"])
    status = gateway_sim.control.burst(1)
    assert (status["sent"], status["skipped"]) == (20, 0)
    # 20 frames at 100 a second: the last goes 0.19 s after the first.
    assert status["finished_at"] - status["started_at"] >= 0.19

    received = [frame for per_instance in frames.values() for frame in per_instance]
    assert {frame["type"] for frame in received} == {"inbound"}
    assert len({frame["server_id"] for frame in received}) == 20
    stamps = {key: [parse_stamp(frame["text"]) for frame in frames[key]] for key in keys}
    # Round robin: the first instance gets the even numbers, the second the odd.
    assert [s[1] for s in stamps[keys[0]] if s] == list(range(0, 20, 2))
    assert [s[1] for s in stamps[keys[1]] if s] == list(range(1, 20, 2))
    assert all(frame["text"].startswith("load test 1:") for frame in received)
    times = sorted(s[2] for per_instance in stamps.values() for s in per_instance if s)
    assert started <= times[0] and times[-1] - times[0] >= 0.18
    assert all(E164_RE.fullmatch(frame["from"]) for frame in received)


@gateway_sim_args("--start-paired")
async def test_a_burst_without_instances_goes_to_every_ready_session(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        gateway_sim.control.inbound_burst(3, 1000, sender="+5511999990001")
        frames = [await recv_json(ws) for _ in range(3)]
    assert [frame["from"] for frame in frames] == ["+5511999990001"] * 3
    assert [parse_stamp(frame["text"])[:2] for frame in frames] == [(1, 0), (1, 1), (1, 2)]  # type: ignore[index]


@gateway_sim_args("--start-paired")
async def test_an_instance_that_loses_its_session_mid_burst_is_skipped(gateway_sim: GatewaySim) -> None:
    kept, lost = new_instance_key(), new_instance_key()
    async with gateway_sim.connect(kept) as ws:
        await recv_until(ws, "ready")
        async with gateway_sim.connect(lost) as gone:
            await recv_until(gone, "ready")
        await wait_for(lambda: gateway_sim.control.stats(lost)["current"] == 0)
        gateway_sim.control.inbound_burst(6, 1000, instances=[kept, lost])
        frames = [await recv_json(ws) for _ in range(3)]
        await wait_for(lambda: gateway_sim.control.burst(1)["done"])
    assert len(frames) == 3
    status = gateway_sim.control.burst(1)
    assert (status["sent"], status["skipped"]) == (3, 3)


BAD_BURSTS: list[dict[str, Any]] = [
    {},
    {"count": 10},
    {"rate": 10},
    {"count": 0, "rate": 10},
    {"count": 1.5, "rate": 10},
    {"count": True, "rate": 10},
    {"count": 10, "rate": 0},
    {"count": 10, "rate": "fast"},
    {"count": 10, "rate": 1e9},
    {"count": 10, "rate": 10, "instances": []},
    {"count": 10, "rate": 10, "instances": "all"},
    {"count": 10, "rate": 10, "instances": ["not-a-uuid"]},
    {"count": 10, "rate": 10, "from": "12345"},
    {"count": 10, "rate": 10, "text": ""},
    {"count": 10, "rate": 10, "speed": 3},
]


async def test_bad_bursts_are_400_and_unknown_ones_404(gateway_sim: GatewaySim) -> None:
    wrong = []
    for body in BAD_BURSTS:
        status, answer = gateway_sim.control.request("POST", "inbound-burst", body)
        if status != 400 or not isinstance(answer, dict) or not answer.get("message"):
            wrong.append((body, status, answer))
    assert wrong == []
    unknown = {"count": 10, "rate": 10, "instances": [new_instance_key()]}
    assert gateway_sim.control.request("POST", "inbound-burst", unknown)[0] == 404
    assert gateway_sim.control.request("GET", "inbound-burst/1")[0] == 404
    assert gateway_sim.control.request("GET", "inbound-burst/first")[0] == 404


async def test_a_burst_with_no_ready_session_is_409(gateway_sim: GatewaySim) -> None:
    status, answer = gateway_sim.control.request("POST", "inbound-burst", {"count": 10, "rate": 10})
    assert status == 409, answer
    key = new_instance_key()
    gateway_sim.control.pair(key)  # known, never connected
    status, answer = gateway_sim.control.request("POST", "inbound-burst", {"count": 1, "rate": 1, "instances": [key]})
    assert status == 409, answer

"""The gateway protocol (shared/PROTOCOL.md), checked against every gateway.

One suite, run against each gateway the platform ships: the simulator
(``manage.py run_gateway_sim``) and the Baileys bridge (``bridges/baileys``,
the real Baileys library against the fake WhatsApp server of its own tests).
Each test is one clause of the contract, spoken from the client's side with a
real ``websockets`` client, so a gateway author can read this file as the
contract and run it against a new gateway by adding it to :data:`GATEWAYS`.

What a gateway does not share with the others is behind :class:`Phone`: how
an account gets paired (the simulator's control API; for the bridge, the fake
WhatsApp's phone scanning the QR the session shows) and how to count what
the network delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from simulator.control import SimulatorControl
from tests.fixtures.bridge import FakeWhatsApp, start_bridge, start_fake_whatsapp
from tests.fixtures.simulator import new_instance_key, start_gateway_sim

SUBPROTOCOL = "blast-gateway.v1"
GATEWAYS = ["simulator", "bridge"]
RECIPIENT = "+6289876543210"
E164 = re.compile(r"^\+[0-9]{8,15}$")
# Generous: the bridge opens a real WhatsApp Web connection (Noise handshake,
# prekey upload) per session on a loaded 2-core machine.
FRAME_TIMEOUT_S = 20.0
RESTART_REQUIRED = 4515


class Phone(Protocol):
    """The account's phone and the network behind a gateway."""

    def scan(self, instance_key: str, qr: str) -> None:
        """Pair the account of ``instance_key``, whose session shows ``qr``."""

    def deliveries(self, instance_key: str, client_id: str, server_id: str) -> int:
        """How many times the network delivered that message."""


class SimulatorPhone:
    """The simulator pairs through its control API and counts deliveries per client id."""

    def __init__(self, control: SimulatorControl) -> None:
        self.control = control

    def scan(self, instance_key: str, qr: str) -> None:
        self.control.pair(instance_key)

    def deliveries(self, instance_key: str, client_id: str, server_id: str) -> int:
        return int(self.control.stats()["deliveries"].get(f"{instance_key}:{client_id}", 0))


class WhatsAppPhone:
    """The fake WhatsApp's phone scans the QR; its server lists what it received."""

    def __init__(self, fake: FakeWhatsApp) -> None:
        self.fake = fake

    def scan(self, instance_key: str, qr: str) -> None:
        self.fake.scan(qr)

    def deliveries(self, instance_key: str, client_id: str, server_id: str) -> int:
        return self.fake.deliveries(server_id)


@dataclass
class Gateway:
    name: str
    url: str
    phone: Phone

    def socket_url(self, instance_key: str) -> str:
        return f"{self.url}/v1/instances/{instance_key}/socket"


@pytest.fixture(scope="module", params=GATEWAYS)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if request.param == "simulator":
        # Paired only when the test pairs it; no receipts between the frames a test reads.
        with start_gateway_sim("--auto-pair-after", "0", "--receipt-delay", "-1") as sim:
            yield Gateway("simulator", sim.url, SimulatorPhone(sim.control))
        return
    directory: Path = tmp_path_factory.mktemp("bridge")
    with start_fake_whatsapp(directory) as fake, start_bridge(fake, directory) as bridge:
        fake.add_contact(RECIPIENT)
        yield Gateway("bridge", bridge.url, WhatsAppPhone(fake))
        log = bridge.log()
        assert bridge.process is not None and bridge.process.poll() is None, f"the bridge exited:\n{log[-4000:]}"
        assert "UNCAUGHT-EXCEPTION" not in log and "UNHANDLED-REJECTION" not in log, log[-4000:]


# --- the client's side -------------------------------------------------------------


def new_token() -> str:
    return secrets.token_urlsafe(24)


def open_session(gateway: Gateway, instance_key: str, token: str | None, **kwargs: Any) -> connect:
    """A client as PROTOCOL.md section 1 describes it (``token`` None: no Authorization)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return connect(
        kwargs.pop("url", gateway.socket_url(instance_key)),
        additional_headers={**headers, **kwargs.pop("headers", {})},
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        compression=None,
        open_timeout=10,
        close_timeout=2,
        **kwargs,
    )


async def expect(ws: ClientConnection, frame_type: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The next frame, which must be a ``frame_type`` one; frames of the
    types in ``skip`` (e.g. a new ``qr``) are passed over, any other fails."""
    async with asyncio.timeout(FRAME_TIMEOUT_S):
        while True:
            raw = await ws.recv()
            assert isinstance(raw, str), f"a binary frame from the gateway: {raw!r}"
            frame = json.loads(raw)
            assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
            if frame["type"] == frame_type:
                return frame
            assert frame["type"] in skip, f"expected a {frame_type} frame, got {frame}"


async def close_code(ws: ClientConnection) -> int | None:
    """The gateway's close code (None: the TCP connection dropped without one)."""
    async with asyncio.timeout(FRAME_TIMEOUT_S):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return None if closed.rcvd is None else closed.rcvd.code


async def still_open(ws: ClientConnection) -> bool:
    """The session answers a ping: it is open and being served."""
    pong = await ws.ping()
    await asyncio.wait_for(pong, FRAME_TIMEOUT_S)
    return True


@contextlib.asynccontextmanager
async def paired_and_ready(gateway: Gateway, instance_key: str, token: str) -> AsyncIterator[ClientConnection]:
    """A ready session of a freshly paired instance: ``hello``, ``qr``, the
    phone scans it, ``paired``, then ``ready``, either on the same session or,
    after a close with 4515 (restart required), on the next one, opened at
    once as a client does."""
    async with open_session(gateway, instance_key, token) as ws:
        assert (await expect(ws, "hello"))["paired"] is False
        qr = await expect(ws, "qr")
        await asyncio.to_thread(gateway.phone.scan, instance_key, qr["code"])
        paired = await expect(ws, "paired", skip=("qr",))
        assert E164.match(paired["account"]), paired
        try:
            await expect(ws, "ready")
        except ConnectionClosed:
            assert ws.close_code == RESTART_REQUIRED, f"closed with {ws.close_code} after pairing"
        else:
            yield ws
            return
    async with open_session(gateway, instance_key, token) as ws:
        assert (await expect(ws, "hello"))["paired"] is True
        await expect(ws, "ready")
        yield ws


def send_frame(client_id: str, text: str = "Halo dari Blast") -> str:
    return json.dumps({"type": "send", "id": client_id, "to": RECIPIENT, "text": text})


# --- section 1: opening a session ------------------------------------------------


async def test_the_upgrade_is_answered_with_the_blast_gateway_v1_subprotocol(gateway: Gateway) -> None:
    async with open_session(gateway, new_instance_key(), new_token()) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Protocol"] == SUBPROTOCOL


@pytest.mark.parametrize(
    "path",
    [
        "/v1/instances/{key}/sockets",
        "/v2/instances/{key}/socket",
        "/v1/instances/not-a-uuid/socket",
        "/v1/instances/{upper}/socket",  # not the canonical (lower-case) form
        "/socket",
    ],
)
async def test_an_upgrade_on_another_path_is_refused_with_404(gateway: Gateway, path: str) -> None:
    key = new_instance_key()
    url = gateway.url + path.format(key=key, upper=key.upper())
    with pytest.raises(InvalidStatus) as refused:
        async with open_session(gateway, key, new_token(), url=url):
            pass
    assert refused.value.response.status_code == 404


@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwYXNz", "Bearer"])
async def test_an_upgrade_without_a_bearer_token_is_refused_with_401(
    gateway: Gateway, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with pytest.raises(InvalidStatus) as refused:
        async with open_session(gateway, new_instance_key(), None, headers=headers):
            pass
    assert refused.value.response.status_code == 401


# --- section 2: frames -------------------------------------------------------------


async def test_hello_is_the_first_frame_with_version_session_id_paired_and_heartbeat(gateway: Gateway) -> None:
    async with open_session(gateway, new_instance_key(), new_token()) as ws:
        async with asyncio.timeout(10):  # PROTOCOL.md: within 10 s of the upgrade
            first = json.loads(await ws.recv())
    assert first["type"] == "hello"
    assert first["v"] == 1 and type(first["v"]) is int
    assert isinstance(first["session_id"], str) and first["session_id"]
    assert first["paired"] is False  # an instance this gateway never saw
    assert type(first["heartbeat_s"]) is int and first["heartbeat_s"] >= 1


MALFORMED: list[str | bytes] = ["{not json", "[1, 2]", '{"id": "m1"}', '{"type": 7}', b"\x00\x01binary"]


async def test_a_malformed_client_frame_is_answered_with_error_and_the_session_stays_open(gateway: Gateway) -> None:
    async with open_session(gateway, new_instance_key(), new_token()) as ws:
        await expect(ws, "hello")
        for frame in MALFORMED:
            await ws.send(frame)
            error = await expect(ws, "error", skip=("qr",))
            assert isinstance(error["code"], str) and error["code"], error
            assert isinstance(error["message"], str), error
        assert await still_open(ws)


async def test_a_frame_of_an_unknown_type_is_ignored(gateway: Gateway) -> None:
    async with paired_and_ready(gateway, new_instance_key(), new_token()) as ws:
        await ws.send(json.dumps({"type": "presence", "state": "composing", "to": RECIPIENT}))
        await ws.send(send_frame("after-unknown"))
        # Answers come in order: an error about the unknown frame would come first.
        ack = await expect(ws, "ack", skip=("receipt",))
    assert ack["id"] == "after-unknown"


async def test_a_send_before_ready_is_answered_with_error(gateway: Gateway) -> None:
    async with open_session(gateway, new_instance_key(), new_token()) as ws:
        assert (await expect(ws, "hello"))["paired"] is False
        await ws.send(send_frame("early-1"))
        error = await expect(ws, "error", skip=("qr",))
        assert isinstance(error["code"], str) and error["code"], error
        assert await still_open(ws)


async def test_a_second_session_for_an_instance_closes_the_older_with_4440(gateway: Gateway) -> None:
    key, token = new_instance_key(), new_token()
    async with open_session(gateway, key, token) as older:
        await expect(older, "hello")
        async with open_session(gateway, key, token) as newer:
            assert await close_code(older) == 4440
            await expect(newer, "hello")
            assert await still_open(newer)


async def test_a_paired_session_is_ready_and_a_send_is_acked_with_a_server_id(gateway: Gateway) -> None:
    key = new_instance_key()
    async with paired_and_ready(gateway, key, new_token()) as ws:
        await ws.send(send_frame("m-1"))
        ack = await expect(ws, "ack", skip=("receipt",))
    assert ack["id"] == "m-1"
    assert isinstance(ack["server_id"], str) and ack["server_id"]
    assert await asyncio.to_thread(gateway.phone.deliveries, key, "m-1", ack["server_id"]) == 1


async def test_a_send_with_an_id_already_acked_gets_the_same_ack_and_is_not_delivered_twice(
    gateway: Gateway,
) -> None:
    key = new_instance_key()
    async with paired_and_ready(gateway, key, new_token()) as ws:
        await ws.send(send_frame("m-2", "once only"))
        ack = await expect(ws, "ack", skip=("receipt",))
        await ws.send(send_frame("m-2", "once only"))
        again = await expect(ws, "ack", skip=("receipt",))
    assert again == ack
    assert await asyncio.to_thread(gateway.phone.deliveries, key, "m-2", ack["server_id"]) == 1


async def test_logout_ends_the_pairing_and_closes_with_4401(gateway: Gateway) -> None:
    key, token = new_instance_key(), new_token()
    async with paired_and_ready(gateway, key, token) as ws:
        await ws.send(json.dumps({"type": "logout"}))
        assert await close_code(ws) == 4401
    async with open_session(gateway, key, token) as ws:
        assert (await expect(ws, "hello"))["paired"] is False
        await expect(ws, "qr")

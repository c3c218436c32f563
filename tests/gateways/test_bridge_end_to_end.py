"""Blast's connection worker through the Baileys bridge to (fake) WhatsApp.

Real parts all the way down: a connection worker (and, where a retry must be
dispatched, Celery with beat) from ``tests/fixtures/platform.py``, Redis and
the test database; the Baileys bridge as its own process, with a Gateway row
pointing at it; behind it the real Baileys library speaking the real WhatsApp
Web protocol to the fake WhatsApp server of the bridge's own tests, driven
through its control API (``tests/fixtures/bridge.py``). The tests play the
account's phone, its contacts and WhatsApp's servers: they scan the QR the
platform stored, send receipts and texts, hold an ack, refuse a login and
unlink the device.

The platform has no logout command (``instances.commands`` offers connect,
disconnect, force retry and breaker reset, and the worker never sends the
protocol's ``logout`` frame), so the end of a pairing is shown the other way
round, as the phone ends it; a disconnect only stops the session and keeps
the pairing. (The ``logout`` frame itself is in test_conformance.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from campaigns.messages import accept
from campaigns.models import InboundMessage, Message, MessageStatus
from instances import commands
from instances.models import EventKind, Gateway, Instance, Status, Tenant
from tests.fixtures.bridge import Bridge, FakeWhatsApp, start_bridge, start_fake_whatsapp
from tests.fixtures.engine import Engine
from tests.fixtures.platform import Platform, wait_until

T = TypeVar("T")

RECIPIENT = "+6289876543210"
CUSTOMER = "+6281377778888"


@pytest.fixture
def whatsapp(tmp_path: Path) -> Iterator[FakeWhatsApp]:
    with start_fake_whatsapp(tmp_path) as fake:
        fake.add_contact(RECIPIENT)
        yield fake


@pytest.fixture
def bridge(whatsapp: FakeWhatsApp, tmp_path: Path) -> Iterator[Bridge]:
    with start_bridge(whatsapp, tmp_path) as started:
        yield started


@pytest.fixture
def engine(platform: Platform, bridge: Bridge) -> Iterator[Engine]:
    """The platform with the bridge as its gateway and one connection worker."""
    gateway = Gateway.objects.create(name="baileys", url=bridge.url)
    tenant = Tenant.objects.create(slug="toko", name="Toko Maju")
    eng = Engine(platform=platform, sim=None, gateway=gateway, tenant=tenant)
    eng.workers.append(platform.start_worker())
    yield eng
    eng.assert_worker_clean()
    assert eng.workers[0].alive(), eng.workers[0].log()[-4000:]
    log = bridge.logs()
    assert "UNCAUGHT-EXCEPTION" not in log and "UNHANDLED-REJECTION" not in log, log[-4000:]


def until(engine: Engine, bridge: Bridge, predicate: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """``wait_until`` that fails with the worker's and the bridge's logs as they are then."""
    try:
        return wait_until(predicate, timeout=timeout, message=what)
    except AssertionError as failure:
        logs = f"{engine.platform.logs()[-4000:]}\n===== bridge =====\n{bridge.logs()[-4000:]}"
        raise AssertionError(f"{failure}\n{logs}") from None


def message_status(message: Message) -> str:
    return str(Message.objects.values_list("status", flat=True).get(pk=message.pk))


def paired_and_connected(engine: Engine, whatsapp: FakeWhatsApp, name: str = "toko") -> Instance:
    """An instance whose QR the phone scanned, connected."""
    instance = engine.create(name)
    instance = engine.wait_status(instance, Status.AWAITING_QR)
    whatsapp.scan(instance.qr_code)
    return engine.wait_status(instance, Status.CONNECTED)


def test_a_phone_pairs_by_qr_and_the_instance_connects_after_the_restart_it_asks_for(
    engine: Engine, whatsapp: FakeWhatsApp
) -> None:
    instance = engine.create("toko")
    # The worker opens a session; the bridge's Baileys is offered QR refs by WhatsApp.
    instance = engine.wait_status(instance, Status.AWAITING_QR)
    assert instance.qr_code and not instance.paired and instance.qr_expires_at

    account = whatsapp.scan(instance.qr_code)
    instance = engine.wait_status(instance, Status.CONNECTED)
    assert (instance.paired, instance.account, instance.qr_code) == (True, account, "")
    paired = engine.wait_event(instance, EventKind.PAIRED)
    assert paired.data == {"account": account}
    restart = engine.wait_event(instance, EventKind.DISCONNECT, after=paired.id)
    assert restart.reason == "restart_required" and restart.data["failure"] is False
    engine.wait_event(instance, EventKind.READY, after=restart.id)
    assert len(engine.events(instance, EventKind.QR)) == 1
    # At WhatsApp's end: one open connection, logged in as the linked device.
    wait_until(
        lambda: [c["logged_in"] for c in whatsapp.state()["connections"] if c["open"]] == [True],
        message="the bridge logged in at WhatsApp",
    )


def test_a_message_is_sent_acked_receipted_and_a_reply_comes_in(
    engine: Engine, bridge: Bridge, whatsapp: FakeWhatsApp
) -> None:
    instance = paired_and_connected(engine, whatsapp)

    message = accept(engine.tenant, instance, RECIPIENT, "Halo dari Toko Maju").message
    until(engine, bridge, lambda: message_status(message) == MessageStatus.SENT, "the message acked")
    message.refresh_from_db()
    (delivered,) = whatsapp.messages()
    assert (delivered["id"], delivered["to"], delivered["text"]) == (message.server_id, RECIPIENT, message.text)

    whatsapp.receipt(message.server_id, "delivery")
    until(engine, bridge, lambda: message_status(message) == MessageStatus.DELIVERED, "delivered")
    whatsapp.receipt(message.server_id, "read")
    until(engine, bridge, lambda: message_status(message) == MessageStatus.READ, "read")
    message.refresh_from_db()
    assert message.sent_at and message.delivered_at and message.read_at and message.attempts == 1

    server_id = whatsapp.inbound(CUSTOMER, "Apakah masih ada stok?")
    inbound = until(
        engine,
        bridge,
        lambda: InboundMessage.objects.filter(instance=instance, server_id=server_id).first(),
        "the inbound message stored",
    )
    assert (inbound.sender, inbound.text) == (CUSTOMER, "Apakah masih ada stok?")


def test_a_message_in_flight_when_the_bridge_is_killed_reaches_whatsapp_exactly_once(
    engine: Engine, bridge: Bridge, whatsapp: FakeWhatsApp
) -> None:
    engine.celery = engine.platform.start_celery()  # its recovery jobs dispatch the retries
    instance = paired_and_connected(engine, whatsapp)
    first = accept(engine.tenant, instance, RECIPIENT, "Pesanan diterima").message
    until(engine, bridge, lambda: message_status(first) == MessageStatus.SENT, "the first message acked")
    first.refresh_from_db()

    # WhatsApp receives the second message, but its ack dies with the bridge (kill -9).
    whatsapp.set_acks("hold")
    second = accept(engine.tenant, instance, RECIPIENT, "Pesanan Anda sudah dikirim").message
    held = until(
        engine,
        bridge,
        lambda: next((m for m in whatsapp.messages() if m["text"] == second.text), None),
        "the second message at WhatsApp",
    )
    after_crash = engine.last_event_id()
    bridge.kill()
    lost = engine.wait_event(instance, EventKind.DISCONNECT, after=after_crash)
    assert lost.reason == "connection_lost"
    assert message_status(second) == MessageStatus.QUEUED

    # Back on its port with its store: the worker reconnects (no new QR) and
    # sends the unacked message again; the bridge answers with the id that
    # WhatsApp already has instead of sending it a second time.
    whatsapp.set_acks("ack")
    bridge.start()
    engine.wait_event(instance, EventKind.READY, after=lost.id, timeout=45)
    until(engine, bridge, lambda: message_status(second) == MessageStatus.SENT, "the second message acked")
    second.refresh_from_db()
    assert second.attempts == 2  # on the lost session, and again on the new one
    assert second.server_id == held["id"]
    assert sorted(m["id"] for m in whatsapp.messages()) == sorted([first.server_id, second.server_id])
    assert len(engine.events(instance, EventKind.QR)) == 1  # the pairing survived the crash


def test_a_disconnect_keeps_the_pairing_and_the_phone_unlinking_ends_it(
    engine: Engine, bridge: Bridge, whatsapp: FakeWhatsApp
) -> None:
    instance = paired_and_connected(engine, whatsapp)

    # A disconnect ends the session and the bridge's WhatsApp connection, not the pairing.
    commands.disconnect(instance, actor="test")
    instance = engine.wait_status(instance, Status.STOPPED)
    until(
        engine,
        bridge,
        lambda: not any(c["open"] for c in whatsapp.state()["connections"]),
        "the bridge's WhatsApp connection closed",
    )
    assert instance.paired and whatsapp.state()["linked_devices"]
    commands.connect(instance, actor="test")
    instance = engine.wait_status(instance, Status.CONNECTED)
    assert len(engine.events(instance, EventKind.QR)) == 1

    # The phone removes the linked device: logged out, terminal, pairing forgotten.
    assert whatsapp.unlink()["notified"] == 1
    instance = engine.wait_status(instance, Status.LOGGED_OUT)
    assert (instance.paired, instance.account, instance.last_reason) == (False, "", "logged_out")
    assert instance.next_retry_at is None

    # The owner connects again: the bridge forgot the credentials too, so a new QR.
    commands.connect(instance, actor="test")
    instance = engine.wait_status(instance, Status.AWAITING_QR)
    assert instance.qr_code and len(engine.events(instance, EventKind.QR)) == 2


def test_whatsapp_refusing_the_login_stops_the_instance_as_forbidden(
    engine: Engine, bridge: Bridge, whatsapp: FakeWhatsApp
) -> None:
    instance = engine.create("toko")
    instance = engine.wait_status(instance, Status.AWAITING_QR)
    # The login that follows the pairing's restart gets <failure reason="403">.
    whatsapp.fail_logins(403)
    whatsapp.scan(instance.qr_code)
    instance = engine.wait_status(instance, Status.FORBIDDEN)
    assert instance.last_reason == "forbidden" and instance.next_retry_at is None
    assert whatsapp.state()["failing_logins"] == []
    assert not engine.events(instance, EventKind.READY)

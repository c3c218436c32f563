"""The live dashboard: staff only, scoped to a tenant for tenant staff, fed
over a browser WebSocket; and in a real headless Chromium against a real
daphne, it shows the instances, the QR codes awaiting a scan and the inbound
messages, and follows the database without a reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from blast.asgi import application
from campaigns.models import InboundAction, InboundMessage
from instances import qr
from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    EventKind,
    Gateway,
    Instance,
    Status,
    Tenant,
    TenantMembership,
    WorkerHeartbeat,
)
from monitoring import dashboard
from tests.fixtures.platform import Platform, Process
from tests.monitoring.conftest import make_instances

PASSWORD = "correct horse battery staple"
# What a browser on http://127.0.0.1/dashboard/ sends with its handshake.
SAME_ORIGIN = [(b"host", b"127.0.0.1"), (b"origin", b"http://127.0.0.1")]


def staff(username: str, tenant: Tenant | None = None, superuser: bool = False) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True, is_superuser=superuser)
    if tenant is not None:
        TenantMembership.objects.create(user=user, tenant=tenant)
    return user


def page_state(client: Client) -> dict[str, Any]:
    response = client.get("/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('<script id="dashboard-state" type="application/json">') + len(
        '<script id="dashboard-state" type="application/json">'
    )
    return dict(json.loads(html[start : html.index("</script>", start)]))


@pytest.mark.django_db
def test_the_dashboard_is_for_staff_only(client: Client) -> None:
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(User.objects.create_user("customer", password=PASSWORD))
    assert client.get("/dashboard/").status_code == 302


def header_text(client: Client) -> str:
    """The dashboard's header as a reader sees it: its text, spaces collapsed."""
    html = client.get("/dashboard/").content.decode()
    header = html[html.index("<header>") : html.index("</header>")]
    return " ".join(re.sub(r"<[^>]+>", " ", header).split())


@pytest.mark.django_db
def test_the_header_names_the_user_once(client: Client) -> None:
    client.force_login(staff("admin", superuser=True))
    text = header_text(client)
    assert "Signed in as admin" in text
    assert re.findall(r"\badmin\b", text) == ["admin"], text
    # A user with a first name is called by it.
    olga = staff("olga.k", superuser=True)
    olga.first_name, olga.last_name = "Olga", "Kowalski"
    olga.save()
    client.force_login(olga)
    text = header_text(client)
    assert "Signed in as Olga" in text and "olga.k" not in text, text


@pytest.mark.django_db
def test_tenant_staff_see_their_tenant_only(client: Client, tenant: Tenant, gateway: Gateway) -> None:
    other = Tenant.objects.create(slug="other", name="Other")
    make_instances(tenant, gateway, Status.CONNECTED, 2, prefix="mine")
    make_instances(other, gateway, Status.CIRCUIT_OPEN, 3, prefix="theirs")
    ConnectionEvent.objects.create(instance=Instance.objects.get(name="theirs0"), kind=EventKind.ATTEMPT)

    client.force_login(staff("acme-ops", tenant))
    state = page_state(client)
    assert {row["name"] for row in state["instances"]["rows"]} == {"mine0", "mine1"}
    assert state["summary"]["scope"] == "Acme" and state["summary"]["checks"] == []
    assert (state["summary"]["score"], state["summary"]["total"]) == (100, 2)
    assert state["events"] == []

    client.force_login(staff("root", superuser=True))
    state = page_state(client)
    assert len(state["instances"]["rows"]) == 5
    # Problems first.
    assert [row["status"] for row in state["instances"]["rows"]][:3] == ["circuit_open"] * 3
    assert state["summary"]["scope"] == "platform" and state["summary"]["checks"]


@pytest.mark.django_db
def test_the_dashboard_shows_a_down_gateway_to_the_operator_and_to_tenants_using_it(
    client: Client, tenant: Tenant, gateway: Gateway
) -> None:
    from instances import outages

    Gateway.objects.create(name="unused", url="ws://127.0.0.1:3")
    make_instances(tenant, gateway, Status.BACKING_OFF, 6, prefix="mine")
    outages.mark_down(
        gateway.pk,
        reason="unavailable",
        now=1_700_000_000.0,
        actor="w",
        failing=6,
        running=6,
        policy=outages.OutagePolicy(),
    )
    client.force_login(staff("root", superuser=True))
    state = page_state(client)
    rows = {row["name"]: row for row in state["gateways"]}
    assert rows[gateway.name]["state"] == "down" and rows[gateway.name]["reason"] == "unavailable"
    assert rows["unused"]["state"] == "up"
    checks = {c["name"]: c["status"] for c in state["summary"]["checks"]}
    # The only gateway with running instances is down: nothing can connect.
    assert checks[f"gateway:{gateway.name}"] == "fail"
    assert checks["gateway:unused"] == "pass"

    client.force_login(staff("acme-ops", tenant))
    assert [row["name"] for row in page_state(client)["gateways"]] == [gateway.name]


@pytest.mark.django_db
def test_operators_see_the_connection_workers_with_sessions_and_capacity_and_tenants_do_not(
    client: Client, tenant: Tenant
) -> None:
    WorkerHeartbeat.objects.create(worker_id="host-a-1-aa", host="a", pid=1, sessions_held=3000, capacity=20_000)
    WorkerHeartbeat.objects.create(worker_id="host-b-2-bb", host="b", pid=2, stopped_at=timezone.now())
    client.force_login(staff("root", superuser=True))
    state = page_state(client)
    assert state["workers"] == [{"worker": "host-a-1-aa", "host": "a", "sessions": 3000, "capacity": 20_000}]
    assert 'id="workers"' in client.get("/dashboard/").content.decode()

    client.force_login(staff("acme-ops", tenant))
    assert page_state(client)["workers"] == []
    assert 'id="workers"' not in client.get("/dashboard/").content.decode()


def awaiting_scan(instance: Instance, code: str, expires_in_s: float = 20) -> None:
    """As the instance's worker writes a ``qr`` frame from the gateway."""
    Instance.objects.filter(pk=instance.pk).update(
        status=Status.AWAITING_QR,
        qr_code=code,
        qr_expires_at=timezone.now() + dt.timedelta(seconds=expires_in_s),
    )


def received(instance: Instance, text: str, sender: str = "+6281234567890", action: str = "") -> InboundMessage:
    """As the worker stores an ``inbound`` frame."""
    return InboundMessage.objects.create(
        tenant_id=instance.tenant_id,
        instance=instance,
        server_id=f"srv-{InboundMessage.objects.count()}",
        sender=sender,
        text=text,
        action=action,
    )


@pytest.mark.django_db
def test_the_pairing_section_draws_the_codes_awaiting_a_scan_in_the_users_tenant_only(
    client: Client, tenant: Tenant, gateway: Gateway
) -> None:
    other = Tenant.objects.create(slug="other", name="Other")
    waiting, codeless, connected = make_instances(tenant, gateway, Status.CONNECTING, 3, prefix="mine-")
    theirs = make_instances(other, gateway, Status.CONNECTING, 1, prefix="theirs-")[0]
    awaiting_scan(waiting, "2@mine,AAAA,BBBB")
    Instance.objects.filter(pk=codeless.pk).update(status=Status.AWAITING_QR)
    # A code left on the row of an instance that is past it is no code to scan.
    Instance.objects.filter(pk=connected.pk).update(status=Status.CONNECTED, qr_code="2@stale")
    awaiting_scan(theirs, "2@theirs,CCCC,DDDD")
    expires = Instance.objects.get(pk=waiting.pk).qr_expires_at
    assert expires is not None

    client.force_login(staff("acme-ops", tenant))
    pairing = page_state(client)["pairing"]
    assert pairing == {
        "rows": [
            {
                "key": str(waiting.key),
                "name": "mine-0",
                "tenant": "acme",
                "svg": qr.svg_inline("2@mine,AAAA,BBBB"),
                "expires_at": expires.isoformat(),
            }
        ],
        "more": False,
    }
    assert pairing["rows"][0]["svg"].startswith('<svg width="')
    assert "2@mine" not in json.dumps(pairing)

    client.force_login(staff("root", superuser=True))
    rows = page_state(client)["pairing"]["rows"]
    assert [(row["tenant"], row["name"]) for row in rows] == [("acme", "mine-0"), ("other", "theirs-0")]
    assert rows[1]["svg"] == qr.svg_inline("2@theirs,CCCC,DDDD")


@pytest.mark.django_db
def test_the_pairing_section_draws_the_first_few_and_says_that_more_wait(tenant: Tenant, gateway: Gateway) -> None:
    instances = make_instances(tenant, gateway, Status.CONNECTING, dashboard.PAIRING + 1, prefix="p")
    Instance.objects.filter(pk__in=[i.pk for i in instances]).update(status=Status.AWAITING_QR, qr_code="2@same")
    pairing = dashboard.build_state(tenant.pk)["pairing"]
    assert len(pairing["rows"]) == dashboard.PAIRING and pairing["more"] is True
    Instance.objects.filter(pk=instances[-1].pk).update(status=Status.CONNECTED)
    pairing = dashboard.build_state(tenant.pk)["pairing"]
    assert len(pairing["rows"]) == dashboard.PAIRING and pairing["more"] is False


@pytest.mark.django_db
def test_inbound_messages_are_listed_newest_first_in_the_users_tenant_only(
    client: Client, tenant: Tenant, gateway: Gateway
) -> None:
    other = Tenant.objects.create(slug="other", name="Other")
    mine = make_instances(tenant, gateway, Status.CONNECTED, 1, prefix="mine-")[0]
    theirs = make_instances(other, gateway, Status.CONNECTED, 1, prefix="theirs-")[0]
    first = received(mine, "Hello, is the sale still on?")
    received(theirs, "their secret")
    stop = received(mine, "STOP " + "x" * 300, sender="+6289876543210", action=InboundAction.OPT_OUT)

    client.force_login(staff("acme-ops", tenant))
    inbound = page_state(client)["inbound"]
    assert [row["id"] for row in inbound] == [stop.pk, first.pk]
    assert inbound[0] == {
        "id": stop.pk,
        "at": stop.received_at.isoformat(),
        "sender": "+6289876543210",
        "text": ("STOP " + "x" * 300)[: dashboard.TEXT_CHARS],
        "action": "opt_out",
        "instance": "mine-0",
        "tenant": "acme",
    }
    assert len(inbound[0]["text"]) == 160
    assert inbound[1]["text"] == "Hello, is the sale still on?" and inbound[1]["action"] == ""

    client.force_login(staff("root", superuser=True))
    assert [row["tenant"] for row in page_state(client)["inbound"]] == ["acme", "other", "acme"]


@pytest.mark.django_db
def test_the_dashboard_asks_the_same_queries_whatever_the_number_of_codes_and_messages(
    tenant: Tenant, gateway: Gateway
) -> None:
    def queries(tenant_id: int | None) -> int:
        with CaptureQueriesContext(connection) as captured:
            dashboard.build_state(tenant_id)
        return len(captured)

    few = make_instances(tenant, gateway, Status.CONNECTING, 1, prefix="few-")
    awaiting_scan(few[0], "2@few")
    received(few[0], "hi")
    counted = (queries(tenant.pk), queries(None))

    many = make_instances(tenant, gateway, Status.CONNECTING, 40, prefix="many-")
    for n, instance in enumerate(many):
        awaiting_scan(instance, f"2@many-{n}")
        received(instance, f"hi {n}")
    assert (queries(tenant.pk), queries(None)) == counted


@pytest.fixture
async def _close_thread_connection() -> AsyncIterator[None]:
    """The consumer's queries run in asgiref's thread: close its connection."""
    from channels.db import database_sync_to_async
    from django.db import connection

    yield
    await database_sync_to_async(lambda: connection.close())()


@pytest.fixture
def session_cookie(transactional_db: Any, _close_thread_connection: None) -> Iterator[tuple[User, bytes]]:
    client = Client()
    user = staff("ops", superuser=True)
    client.force_login(user)
    yield user, f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_the_websocket_refuses_anonymous_users(transactional_db: Any, _close_thread_connection: None) -> None:
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=SAME_ORIGIN)
    connected, _ = await communicator.connect()
    assert not connected


async def test_the_websocket_refuses_other_origins(session_cookie: tuple[User, bytes]) -> None:
    _, cookie = session_cookie
    communicator = WebsocketCommunicator(
        application,
        "/ws/dashboard/",
        headers=[(b"host", b"127.0.0.1"), (b"origin", b"https://evil.example"), (b"cookie", cookie)],
    )
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.parametrize(
    ("host", "origin", "accepted"),
    [
        (b"127.0.0.1:8000", b"http://127.0.0.1:8000", True),
        # The same host on another port is another site (another app on the machine).
        (b"127.0.0.1:8000", b"http://127.0.0.1:8001", False),
        (b"127.0.0.1:8000", b"http://127.0.0.1", False),
        (b"127.0.0.1", b"http://127.0.0.1:8001", False),
    ],
)
async def test_the_websocket_accepts_only_its_own_host_and_port(
    session_cookie: tuple[User, bytes], host: bytes, origin: bytes, accepted: bool
) -> None:
    _, cookie = session_cookie
    communicator = WebsocketCommunicator(
        application, "/ws/dashboard/", headers=[(b"host", host), (b"origin", origin), (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect()
    assert connected is accepted
    await communicator.disconnect()


async def test_the_websocket_pushes_only_what_changed(session_cookie: tuple[User, bytes], settings: Any) -> None:
    from channels.db import database_sync_to_async

    settings.BLAST_DASHBOARD_POLL_S = 0.2
    _, cookie = session_cookie

    def setup() -> Instance:
        tenant = Tenant.objects.create(slug="acme", name="Acme")
        gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
        return make_instances(tenant, gateway, Status.CONNECTED, 2, prefix="ws")[0]

    instance = await database_sync_to_async(setup)()
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[*SAME_ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from(timeout=20)
    assert first["type"] == "update"
    assert {"summary", "instances", "events", "chart"} <= set(first)
    assert {row["name"] for row in first["instances"]["rows"]} == {"ws0", "ws1"}

    await database_sync_to_async(
        lambda: Instance.objects.filter(pk=instance.pk).update(status=Status.BACKING_OFF, last_reason="timed_out")
    )()
    update = await communicator.receive_json_from(timeout=20)
    assert "chart" not in update and "events" not in update
    row = next(r for r in update["instances"]["rows"] if r["name"] == "ws0")
    assert (row["status"], row["reason"]) == ("backing_off", "timed_out")
    assert update["summary"]["by_status"]["backing_off"] == 1
    await communicator.disconnect()


async def next_update_with(communicator: WebsocketCommunicator, section: str) -> dict[str, Any]:
    """The first update that carries ``section``, within 20 s: the platform's
    summary may change on its own between two (its checks read the clock)."""
    async with asyncio.timeout(20):
        while True:
            update = await communicator.receive_json_from(timeout=20)
            if section in update:
                return dict(update)


async def test_the_websocket_pushes_a_new_qr_code_and_a_new_inbound_message(
    session_cookie: tuple[User, bytes], settings: Any
) -> None:
    from channels.db import database_sync_to_async

    settings.BLAST_DASHBOARD_POLL_S = 0.2
    _, cookie = session_cookie

    def setup() -> Instance:
        tenant = Tenant.objects.create(slug="acme", name="Acme")
        gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
        instance = make_instances(tenant, gateway, Status.CONNECTING, 1, prefix="qr")[0]
        awaiting_scan(instance, "2@first")
        return instance

    instance = await database_sync_to_async(setup)()
    communicator = WebsocketCommunicator(application, "/ws/dashboard/", headers=[*SAME_ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected
    first = await communicator.receive_json_from(timeout=20)
    assert [row["svg"] for row in first["pairing"]["rows"]] == [qr.svg_inline("2@first")]
    assert first["inbound"] == []

    # The gateway rotated the code: the pairing section is pushed, not the others it left alone.
    await database_sync_to_async(lambda: awaiting_scan(instance, "2@second"))()
    update = await next_update_with(communicator, "pairing")
    assert "inbound" not in update and "events" not in update and "instances" not in update
    assert [row["svg"] for row in update["pairing"]["rows"]] == [qr.svg_inline("2@second")]

    message = await database_sync_to_async(lambda: received(instance, "Yes please"))()
    update = await next_update_with(communicator, "inbound")
    assert "pairing" not in update and "events" not in update
    assert [(row["id"], row["text"]) for row in update["inbound"]] == [(message.pk, "Yes please")]
    await communicator.disconnect()


# -- in a real browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_web(platform: Platform) -> tuple[Process, str]:
    """daphne serving blast.asgi on a free port, against the test database."""
    return platform.start_web("daphne", BLAST_DASHBOARD_POLL_S="0.5")


class Database:
    """Runs ORM calls in a thread of its own: Playwright's sync API keeps an
    event loop running in the test's thread, where Django refuses them."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)

    def __call__(self, fn: Callable[[], Any]) -> Any:
        return self.pool.submit(fn).result(timeout=60)

    def close(self) -> None:
        from django.db import connection

        self(lambda: connection.close())
        self.pool.shutdown()


def test_a_real_handshake_is_refused_from_another_port_of_the_same_host(platform: Platform) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    client = Client()
    client.force_login(staff("ops", superuser=True))
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    _, base = start_web(platform)
    port = int(base.rsplit(":", 1)[1])
    uri = f"ws://127.0.0.1:{port}/ws/dashboard/"

    with connect(uri, origin=f"http://127.0.0.1:{port}", additional_headers=cookie, open_timeout=20) as socket:
        assert json.loads(socket.recv(timeout=20))["type"] == "update"
    with pytest.raises(InvalidStatus) as refused:
        connect(uri, origin=f"http://127.0.0.1:{port + 1}", additional_headers=cookie, open_timeout=20)
    assert refused.value.response.status_code == 403


def test_the_dashboard_updates_live_in_chromium(platform: Platform) -> None:
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or __import__("os").path.exists(CHROMIUM), (
        "Chromium is missing: run scripts/ensure-chromium.sh"
    )
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
    instances = make_instances(tenant, gateway, Status.CONNECTED, 4, prefix="sales-")
    staff("ops", superuser=True)
    web, base = start_web(platform)

    database = Database()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/dashboard/")
            # Not logged in: the admin's login page, then back.
            page.fill("#id_username", "ops")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/dashboard/")
            page.wait_for_selector("#conn.live", timeout=30_000)

            assert page.locator("#instances tr").count() == 4
            names = page.locator("#instances td.name").all_text_contents()
            assert sorted(names) == ["sales-0", "sales-1", "sales-2", "sales-3"]
            assert page.text_content("#score") == "100"
            assert page.locator('#counts li[data-status="connected"] .count').text_content() == "4"
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            page.evaluate("window.sameDocument = true")

            # The worker would write this: the breaker of sales-0 opened.
            target = instances[0]

            def breaker_opens() -> None:
                Instance.objects.filter(pk=target.pk).update(status=Status.CIRCUIT_OPEN, last_reason="unavailable")
                CircuitBreaker.objects.filter(instance=target).update(state=BreakerState.OPEN)
                ConnectionEvent.objects.create(instance=target, kind=EventKind.BREAKER_OPENED, reason="unavailable")

            database(breaker_opens)

            row = f'#instances tr[data-key="{target.key}"]'
            page.wait_for_selector(f'{row}[data-status="circuit_open"]', timeout=30_000)
            assert page.text_content(f"{row} td.breaker") == "open"
            assert page.text_content(f"{row} td.reason") == "unavailable"
            # Problems first: the row moved to the top.
            assert page.locator("#instances tr").first.get_attribute("data-key") == str(target.key)
            # 3 of 4 connected (75) less half an instance for the open breaker.
            page.wait_for_function("document.getElementById('score').textContent === '62'", timeout=30_000)
            assert page.locator('#counts li[data-status="circuit_open"] .count').text_content() == "1"
            page.wait_for_selector("#events li", timeout=30_000)
            assert "breaker_opened" in page.text_content("#events")

            assert page.evaluate("window.sameDocument") is True, "the page reloaded"
            assert navigations == []
        finally:
            browser.close()
            database.close()
    assert "Traceback" not in web.log(), web.log()[-4000:]


def test_the_dashboard_swaps_a_rotated_qr_code_and_lists_inbound_messages_in_chromium(platform: Platform) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert shutil.which(CHROMIUM) or __import__("os").path.exists(CHROMIUM), (
        "Chromium is missing: run scripts/ensure-chromium.sh"
    )
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
    waiting, other = make_instances(tenant, gateway, Status.CONNECTING, 2, prefix="pair-")
    awaiting_scan(waiting, "2@first,AAAA")
    awaiting_scan(other, "2@other,BBBB")
    staff("acme-ops", tenant)
    web, base = start_web(platform)

    def drawn_path(code: str) -> str:
        return qr.svg_inline(code).split(' d="', 1)[1].split('"', 1)[0]

    database = Database()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/dashboard/")
            page.fill("#id_username", "acme-ops")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/dashboard/")
            page.wait_for_selector("#conn.live", timeout=30_000)

            card = page.locator(f'#pairing li[data-key="{waiting.key}"]')
            expect(card.locator(".name")).to_have_text("acme/pair-0")
            expect(card.locator("svg path")).to_have_attribute("d", drawn_path("2@first,AAAA"))
            expect(card.locator(".expires")).to_have_text(re.compile(r"^expires "))
            expect(page.locator("#pairing li")).to_have_count(2)
            untouched = page.locator(f'#pairing li[data-key="{other.key}"] svg')
            untouched.evaluate("svg => { svg.dataset.first = 'yes'; }")
            page.evaluate("window.sameDocument = true")

            def rotate_and_receive() -> None:
                awaiting_scan(waiting, "2@second,CCCC")
                received(other, "Interested, tell me more " + "y" * 300, sender="+6281111111111")

            database(rotate_and_receive)
            expect(card.locator("svg path")).to_have_attribute("d", drawn_path("2@second,CCCC"), timeout=30_000)
            expect(card.locator("svg")).to_have_count(1)
            # The other card kept its drawing: only a changed code is redrawn.
            expect(page.locator(f'#pairing li[data-key="{other.key}"] svg[data-first="yes"]')).to_have_count(1)
            inbound = page.locator("#inbound li")
            expect(inbound).to_have_count(1, timeout=30_000)
            expect(inbound.locator(".sender")).to_have_text("from +6281111111111: ")
            expect(inbound.locator(".text")).to_have_text(("Interested, tell me more " + "y" * 300)[:160])

            # Scanned: the instance connects and its card goes.
            database(lambda: Instance.objects.filter(pk=waiting.pk).update(status=Status.CONNECTED, qr_code=""))
            expect(page.locator("#pairing li")).to_have_count(1, timeout=30_000)
            expect(page.locator(f'#pairing li[data-key="{other.key}"]')).to_have_count(1)

            assert page.evaluate("window.sameDocument") is True, "the page reloaded"
            assert errors == [], errors
        finally:
            browser.close()
            database.close()
    assert "Traceback" not in web.log(), web.log()[-4000:]

"""The instance change page's live pairing QR code: ``<id>/qr-state/`` answers
what the page shows now (the code drawn, its expiry, whether a new one may
still come), under the admin's tenant scoping; and in a real headless
Chromium against a real daphne the page swaps the drawing when the gateway's
code changes, and says "Paired." once it is scanned, without a reload.

The cast: tenants Acme and Rival, each with an instance awaiting the scan of
a QR code; Alice is staff tied to Acme, Bob to Rival, Root is a superuser,
Carol is a user who is not staff.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from instances import qr
from instances.models import Gateway, Instance, Status, Tenant, TenantMembership
from tests.fixtures.platform import Platform

PASSWORD = "correct horse battery staple"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
FIRST_CODE = "2@first-code,AbCdEfGh,IjKlMnOp,QrStUvWx"
SECOND_CODE = "2@second-code,ZyXwVuTs,RqPoNmLk,JiHgFeDc"


@dataclass
class QrCast:
    acme: Tenant
    rival: Tenant
    mine: Instance
    theirs: Instance
    alice: User
    bob: User
    root: User
    carol: User

    def login(self, user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client


def _staff(username: str, tenant: Tenant) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_instance", "change_instance"]))
    TenantMembership.objects.create(user=user, tenant=tenant)
    return user


def awaiting_scan(instance: Instance, code: str, expires_in_s: float = 20) -> None:
    """As the instance's worker writes a ``qr`` frame from the gateway."""
    Instance.objects.filter(pk=instance.pk).update(
        status=Status.AWAITING_QR,
        qr_code=code,
        qr_expires_at=timezone.now() + dt.timedelta(seconds=expires_in_s),
    )


def paired(instance: Instance) -> None:
    """As the worker writes the gateway's ``ready`` after the scan."""
    Instance.objects.filter(pk=instance.pk).update(
        status=Status.CONNECTED, qr_code="", qr_expires_at=None, paired=True, account="+6281234567890"
    )


def cast_of() -> QrCast:
    acme = Tenant.objects.create(slug="acme", name="Acme")
    rival = Tenant.objects.create(slug="rival", name="Rival Holdings")
    gateway = Gateway.objects.create(name="gw-main", url="ws://127.0.0.1:9")
    mine = Instance.objects.create(tenant=acme, name="acme-sales", gateway=gateway)
    theirs = Instance.objects.create(tenant=rival, name="rival-sales", gateway=gateway)
    awaiting_scan(mine, FIRST_CODE)
    awaiting_scan(theirs, "2@rival-code")
    return QrCast(
        acme=acme,
        rival=rival,
        mine=mine,
        theirs=theirs,
        alice=_staff("alice", acme),
        bob=_staff("bob", rival),
        root=User.objects.create_superuser("root", password=PASSWORD),
        carol=User.objects.create_user("carol", password=PASSWORD),
    )


@pytest.fixture
def cast(db: Any) -> QrCast:
    return cast_of()


def state_url(instance: Instance) -> str:
    return str(reverse("admin:instances_instance_qr_state", args=[instance.pk]))


def change_url(instance: Instance) -> str:
    return str(reverse("admin:instances_instance_change", args=[instance.pk]))


def state_of(client: Client, instance: Instance) -> dict[str, Any]:
    response = client.get(state_url(instance))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return dict(response.json())


# -- the JSON view ----------------------------------------------------------------------


def test_it_answers_the_current_code_drawn_with_its_expiry(cast: QrCast) -> None:
    state = state_of(cast.login(cast.alice), cast.mine)
    assert state["status"] == "awaiting_qr" and state["live"] is True
    assert state["svg"] == qr.svg_inline(FIRST_CODE)
    assert state["svg"].startswith("<svg") and 'class="segno"' in state["svg"]
    expires = Instance.objects.get(pk=cast.mine.pk).qr_expires_at
    assert expires is not None and dt.datetime.fromisoformat(state["expires_at"]) == expires
    assert state["note"].startswith("Expires ")
    # The code is drawn, never written out.
    assert FIRST_CODE not in str(state)


def test_it_answers_the_new_code_once_the_gateway_sends_one(cast: QrCast) -> None:
    client = cast.login(cast.alice)
    first = state_of(client, cast.mine)
    awaiting_scan(cast.mine, SECOND_CODE, expires_in_s=40)
    second = state_of(client, cast.mine)
    assert second["svg"] == qr.svg_inline(SECOND_CODE) != first["svg"]
    assert dt.datetime.fromisoformat(second["expires_at"]) > dt.datetime.fromisoformat(first["expires_at"])
    assert second["live"] is True


def test_it_says_paired_and_stops_the_page_asking_once_scanned(cast: QrCast) -> None:
    paired(cast.mine)
    state = state_of(cast.login(cast.alice), cast.mine)
    assert state == {"status": "connected", "svg": None, "expires_at": None, "note": "Paired.", "live": False}


@pytest.mark.parametrize(
    ("status", "live"),
    [(Status.CONNECTING, True), (Status.BACKING_OFF, False), (Status.STOPPED, False), (Status.LOGGED_OUT, False)],
)
def test_without_a_code_to_scan_it_draws_nothing_and_says_why(cast: QrCast, status: Status, live: bool) -> None:
    # A stale code left on the row is not a code to scan.
    Instance.objects.filter(pk=cast.mine.pk).update(status=status)
    state = state_of(cast.login(cast.alice), cast.mine)
    assert (state["status"], state["svg"], state["expires_at"], state["live"]) == (status.value, None, None, live)
    assert status.label.lower() in state["note"].lower()


def test_an_operator_sees_any_tenants_code(cast: QrCast) -> None:
    assert state_of(cast.login(cast.root), cast.theirs)["svg"] == qr.svg_inline("2@rival-code")


def test_another_tenants_staff_get_not_found(cast: QrCast) -> None:
    assert cast.login(cast.bob).get(state_url(cast.mine)).status_code == 404
    assert cast.login(cast.alice).get(state_url(cast.theirs)).status_code == 404
    assert cast.login(cast.alice).get(reverse("admin:instances_instance_qr_state", args=[999_999])).status_code == 404


def test_staff_tied_to_no_tenant_get_not_found(cast: QrCast) -> None:
    nemo = User.objects.create_user("nemo", is_staff=True)
    nemo.user_permissions.set(Permission.objects.filter(codename="view_instance"))
    assert cast.login(nemo).get(state_url(cast.mine)).status_code == 404


def test_staff_who_may_not_view_instances_are_refused(cast: QrCast) -> None:
    cast.alice.user_permissions.clear()
    assert cast.login(User.objects.get(pk=cast.alice.pk)).get(state_url(cast.mine)).status_code == 403


def test_users_who_are_not_staff_and_anonymous_visitors_are_sent_to_the_login(cast: QrCast) -> None:
    for client in (cast.login(cast.carol), Client()):
        response = client.get(state_url(cast.mine))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_it_only_reads(cast: QrCast) -> None:
    assert cast.login(cast.alice).post(state_url(cast.mine)).status_code == 405


def test_no_cache_keeps_the_answer(cast: QrCast) -> None:
    response = cast.login(cast.alice).get(state_url(cast.mine))
    assert "no-store" in response["Cache-Control"]


# -- the change page --------------------------------------------------------------------


def test_the_change_page_loads_the_script_from_this_host_and_points_it_at_the_state(cast: QrCast) -> None:
    page = cast.login(cast.alice).get(change_url(cast.mine)).content.decode()
    assert '<script src="/static/instances/admin/qr.js" defer>' in page
    assert f'data-state-url="{state_url(cast.mine)}"' in page
    assert 'data-live="1"' in page
    paired(cast.mine)
    page = cast.login(cast.alice).get(change_url(cast.mine)).content.decode()
    assert 'data-live=""' in page and "Paired." in page


# -- in a real browser ------------------------------------------------------------------


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


QR = ".field-qr_image .blast-qr"


def drawn_path(code: str) -> str:
    """The path segno draws for ``code``: what the page's drawing must hold."""
    return qr.svg_inline(code).split(' d="', 1)[1].split('"', 1)[0]


def test_the_change_page_swaps_the_code_and_says_paired_in_chromium(platform: Platform) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert os.path.exists(CHROMIUM), "Chromium is missing: run scripts/ensure-chromium.sh"
    cast = cast_of()
    # DEBUG: WhiteNoise serves the app's script from the app, as collectstatic leaves it for `make run`.
    web, base = platform.start_web("daphne", DEBUG="1")
    page_url = f"{base}{change_url(cast.mine)}"

    database = Database()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            # Script errors, refusals by the page's CSP, and failed requests by
            # their URL (the console's "Failed to load resource" names none, and
            # is also the browser's own /favicon.ico, which the admin has not).
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" and "load resource" not in m.text else None,
            )
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(page_url)
            page.fill("#id_username", "alice")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(page_url)
            drawing = page.locator(f"{QR} svg path")
            note = page.locator(f"{QR} .blast-qr-note")
            expect(drawing).to_have_attribute("d", drawn_path(FIRST_CODE))
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            page.evaluate("window.sameDocument = true")

            # The gateway rotates the code: the worker writes the new one.
            database(lambda: awaiting_scan(cast.mine, SECOND_CODE, expires_in_s=40))
            expect(drawing).to_have_attribute("d", drawn_path(SECOND_CODE), timeout=30_000)
            expect(page.locator(f"{QR} svg")).to_have_count(1)
            expect(note).to_have_text(re.compile(r"^Expires "))

            # The owner scans it: the instance is connected.
            database(lambda: paired(cast.mine))
            expect(note).to_have_text("Paired.", timeout=30_000)
            expect(page.locator(f"{QR} svg")).to_have_count(0)
            expect(page.locator(QR)).to_have_attribute("data-live", "")

            assert page.evaluate("window.sameDocument") is True, "the page reloaded"
            assert navigations == []
            assert errors == [], errors
        finally:
            browser.close()
            database.close()
    assert "Traceback" not in web.log(), web.log()[-4000:]

"""The admin as an operator reads it: pages titled Blast, one label per
thing shown, list filters that say what they filter, and an instance list
whose every column fits a 1,400 px browser window without scrolling
sideways (checked in a real headless Chromium against a real daphne)."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.models import ApiKey
from campaigns.models import InboundMessage
from instances.models import (
    BreakerState,
    CircuitBreaker,
    ConnectionEvent,
    Gateway,
    Instance,
    Status,
    Tenant,
    TenantMembership,
)
from monitoring.models import Alert, HealthSnapshot
from tests.fixtures.platform import Platform

PASSWORD = "correct horse battery staple"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
WINDOW = {"width": 1400, "height": 900}
SCREENSHOT = Path("/tmp/admin-list.png")

LONG_TENANT = "Nusantara Digital Commerce and Customer Care Holdings International"
LONG_GATEWAY = "gateway-jakarta-southeast-asia-primary-datacentre-02"
# The widest a row gets: the longest statuses, reasons and breaker states.
WIDEST_ROWS = [
    (Status.CIRCUIT_OPEN, "temporarily_banned", BreakerState.OPEN),
    (Status.AWAITING_QR, "multidevice_mismatch", BreakerState.HALF_OPEN),
    (Status.BACKING_OFF, "connection_closed", BreakerState.HALF_OPEN),
    (Status.DISCONNECTED, "restart_required", BreakerState.CLOSED),
    (Status.LOGGED_OUT, "logged_out", BreakerState.CLOSED),
    (Status.CONNECTED, "", BreakerState.CLOSED),
]


def text_of(fragment: str) -> str:
    """What a reader sees of an HTML fragment: its text, spaces collapsed."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def filter_titles(page: str) -> list[str]:
    """The titles of a change list's filters ("By status", ...)."""
    found = re.search(r'<nav id="changelist-filter".*?</nav>', page, re.S)
    return [text_of(title) for title in re.findall(r"<summary>(.*?)</summary>", found.group(0), re.S)] if found else []


def changelist(model: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.fixture
def root(db: Any) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password=PASSWORD))
    return client


# -- the site's name --------------------------------------------------------------------


@pytest.mark.django_db
def test_the_login_page_says_blast(client: Client) -> None:
    page = client.get("/admin/login/").content.decode()
    assert re.search(r"<title>\s*Log in \| Blast admin\s*</title>", page)
    assert text_of(re.search(r'<div id="site-name">(.*?)</div>', page, re.S).group(1)) == "Blast administration"
    assert "Django" not in text_of(page)


def test_the_admin_index_says_blast(root: Client) -> None:
    page = root.get(reverse("admin:index")).content.decode()
    assert re.search(r"<title>\s*Blast operations \| Blast admin\s*</title>", page)
    assert "Django" not in text_of(page)


# -- the instance's page ----------------------------------------------------------------


def test_the_instance_page_labels_the_qr_code_once(root: Client) -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
    instance = Instance.objects.create(tenant=tenant, name="sales", gateway=gateway)
    expires = timezone.now() + dt.timedelta(seconds=40)
    Instance.objects.filter(pk=instance.pk).update(
        status=Status.AWAITING_QR, qr_code="2@pair-me", qr_expires_at=expires
    )

    page = root.get(reverse("admin:instances_instance_change", args=[instance.pk])).content.decode()
    labels = [text_of(label) for label in re.findall(r"<label[^>]*>(.*?)</label>", page, re.S)]
    assert [label for label in labels if "qr" in label.lower()] == ["QR code:"]
    # The code drawn, and when it expires under it; its text is not on the page.
    field = page[page.index('class="form-row field-qr_image"') :]
    field = field[: field.index('<div class="form-row')]
    assert 'class="segno"' in field and "Expires" in text_of(field)
    assert "2@pair-me" not in page


# -- list filters -----------------------------------------------------------------------


def test_the_instance_list_filters_by_breaker_state_so_titled(root: Client) -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    gateway = Gateway.objects.create(name="gw", url="ws://127.0.0.1:9")
    tripped = Instance.objects.create(tenant=tenant, name="tripped", gateway=gateway)
    Instance.objects.create(tenant=tenant, name="healthy", gateway=gateway)
    CircuitBreaker.objects.filter(instance=tripped).update(state=BreakerState.OPEN)

    titles = filter_titles(root.get(changelist(Instance)).content.decode())
    assert "By breaker state" in titles
    assert "By state" not in titles
    # The instance's own status and desired state keep their titles.
    assert {"By status", "By desired state"} <= set(titles)
    # And it filters by the breaker still.
    listed = root.get(changelist(Instance) + "?breaker__state__exact=open").content.decode()
    results = listed[listed.index('id="result_list"') : listed.index('id="changelist-filter"')]
    assert "tripped" in results and "healthy" not in results


def test_filters_on_breakers_events_alerts_and_messages_say_what_they_filter(root: Client) -> None:
    assert filter_titles(root.get(changelist(CircuitBreaker)).content.decode()) == ["By breaker state"]
    assert filter_titles(root.get(changelist(ConnectionEvent)).content.decode())[0] == "By event"
    assert "By alert kind" in filter_titles(root.get(changelist(Alert)).content.decode())
    assert filter_titles(root.get(changelist(InboundMessage)).content.decode())[0] == "By action taken"
    assert filter_titles(root.get(changelist(ApiKey)).content.decode())[-1] == "By key status"


def test_no_list_filter_is_titled_by_a_bare_field_name(root: Client) -> None:
    """ "By state", "By kind" or "By revoked at" do not say what is filtered."""
    vague = {"By state", "By kind", "By revoked at"}
    for model in admin.site._registry:
        page = root.get(changelist(model))
        assert page.status_code == 200, model
        assert not vague & set(filter_titles(page.content.decode())), (
            model._meta.label,
            filter_titles(page.content.decode()),
        )


def test_a_retitled_filter_of_values_keeps_its_title_and_its_scope(db: Any) -> None:
    """The health snapshots' status filter offers the values of the rows the
    user may see (the scoped filter), under its own title."""
    acme = Tenant.objects.create(slug="acme", name="Acme")
    rival = Tenant.objects.create(slug="rival", name="Rival")
    HealthSnapshot.objects.create(tenant=acme, score=100, status="pass")
    HealthSnapshot.objects.create(tenant=rival, score=10, status="fail")
    alice = User.objects.create_user("alice", is_staff=True)
    alice.user_permissions.set(Permission.objects.filter(codename="view_healthsnapshot"))
    TenantMembership.objects.create(user=alice, tenant=acme)
    client = Client()
    client.force_login(alice)

    page = client.get(changelist(HealthSnapshot)).content.decode()
    assert filter_titles(page) == ["By health status"]
    sidebar = re.search(r'<nav id="changelist-filter".*?</nav>', page, re.S).group(0)
    assert "?status=pass" in sidebar and "?status=fail" not in sidebar


def test_api_keys_filter_by_active_or_revoked(root: Client) -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    ApiKey.objects.create_key(tenant, "in-use")
    revoked, _ = ApiKey.objects.create_key(tenant, "retired")
    revoked.revoke()

    page = root.get(changelist(ApiKey)).content.decode()
    sidebar = re.search(r'<nav id="changelist-filter".*?</nav>', page, re.S).group(0)
    assert {"Active", "Revoked"} <= set(text_of(sidebar).split())
    listed = root.get(changelist(ApiKey) + "?status=revoked").content.decode()
    assert "retired" in listed and "in-use" not in listed
    listed = root.get(changelist(ApiKey) + "?status=active").content.decode()
    assert "in-use" in listed and "retired" not in listed


# -- the instance list ------------------------------------------------------------------


def seed_long_names() -> Instance:
    """Instances whose names, tenant and gateway are as long as an operator
    may make them, in every shape a row takes; the first has its breaker
    open. Returns that one."""
    tenant = Tenant.objects.create(slug="nusantara", name=LONG_TENANT)
    gateway = Gateway.objects.create(name=LONG_GATEWAY, url="ws://127.0.0.1:9")
    now = timezone.now()
    instances = []
    for n, (status, reason, breaker) in enumerate(WIDEST_ROWS):
        instance = Instance.objects.create(
            tenant=tenant,
            gateway=gateway,
            name=f"customer-support-jakarta-regional-whatsapp-business-line-{n:04d}-{'x' * 30}",
            desired_state="running",
            status=status,
            last_reason=reason,
            last_message="the gateway closed the session: " + "x" * 200,
            retry_count=123456,
            next_retry_at=now + dt.timedelta(minutes=50),
            status_changed_at=now - dt.timedelta(days=330),
        )
        CircuitBreaker.objects.filter(instance=instance).update(state=breaker, opened_at=now, trip_count=3)
        instances.append(instance)
    return instances[0]


def test_the_list_cuts_long_names_short_and_names_them_whole_in_the_tooltip(root: Client) -> None:
    tripped = seed_long_names()
    page = root.get(changelist(Instance)).content.decode()
    row = re.search(rf'<tr>(?:(?!</tr>).)*title="{re.escape(tripped.name)}"(?:(?!</tr>).)*</tr>', page, re.S)
    assert row is not None
    cells = row.group(0)
    assert f'title="{LONG_TENANT}"' in cells  # the tenant, under the name, for operators
    assert "temporarily_banned" in text_of(cells)  # the last reason, under the status
    assert "in 49 minutes" in text_of(cells) or "in 50 minutes" in text_of(cells)  # the next retry
    assert "10 months ago" in text_of(cells)


def test_tenant_staff_are_not_told_their_tenant_on_every_row(db: Any) -> None:
    seed_long_names()
    alice = User.objects.create_user("alice", is_staff=True)
    alice.user_permissions.set(Permission.objects.filter(codename="view_instance"))
    TenantMembership.objects.create(user=alice, tenant=Tenant.objects.get(slug="nusantara"))
    client = Client()
    client.force_login(alice)
    page = client.get(changelist(Instance)).content.decode()
    results = page[page.index('id="result_list"') :]
    assert "customer-support-jakarta" in results
    assert LONG_TENANT not in results


def _fits(page: Any, tripped: Instance) -> None:
    """The open breaker's cell and the last column inside the window, no
    sideways scroll; the long name cut short, whole in its tooltip."""
    row = page.locator("#result_list tbody tr", has=page.get_by_text(tripped.name, exact=True))
    assert row.count() == 1
    breaker = row.locator("td.field-breaker_badge")
    assert breaker.inner_text().strip() == "open"
    box = breaker.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WINDOW["width"], box
    last = page.locator("#result_list thead th").last.bounding_box()
    assert last is not None and last["x"] + last["width"] <= WINDOW["width"], last
    document = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert document[0] <= document[1], f"the page scrolls sideways: {document}"
    # Nor does the list scroll inside its own box (the admin lets it, rather than the page).
    results = page.evaluate(
        "(() => { const r = document.querySelector('#changelist-form .results');"
        " return [r.scrollWidth, r.clientWidth]; })()"
    )
    assert results[0] <= results[1], f"the list scrolls sideways: {results}"
    name = row.get_by_text(tripped.name, exact=True)
    assert name.get_attribute("title") == tripped.name
    assert name.evaluate("e => e.scrollWidth > e.clientWidth"), "the long name is not cut short"


def test_every_instance_column_fits_a_1400_px_window(platform: Platform) -> None:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Chromium is missing: run scripts/ensure-chromium.sh"
    tripped = seed_long_names()
    User.objects.create_superuser("ops", password=PASSWORD)
    # DEBUG: WhiteNoise serves the admin's stylesheets from the apps, as
    # collectstatic leaves them for `make run`: the layout is the real one.
    _, base = platform.start_web("daphne", DEBUG="1")
    listing = f"{base}{changelist(Instance)}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport=WINDOW)
            page.goto(listing)
            page.fill("#id_username", "ops")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(listing)
            # Laid out by the admin's stylesheets (and the navigation sidebar open, as it starts).
            page.wait_for_selector("#changelist-filter", state="visible")
            page.wait_for_selector("#nav-sidebar", state="visible")
            assert page.evaluate("getComputedStyle(document.querySelector('#changelist-filter')).flexBasis") == (
                "240px"
            )
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            _fits(page, tripped)

            # Sorted by two columns: their headers grow by the sort markers.
            page.goto(f"{listing}?o=3.-6")
            page.wait_for_selector("#result_list thead th.sorted")
            _fits(page, tripped)
        finally:
            browser.close()

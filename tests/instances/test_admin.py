"""The admin: tenant staff see and act on their tenant only; actions are audited and counted.

The cast: tenants Acme and Rival, each with an instance; Alice is staff tied
to Acme (with the instance permissions an operator would grant), Bob is tied
to Rival, Root is a superuser.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from api.models import ApiKey
from instances.models import (
    BreakerState,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Gateway,
    Instance,
    PairState,
    Status,
    Tenant,
    TenantMembership,
    WorkerHeartbeat,
)

pytestmark = pytest.mark.django_db

STAFF_PERMISSIONS = [
    "view_tenant",
    "change_tenant",
    "view_gateway",
    "view_instance",
    "add_instance",
    "change_instance",
    "delete_instance",
    "view_circuitbreaker",
    "view_connectionevent",
    "view_workerheartbeat",
    "view_tenantmembership",
    "view_apikey",
    "add_apikey",
    "change_apikey",
]


@dataclass
class AdminCast:
    acme: Tenant
    rival: Tenant
    gateway: Gateway
    disabled_gateway: Gateway
    mine: Instance
    theirs: Instance
    alice: User
    root: User

    def login(self, user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client


def _staff(username: str, tenant: Tenant) -> User:
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
    TenantMembership.objects.create(user=user, tenant=tenant)
    return user


@pytest.fixture(autouse=True)
def redis_prefix(settings: Any) -> Iterator[None]:
    prefix = f"blast-test-admin-{uuid.uuid4().hex[:8]}"
    settings.BLAST_REDIS_PREFIX = prefix
    url = settings.REDIS_URL
    yield
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def cast(db: Any) -> AdminCast:
    acme = Tenant.objects.create(slug="acme", name="Acme")
    rival = Tenant.objects.create(slug="rival", name="Rival Holdings")
    gateway = Gateway.objects.create(name="gw-main", url="ws://127.0.0.1:9")
    disabled = Gateway.objects.create(name="gw-retired", url="ws://127.0.0.1:10", enabled=False)
    mine = Instance.objects.create(tenant=acme, name="acme-sales", gateway=gateway)
    theirs = Instance.objects.create(tenant=rival, name="rival-sales", gateway=gateway)
    ConnectionEvent.objects.create(instance=mine, kind=EventKind.READY, message="acme-ready")
    ConnectionEvent.objects.create(instance=theirs, kind=EventKind.READY, message="rival-ready")
    _staff("bob", rival)
    return AdminCast(
        acme=acme,
        rival=rival,
        gateway=gateway,
        disabled_gateway=disabled,
        mine=mine,
        theirs=theirs,
        alice=_staff("alice", acme),
        root=User.objects.create_superuser("root"),
    )


def _changelist(model: str) -> str:
    return reverse(f"admin:{model}_changelist")


def _change(model: str, pk: int) -> str:
    return reverse(f"admin:{model}_change", args=[pk])


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _act(client: Client, action: str, *instances: Instance) -> Any:
    return client.post(
        _changelist("instances_instance"),
        {"action": action, "_selected_action": [i.pk for i in instances], "index": 0},
        follow=True,
    )


def _select_choices(html: str, name: str) -> set[str]:
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S)
    assert select, f"no select {name}"
    return set(re.findall(r'<option value="(\d+)"', select.group(0)))


# --- lists ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "own", "other"),
    [
        ("instances_instance", "acme-sales", "rival-sales"),
        ("instances_connectionevent", "acme-ready", "rival-ready"),
        ("instances_circuitbreaker", "acme-sales", "rival-sales"),
        ("instances_tenant", "Acme", "Rival Holdings"),
    ],
)
def test_a_tenant_staff_user_lists_only_their_tenants_objects(
    cast: AdminCast, model: str, own: str, other: str
) -> None:
    html = cast.login(cast.alice).get(_changelist(model)).content.decode()
    assert own in html
    assert other not in html


def test_the_tenant_filter_does_not_list_other_tenants(cast: AdminCast) -> None:
    html = cast.login(cast.alice).get(_changelist("instances_instance")).content.decode()
    assert "Rival Holdings" not in html
    assert "rival" not in html


def test_a_filter_in_the_url_cannot_reach_another_tenant(cast: AdminCast) -> None:
    url = _changelist("instances_instance") + f"?tenant__id__exact={cast.rival.pk}"
    html = cast.login(cast.alice).get(url, follow=True).content.decode()
    assert "rival-sales" not in html


def test_a_superuser_lists_everything(cast: AdminCast) -> None:
    html = cast.login(cast.root).get(_changelist("instances_instance")).content.decode()
    assert "acme-sales" in html and "rival-sales" in html
    assert "Rival Holdings" in html  # the tenant filter


def test_operators_see_each_workers_sessions_and_capacity(cast: AdminCast) -> None:
    WorkerHeartbeat.objects.create(worker_id="host-a-1-aa", host="a", pid=1, sessions_held=3000, capacity=20_000)
    html = cast.login(cast.root).get(_changelist("instances_workerheartbeat")).content.decode()
    assert "host-a-1-aa" in html and "Capacity" in html and "20000" in html
    assert "15 %" in html  # of its capacity in use


def test_gateways_are_named_in_filters_never_located(cast: AdminCast) -> None:
    Instance.objects.create(tenant=cast.acme, name="acme-legacy", gateway=cast.disabled_gateway)
    backup = Gateway.objects.create(name="gw-backup", url="ws://127.0.0.1:11")
    Instance.objects.create(tenant=cast.acme, name="acme-support", gateway=backup)
    html = cast.login(cast.alice).get(_changelist("instances_instance")).content.decode()
    sidebar = html[html.index('id="changelist-filter"') :]
    assert "gw-main" in sidebar and "gw-backup" in sidebar
    assert "gw-retired" not in sidebar  # disabled: not offered to tenant staff
    assert "ws://" not in html
    operator = cast.login(cast.root).get(_changelist("instances_instance")).content.decode()
    assert "gw-retired" in operator[operator.index('id="changelist-filter"') :]


def test_staff_tied_to_no_tenant_and_not_operators_see_no_instance(cast: AdminCast) -> None:
    user = User.objects.create_user("drifter", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
    client = cast.login(user)
    assert client.get(_changelist("instances_instance")).status_code == 403
    assert client.get(_change("instances_instance", cast.mine.pk)).status_code in (302, 403)
    response = _act(client, "connect", cast.mine)
    cast.mine.refresh_from_db()
    assert cast.mine.desired_state == DesiredState.STOPPED
    assert "acme-sales" not in response.content.decode()


def test_platform_internals_are_hidden_from_tenant_staff(cast: AdminCast) -> None:
    WorkerHeartbeat.objects.create(worker_id="w-1", host="h", pid=1)
    client = cast.login(cast.alice)
    assert client.get(_changelist("instances_workerheartbeat")).status_code == 403
    assert client.get(_changelist("instances_tenantmembership")).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert "Worker heartbeats" not in index
    assert "Tenant memberships" not in index


# --- change pages ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["change", "history", "delete"])
def test_another_tenants_instance_page_is_not_found(cast: AdminCast, suffix: str) -> None:
    url = reverse(f"admin:instances_instance_{suffix}", args=[cast.theirs.pk])
    response = cast.login(cast.alice).get(url, follow=True)
    html = response.content.decode()
    assert "rival-sales" not in html
    assert response.status_code in {200, 404}
    if response.status_code == 200:  # Django redirects to the index with a message
        assert any("doesn\N{RIGHT SINGLE QUOTATION MARK}t exist" in m for m in _messages(response))


def test_another_tenants_instance_cannot_be_changed_or_deleted_by_post(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    client.post(_change("instances_instance", cast.theirs.pk), {"name": "hijacked"})
    client.post(reverse("admin:instances_instance_delete", args=[cast.theirs.pk]), {"post": "yes"})
    cast.theirs.refresh_from_db()
    assert cast.theirs.name == "rival-sales"


def test_another_tenants_event_page_is_not_found(cast: AdminCast) -> None:
    event = ConnectionEvent.objects.get(instance=cast.theirs)
    response = cast.login(cast.alice).get(_change("instances_connectionevent", event.pk), follow=True)
    assert "rival-ready" not in response.content.decode()


def test_the_instance_page_shows_breaker_window_and_recent_events(cast: AdminCast) -> None:
    html = cast.login(cast.alice).get(_change("instances_instance", cast.mine.pk)).content.decode()
    assert "0 of 10 failures in the last 300 s" in html
    assert "acme-ready" in html
    assert "Ready" in html


def test_the_qr_code_is_drawn_on_the_page_of_an_instance_awaiting_pairing(cast: AdminCast) -> None:
    url = _change("instances_instance", cast.mine.pk)
    client = cast.login(cast.alice)
    assert 'class="segno"' not in client.get(url).content.decode()
    Instance.objects.filter(pk=cast.mine.pk).update(status=Status.AWAITING_QR, qr_code="2@pair-me")
    html = client.get(url).content.decode()
    assert 'class="segno"' in html
    assert "<path" in html


def test_the_token_never_appears(cast: AdminCast) -> None:
    client = cast.login(cast.root)
    token = cast.mine.token
    for url in [
        _changelist("instances_instance"),
        _change("instances_instance", cast.mine.pk),
        reverse("admin:instances_instance_add"),
    ]:
        html = client.get(url).content.decode()
        assert token not in html
        assert cast.mine.token_encrypted not in html


def test_saving_the_form_changes_the_name_and_nothing_a_worker_wrote(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    url = _change("instances_instance", cast.mine.pk)
    client.get(url)
    # A worker connects the instance while the page is open.
    Instance.objects.filter(pk=cast.mine.pk).update(status=Status.CONNECTED, desired_state=DesiredState.RUNNING)
    response = client.post(url, {"name": "acme-sales-eu", **_policy(cast.mine)})
    assert response.status_code == 302, response.content.decode()[-2000:]
    cast.mine.refresh_from_db()
    assert cast.mine.name == "acme-sales-eu"
    assert cast.mine.status == Status.CONNECTED
    assert cast.mine.desired_state == DesiredState.RUNNING


def _policy(instance: Instance, **changes: Any) -> dict[str, Any]:
    """The sending policy fields as the change form posts them."""
    fields: dict[str, Any] = {
        "send_delay_min_s": instance.send_delay_min_s,
        "send_delay_max_s": instance.send_delay_max_s,
        "hourly_cap": instance.hourly_cap,
        "daily_cap": instance.daily_cap,
        "send_timezone": instance.send_timezone,
        "send_days": list(instance.send_days),
        **({"warmup": "on"} if instance.warmup else {}),
    }
    return {**fields, **changes}


def test_the_sending_policy_is_edited_in_the_form_and_checked(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    url = _change("instances_instance", cast.mine.pk)
    page = client.get(url).content.decode()
    assert "Sending policy" in page and "In force now" in page
    refused = client.post(url, {"name": cast.mine.name, **_policy(cast.mine, send_delay_min_s=30, send_delay_max_s=10)})
    assert refused.status_code == 200
    assert "is below the minimum" in refused.content.decode()
    saved = client.post(
        url, {"name": cast.mine.name, **_policy(cast.mine, hourly_cap=12, daily_cap=90, send_delay_max_s=5)}
    )
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    cast.mine.refresh_from_db()
    assert (cast.mine.hourly_cap, cast.mine.daily_cap, cast.mine.send_delay_max_s) == (12, 90, 5)


def test_sending_hours_and_days_are_edited_in_the_form_and_checked(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    url = _change("instances_instance", cast.mine.pk)
    assert 'type="checkbox" name="send_days" value="sat"' in client.get(url).content.decode()
    hours = {"send_hours_start": "09:00", "send_hours_end": "18:00", "send_timezone": "America/Sao_Paulo"}
    no_days = {**_policy(cast.mine), **hours, "send_days": []}
    refused = client.post(url, {"name": cast.mine.name, **no_days})
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    saved = client.post(url, {"name": cast.mine.name, **_policy(cast.mine), **hours, "send_days": ["mon", "fri"]})
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    cast.mine.refresh_from_db()
    assert (cast.mine.send_hours_start, cast.mine.send_days) == (dt.time(9), ["mon", "fri"])


# --- dropdowns ------------------------------------------------------------------


def test_the_add_instance_form_offers_only_the_users_tenant_and_enabled_gateways(cast: AdminCast) -> None:
    html = cast.login(cast.alice).get(reverse("admin:instances_instance_add")).content.decode()
    assert _select_choices(html, "tenant") == {str(cast.acme.pk)}
    assert _select_choices(html, "gateway") == {str(cast.gateway.pk)}


def test_an_instance_added_by_tenant_staff_lands_in_their_tenant_whatever_was_posted(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    client.post(
        reverse("admin:instances_instance_add"), {"tenant": cast.rival.pk, "name": "sneaky", "gateway": cast.gateway.pk}
    )
    assert not Instance.objects.filter(tenant=cast.rival, name="sneaky").exists()
    client.post(
        reverse("admin:instances_instance_add"), {"tenant": cast.acme.pk, "name": "new-one", "gateway": cast.gateway.pk}
    )
    assert Instance.objects.get(name="new-one").tenant == cast.acme


def test_the_add_api_key_form_offers_only_the_users_tenant(cast: AdminCast) -> None:
    html = cast.login(cast.alice).get(reverse("admin:api_apikey_add")).content.decode()
    assert _select_choices(html, "tenant") == {str(cast.acme.pk)}


def test_the_superuser_sees_every_tenant_in_the_dropdown(cast: AdminCast) -> None:
    html = cast.login(cast.root).get(reverse("admin:instances_instance_add")).content.decode()
    assert _select_choices(html, "tenant") == {str(cast.acme.pk), str(cast.rival.pk)}


# --- actions --------------------------------------------------------------------


def test_connect_acts_only_on_the_users_tenant_and_is_audited(cast: AdminCast) -> None:
    response = _act(cast.login(cast.alice), "connect", cast.mine, cast.theirs)
    assert "Connect requested for 1 instance." in _messages(response)
    cast.mine.refresh_from_db()
    cast.theirs.refresh_from_db()
    assert cast.mine.desired_state == DesiredState.RUNNING
    assert cast.theirs.desired_state == DesiredState.STOPPED
    assert ConnectionEvent.objects.get(instance=cast.mine, kind=EventKind.CONNECT).actor == "user:alice"
    assert not ConnectionEvent.objects.filter(instance=cast.theirs, kind=EventKind.CONNECT).exists()


def test_an_action_on_only_another_tenants_instance_does_nothing(cast: AdminCast) -> None:
    response = _act(cast.login(cast.alice), "connect", cast.theirs)
    assert "rival-sales" not in response.content.decode()
    cast.theirs.refresh_from_db()
    assert cast.theirs.desired_state == DesiredState.STOPPED


def test_disconnect_reports_how_many_it_affected(cast: AdminCast) -> None:
    other_mine = Instance.objects.create(tenant=cast.acme, name="acme-support", gateway=cast.gateway)
    response = _act(cast.login(cast.alice), "disconnect", cast.mine, other_mine)
    assert "Disconnect requested for 2 instances." in _messages(response)
    assert ConnectionEvent.objects.filter(kind=EventKind.DISCONNECT_REQUESTED, actor="user:alice").count() == 2


def test_force_retry_skips_stopped_instances_and_says_why(cast: AdminCast) -> None:
    running = Instance.objects.create(
        tenant=cast.acme, name="acme-running", gateway=cast.gateway, desired_state=DesiredState.RUNNING
    )
    response = _act(cast.login(cast.alice), "force_retry", cast.mine, running)
    messages = _messages(response)
    assert "Retry forced for 1 instance." in messages
    assert any("acme-sales: The instance is stopped: connect it first." in m for m in messages)
    assert ConnectionEvent.objects.get(kind=EventKind.FORCE_RETRY).actor == "user:alice"


def test_reset_breaker_closes_it_and_shares_the_rate_limit(cast: AdminCast) -> None:
    Instance.objects.filter(pk=cast.mine.pk).update(desired_state=DesiredState.RUNNING, status=Status.CIRCUIT_OPEN)
    cast.mine.breaker.state = BreakerState.OPEN
    cast.mine.breaker.save()
    client = cast.login(cast.alice)
    assert "Breaker reset for 1 instance." in _messages(_act(client, "reset_breaker", cast.mine))
    cast.mine.breaker.refresh_from_db()
    assert cast.mine.breaker.state == BreakerState.CLOSED
    assert ConnectionEvent.objects.get(kind=EventKind.RESET_BREAKER).actor == "user:alice"
    again = _messages(_act(client, "reset_breaker", cast.mine))
    assert "Breaker reset for 0 instances." in again
    assert any("done moments ago" in m for m in again)


def test_deleting_an_instance_in_the_admin_disconnects_it_first(cast: AdminCast, monkeypatch: Any) -> None:
    seen: list[tuple[int, str]] = []
    from instances import commands

    original = commands.disconnect

    def spy(instance: Instance, actor: str) -> Instance:
        seen.append((instance.pk, actor))
        return original(instance, actor)

    monkeypatch.setattr(commands, "disconnect", spy)
    pk = cast.mine.pk
    cast.login(cast.alice).post(reverse("admin:instances_instance_delete", args=[pk]), {"post": "yes"})
    assert seen == [(pk, "user:alice")]
    assert not Instance.objects.filter(pk=pk).exists()


# --- API keys -------------------------------------------------------------------


def test_creating_an_api_key_shows_it_once_and_stores_only_its_hash(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    response = client.post(reverse("admin:api_apikey_add"), {"tenant": cast.acme.pk, "name": "crm"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = re.search(r'id="new-api-key"[^>]*>([^<]+)<', response.content.decode()).group(1)
    key = ApiKey.objects.get(name="crm")
    assert key.tenant == cast.acme
    assert key.matches(raw)
    assert key.created_by == "user:alice"
    # Never again: not in the list, not on its page.
    for url in [_changelist("api_apikey"), _change("api_apikey", key.pk)]:
        html = client.get(url).content.decode()
        assert raw not in html
        assert f"blast_{key.prefix}_" in html


def test_the_api_key_list_is_scoped_and_keys_can_be_revoked(cast: AdminCast) -> None:
    mine, _ = ApiKey.objects.create_key(cast.acme, "acme-key")
    theirs, _ = ApiKey.objects.create_key(cast.rival, "rival-key")
    client = cast.login(cast.alice)
    html = client.get(_changelist("api_apikey")).content.decode()
    assert "acme-key" in html and "rival-key" not in html
    response = client.post(
        _changelist("api_apikey"),
        {"action": "revoke", "_selected_action": [mine.pk, theirs.pk], "index": 0},
        follow=True,
    )
    assert "Revoked 1 API key." in _messages(response)
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked and not theirs.revoked


def test_a_duplicate_active_key_name_is_a_form_error(cast: AdminCast) -> None:
    ApiKey.objects.create_key(cast.acme, "crm")
    response = cast.login(cast.alice).post(reverse("admin:api_apikey_add"), {"tenant": cast.acme.pk, "name": "crm"})
    assert response.status_code == 200
    assert "errornote" in response.content.decode()
    assert ApiKey.objects.filter(tenant=cast.acme, name="crm").count() == 1


# --- pairing by phone number ------------------------------------------------------


def _pair_code_page(instance: Instance) -> str:
    return reverse("admin:instances_instance_pair_code", args=[instance.pk])


def _awaiting_pairing(instance: Instance) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        desired_state=DesiredState.RUNNING,
        status=Status.AWAITING_QR,
        qr_code="2@pair-me",
        gateway_features=["pair_code"],
    )


def test_the_instance_page_links_to_pairing_by_phone_number(cast: AdminCast) -> None:
    html = cast.login(cast.alice).get(_change("instances_instance", cast.mine.pk)).content.decode()
    assert _pair_code_page(cast.mine) in html


def test_a_phone_number_asks_for_a_code_audited_with_the_user(cast: AdminCast) -> None:
    _awaiting_pairing(cast.mine)
    response = cast.login(cast.alice).post(_pair_code_page(cast.mine), {"phone": "+6281234567890"}, follow=True)
    assert any("Pairing code requested" in m for m in _messages(response))
    row = Instance.objects.get(pk=cast.mine.pk)
    assert (row.pair_phone, row.pair_state) == ("+6281234567890", PairState.REQUESTED)
    assert ConnectionEvent.objects.get(kind=EventKind.PAIR_CODE_REQUESTED).actor == "user:alice"


def test_the_page_shows_the_code_once_issued(cast: AdminCast) -> None:
    _awaiting_pairing(cast.mine)
    Instance.objects.filter(pk=cast.mine.pk).update(pair_state=PairState.ISSUED, pair_code="K7PQ2M9X")
    html = cast.login(cast.alice).get(_pair_code_page(cast.mine)).content.decode()
    assert re.search(r'id="pair-code"[^>]*>K7PQ2M9X<', html)


@pytest.mark.parametrize(
    ("phone", "features", "message"),
    [
        ("0812345678", ["pair_code"], "E.164"),
        ("+6281234567890", [], "did not announce pairing by phone number"),
    ],
    ids=["bad-phone", "no-feature"],
)
def test_a_request_that_cannot_go_is_a_form_error(
    cast: AdminCast, phone: str, features: list[str], message: str
) -> None:
    _awaiting_pairing(cast.mine)
    Instance.objects.filter(pk=cast.mine.pk).update(gateway_features=features)
    response = cast.login(cast.alice).post(_pair_code_page(cast.mine), {"phone": phone})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Instance.objects.get(pk=cast.mine.pk).pair_state == PairState.NONE


def test_another_tenants_pairing_page_is_not_found(cast: AdminCast) -> None:
    _awaiting_pairing(cast.theirs)
    client = cast.login(cast.alice)
    assert client.get(_pair_code_page(cast.theirs)).status_code == 404
    assert client.post(_pair_code_page(cast.theirs), {"phone": "+6281234567890"}).status_code == 404
    assert Instance.objects.get(pk=cast.theirs.pk).pair_state == PairState.NONE


# --- Gateways: their state and the probe-now action ------------------------------------


def _probe(client: Client, *gateways: Gateway) -> Any:
    return client.post(
        _changelist("instances_gateway"),
        {"action": "probe_now", "_selected_action": [g.pk for g in gateways], "index": 0},
        follow=True,
    )


def test_an_operator_sees_a_down_gateway_and_probes_it_now_once_per_interval(cast: AdminCast) -> None:
    from instances import outages
    from instances.models import GatewayEvent, GatewayEventKind

    outages.mark_down(
        cast.gateway.pk,
        reason="unavailable",
        now=1_700_000_000.0,
        actor="worker:w",
        failing=9,
        running=10,
        policy=outages.OutagePolicy(probe_min_s=600, probe_max_s=600),
    )
    client = cast.login(cast.root)
    listing = client.get(_changelist("instances_gateway")).content.decode()
    assert "down</strong> (unavailable)" in listing
    assert "By gateway state" in listing

    response = _probe(client, cast.gateway)
    assert any("Probe requested for gw-main" in m for m in _messages(response))
    cast.gateway.refresh_from_db()
    assert cast.gateway.next_probe_at is not None
    assert cast.gateway.next_probe_at.timestamp() > 1_700_000_000.0 + 3600  # moved to now, not 600 s after the outage
    requested = GatewayEvent.objects.filter(gateway=cast.gateway, kind=GatewayEventKind.PROBE_REQUESTED)
    assert list(requested.values_list("actor", flat=True)) == ["user:root"]

    again = _probe(client, cast.gateway)
    assert any("probed moments ago" in m for m in _messages(again))
    assert requested.count() == 1
    page = client.get(_change("instances_gateway", cast.gateway.pk)).content.decode()
    assert "Probe requested" in page and "Gateway down" in page


def test_probing_an_up_gateway_is_refused_with_a_reason(cast: AdminCast) -> None:
    response = _probe(cast.login(cast.root), cast.gateway)
    assert any("gw-main is up: there is nothing to probe" in m for m in _messages(response))


def test_tenant_staff_cannot_probe_a_gateway(cast: AdminCast) -> None:
    client = cast.login(cast.alice)
    listing = client.get(_changelist("instances_gateway")).content.decode()
    assert "probe_now" not in listing

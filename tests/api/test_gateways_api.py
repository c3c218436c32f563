"""Gateways in the API: their state, and a probe of a down gateway on request."""

from __future__ import annotations

import time

import pytest

from instances import outages
from instances.models import Gateway, GatewayEvent, GatewayEventKind
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db


def _down(gateway: Gateway) -> None:
    outages.mark_down(
        gateway.pk,
        reason="unreachable",
        now=time.time(),
        actor="worker:w",
        failing=8,
        running=10,
        policy=outages.OutagePolicy(probe_min_s=600, probe_max_s=600),
    )


def test_the_gateway_list_says_which_gateways_are_down(cast: Cast) -> None:
    _down(cast.gateway)
    rows = {row["name"]: row for row in cast.owner.get("/api/v1/gateways").json()["results"]}
    assert rows["gw-main"]["state"] == "down"
    assert rows["gw-main"]["down_reason"] == "unreachable"
    assert rows["gw-main"]["down_since"] is not None and rows["gw-main"]["next_probe_at"] is not None
    assert rows["gw-backup"]["state"] == "up" and rows["gw-backup"]["down_since"] is None
    assert "gw-old" not in rows
    assert "url" not in rows["gw-main"]


def test_a_probe_of_a_down_gateway_is_moved_to_now_audited_with_the_key_and_rate_limited(cast: Cast) -> None:
    _down(cast.gateway)
    scheduled = Gateway.objects.get(pk=cast.gateway.pk).next_probe_at
    before = time.time()
    response = cast.owner.post(f"/api/v1/gateways/{cast.gateway.pk}/probe")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "down"
    moved = Gateway.objects.get(pk=cast.gateway.pk).next_probe_at
    assert moved is not None and scheduled is not None
    assert before - 1 <= moved.timestamp() < scheduled.timestamp()
    event = GatewayEvent.objects.get(gateway=cast.gateway, kind=GatewayEventKind.PROBE_REQUESTED)
    assert event.actor == cast.api_key_a.actor

    again = cast.outsider.post(f"/api/v1/gateways/{cast.gateway.pk}/probe")
    assert again.status_code == 429
    assert again.headers["Content-Type"].startswith("application/json")
    assert int(again.headers["Retry-After"]) >= 1
    assert GatewayEvent.objects.filter(kind=GatewayEventKind.PROBE_REQUESTED).count() == 1


def test_probing_an_up_gateway_is_a_409_with_the_reason(cast: Cast) -> None:
    response = cast.owner.post(f"/api/v1/gateways/{cast.other_gateway.pk}/probe")
    assert response.status_code == 409
    assert "is up: there is nothing to probe" in response.content.decode()


@pytest.mark.parametrize("which", ["disabled", "unknown"])
def test_a_disabled_or_unknown_gateway_is_a_404(cast: Cast, which: str) -> None:
    gateway_id = cast.disabled_gateway.pk if which == "disabled" else 999_999
    response = cast.owner.post(f"/api/v1/gateways/{gateway_id}/probe")
    assert response.status_code == 404
    assert response.json()

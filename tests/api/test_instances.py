"""Instances through the API: create, list, retrieve, rename, delete, connect, disconnect."""

from __future__ import annotations

import pytest

from instances.models import ConnectionEvent, DesiredState, EventKind, Instance, Status
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

INSTANCE_FIELDS = {
    "id",
    "name",
    "gateway",
    "status",
    "desired_state",
    "last_reason",
    "retry_count",
    "next_retry_at",
    "circuit_breaker",
}


def test_gateways_lists_the_enabled_gateways_only(cast: Cast) -> None:
    response = cast.owner.get("/api/v1/gateways")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [g["name"] for g in body["results"]] == ["gw-backup", "gw-main"]
    # A tenant picks a gateway by id; where it lives is the platform's business.
    shown = {"id", "name", "state", "state_changed_at", "down_since", "down_reason", "next_probe_at"}
    assert all(set(g) == shown for g in body["results"])


def test_create_answers_201_with_the_instance_stopped(cast: Cast) -> None:
    response = cast.owner.post(
        "/api/v1/instances", {"name": "marketing", "gateway": cast.other_gateway.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert INSTANCE_FIELDS <= set(body)
    assert body["name"] == "marketing"
    assert body["gateway"] == cast.other_gateway.pk
    assert body["status"] == Status.IDLE
    assert body["desired_state"] == DesiredState.STOPPED
    assert body["circuit_breaker"]["state"] == "closed"
    instance = Instance.objects.get(key=body["id"])
    assert instance.tenant == cast.tenant_a


def test_an_instance_never_shows_its_token(cast: Cast) -> None:
    instance = cast.instance_a
    for url in [
        "/api/v1/instances",
        f"/api/v1/instances/{instance.key}",
        f"/api/v1/instances/{instance.key}/circuit-breaker",
        f"/api/v1/instances/{instance.key}/events",
    ]:
        content = cast.owner.get(url).content.decode()
        assert instance.token not in content
        assert instance.token_encrypted not in content
        assert "token" not in content


def test_retrieve_answers_the_documented_fields(cast: Cast) -> None:
    body = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}").json()
    assert INSTANCE_FIELDS <= set(body)
    assert body["id"] == str(cast.instance_a.key)
    assert set(body["circuit_breaker"]) >= {"state", "failures_in_window", "threshold", "cooldown_until"}


def test_list_filters_by_status(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a2.pk).update(status=Status.CONNECTED)
    body = cast.owner.get("/api/v1/instances?status=connected").json()
    assert [i["name"] for i in body["results"]] == ["support"]
    assert cast.owner.get("/api/v1/instances?status=circuit_open").json()["count"] == 0


def test_list_is_paginated(cast: Cast, settings) -> None:
    settings.BLAST_API_PAGE_SIZE = 2
    for n in range(3):
        Instance.objects.create(tenant=cast.tenant_a, name=f"extra-{n}", gateway=cast.gateway)
    first = cast.owner.get("/api/v1/instances").json()
    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["next"] is not None
    last = cast.owner.get("/api/v1/instances?page=3").json()
    assert len(last["results"]) == 1
    assert last["next"] is None
    assert len(cast.owner.get("/api/v1/instances?page_size=5").json()["results"]) == 5


def test_a_page_past_the_end_is_a_json_404(cast: Cast) -> None:
    response = cast.owner.get("/api/v1/instances?page=99")
    assert response.status_code == 404
    assert response.json()["detail"]


def test_patch_renames(cast: Cast) -> None:
    response = cast.owner.patch(f"/api/v1/instances/{cast.instance_a.key}", {"name": "sales-eu"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "sales-eu"
    cast.instance_a.refresh_from_db()
    assert cast.instance_a.name == "sales-eu"


def test_patch_keeps_the_status_a_worker_wrote_meanwhile(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(status=Status.CONNECTED)
    cast.owner.patch(f"/api/v1/instances/{cast.instance_a.key}", {"name": "sales-eu"}, format="json")
    assert Instance.objects.get(pk=cast.instance_a.pk).status == Status.CONNECTED


def test_put_is_405_json(cast: Cast) -> None:
    response = cast.owner.put(f"/api/v1/instances/{cast.instance_a.key}", {"name": "x"}, format="json")
    assert response.status_code == 405
    assert response.json()["detail"]


def test_delete_closes_the_session_first_then_deletes(cast: Cast, django_capture_on_commit_callbacks) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(desired_state=DesiredState.RUNNING, status=Status.CONNECTED)
    seen: list[str] = []
    from instances import commands

    original = commands.disconnect

    def spy(instance, actor):
        seen.append(actor)
        result = original(instance, actor)
        assert Instance.objects.get(pk=instance.pk).desired_state == DesiredState.STOPPED
        return result

    commands.disconnect = spy
    try:
        response = cast.owner.delete(f"/api/v1/instances/{cast.instance_a.key}")
    finally:
        commands.disconnect = original
    assert response.status_code == 204
    assert seen == [cast.api_key_a.actor]
    assert not Instance.objects.filter(pk=cast.instance_a.pk).exists()
    assert cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}").status_code == 404


def test_connect_sets_desired_running_and_is_audited_with_the_key(cast: Cast) -> None:
    response = cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/connect")
    assert response.status_code == 200, response.content
    assert response.json()["desired_state"] == DesiredState.RUNNING
    event = ConnectionEvent.objects.get(instance=cast.instance_a, kind=EventKind.CONNECT)
    assert event.actor == f"api-key:{cast.api_key_a.pk}:owner"


def test_disconnect_sets_desired_stopped_and_is_audited(cast: Cast) -> None:
    cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/connect")
    response = cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/disconnect")
    assert response.status_code == 200
    assert response.json()["desired_state"] == DesiredState.STOPPED
    event = ConnectionEvent.objects.get(instance=cast.instance_a, kind=EventKind.DISCONNECT_REQUESTED)
    assert event.actor == cast.api_key_a.actor


def test_connect_sends_a_hint_after_commit(cast: Cast, django_capture_on_commit_callbacks, monkeypatch) -> None:
    sent: list[list[int]] = []
    monkeypatch.setattr("instances.hints.send", lambda ids, *a, **k: sent.append(list(ids)))
    with django_capture_on_commit_callbacks(execute=True):
        cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/connect")
    assert sent == [[cast.instance_a.pk]]


def test_events_are_newest_first_and_paginated(cast: Cast, settings) -> None:
    settings.BLAST_API_PAGE_SIZE = 2
    for kind in [EventKind.CONNECT, EventKind.ATTEMPT, EventKind.READY]:
        ConnectionEvent.objects.create(instance=cast.instance_a, kind=kind, actor="worker:w1")
    body = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/events").json()
    assert body["count"] == 3
    assert [e["kind"] for e in body["results"]] == ["ready", "attempt"]
    assert set(body["results"][0]) == {"id", "at", "kind", "reason", "message", "actor", "data"}
    page2 = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/events?page=2").json()
    assert [e["kind"] for e in page2["results"]] == ["connect"]


def test_health_counts_by_status_and_scores(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(desired_state="running", status="connected")
    Instance.objects.filter(pk=cast.instance_a2.pk).update(desired_state="running", status="backing_off")
    body = cast.owner.get("/api/v1/health").json()
    assert body["tenant"] == "acme"
    assert body["instances"] == 2
    assert body["expected"] == 2
    assert body["connected"] == 1
    assert body["counts"]["connected"] == 1
    assert body["counts"]["backing_off"] == 1
    assert body["counts"]["idle"] == 0
    assert body["score"] == 50


def test_health_does_not_expect_an_instance_awaiting_its_qr_scan(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(desired_state="running", status="connected")
    Instance.objects.filter(pk=cast.instance_a2.pk).update(desired_state="running", status="awaiting_qr")
    body = cast.owner.get("/api/v1/health").json()
    assert body["expected"] == 1
    assert body["score"] == 100


def test_health_penalises_open_breakers(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(desired_state="running", status="connected")
    Instance.objects.filter(pk=cast.instance_a2.pk).update(desired_state="running", status="circuit_open")
    cast.instance_a2.breaker.state = "open"
    cast.instance_a2.breaker.save()
    body = cast.owner.get("/api/v1/health").json()
    assert body["open_breakers"] == 1
    assert body["score"] < 50

"""Tenant isolation: a second tenant's key gets 404 for the first tenant's objects.

Never 403 (which would confirm the object exists), and nothing happens to
the object: no event, no change, no deletion.
"""

from __future__ import annotations

import pytest

from instances.models import ConnectionEvent, DesiredState, EventKind, Instance, Status
from tests.api.endpoints import INSTANCE_ENDPOINTS, Endpoint
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db


def _make_everything_answerable(cast: Cast) -> None:
    """Put A's instance where every endpoint would answer 200 to A's own key."""
    Instance.objects.filter(pk=cast.instance_a.pk).update(
        desired_state=DesiredState.RUNNING, status=Status.AWAITING_QR, qr_code="2@secret-pairing-code"
    )
    ConnectionEvent.objects.create(instance=cast.instance_a, kind=EventKind.QR, message="qr issued")


@pytest.mark.parametrize("endpoint", INSTANCE_ENDPOINTS, ids=str)
def test_another_tenants_key_gets_404_and_changes_nothing(cast: Cast, endpoint: Endpoint) -> None:
    _make_everything_answerable(cast)
    before = Instance.objects.values().get(pk=cast.instance_a.pk)
    events_before = ConnectionEvent.objects.filter(instance=cast.instance_a).count()

    body = {"name": "stolen"} if endpoint.method in {"post", "patch"} else None
    response = getattr(cast.outsider, endpoint.method)(endpoint.url(cast.instance_a.key), body, format="json")

    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "No instance with this id."}
    assert b"secret-pairing-code" not in response.content
    assert Instance.objects.values().get(pk=cast.instance_a.pk) == before
    assert ConnectionEvent.objects.filter(instance=cast.instance_a).count() == events_before


@pytest.mark.parametrize("endpoint", INSTANCE_ENDPOINTS, ids=str)
def test_the_owner_reaches_the_same_endpoint(cast: Cast, endpoint: Endpoint) -> None:
    """The control for the test above: the 404 is the tenant boundary, not a broken route."""
    _make_everything_answerable(cast)
    body = {"name": "renamed"} if endpoint.method == "patch" else None
    response = getattr(cast.owner, endpoint.method)(endpoint.url(cast.instance_a.key), body, format="json")
    assert response.status_code in {200, 204}, response.content


@pytest.mark.parametrize("endpoint", [e for e in INSTANCE_ENDPOINTS if e.seed], ids=str)
def test_another_tenants_access_token_gets_404_on_the_seed_endpoints(cast: Cast, endpoint: Endpoint) -> None:
    _make_everything_answerable(cast)
    client = cast.client(None)
    response = getattr(client, endpoint.method)(endpoint.url(cast.instance_a.key) + f"?access_token={cast.key_b}")
    assert response.status_code == 404
    assert not ConnectionEvent.objects.filter(instance=cast.instance_a).exclude(kind=EventKind.QR).exists()


@pytest.mark.parametrize("endpoint", INSTANCE_ENDPOINTS, ids=str)
def test_an_unknown_or_malformed_id_is_the_same_404(cast: Cast, endpoint: Endpoint) -> None:
    for instance_id in ["7d3c1a9e-0000-4000-8000-000000000000", "not-a-uuid", "1", str(cast.instance_a.pk)]:
        response = getattr(cast.owner, endpoint.method)(endpoint.url(instance_id), format="json")
        assert response.status_code == 404, (instance_id, response.content)
        assert response.json() == {"detail": "No instance with this id."}


def test_the_instance_list_holds_only_the_tenants_own(cast: Cast) -> None:
    names_a = {i["id"] for i in cast.owner.get("/api/v1/instances").json()["results"]}
    names_b = {i["id"] for i in cast.outsider.get("/api/v1/instances").json()["results"]}
    assert names_a == {str(cast.instance_a.key), str(cast.instance_a2.key)}
    assert names_b == {str(cast.instance_b.key)}


def test_a_name_used_by_another_tenant_is_free(cast: Cast) -> None:
    # Tenant B has "sales" too: names are unique per tenant only, and the
    # answer must not reveal another tenant's names.
    response = cast.outsider.post("/api/v1/instances", {"name": "support", "gateway": cast.gateway.pk}, format="json")
    assert response.status_code == 201, response.content


def test_health_counts_only_the_tenants_own(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_b.pk).update(desired_state="running", status="connected")
    health_a = cast.owner.get("/api/v1/health").json()
    assert health_a["instances"] == 2
    assert health_a["counts"]["connected"] == 0
    health_b = cast.outsider.get("/api/v1/health").json()
    assert health_b["instances"] == 1
    assert health_b["counts"]["connected"] == 1


def test_events_of_another_tenants_instance_do_not_leak_through_the_list(cast: Cast) -> None:
    ConnectionEvent.objects.create(instance=cast.instance_a, kind=EventKind.CONNECT, actor="secret-actor")
    response = cast.outsider.get(f"/api/v1/instances/{cast.instance_b.key}/events")
    assert response.status_code == 200
    assert b"secret-actor" not in response.content

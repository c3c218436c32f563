"""API keys: Bearer authentication, 401 for anything but a live key, keys stored hashed."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from api.models import ApiKey, hash_key
from instances.models import ConnectionEvent, Instance
from tests.api.endpoints import ALL_ENDPOINTS, SEED_ENDPOINTS, Endpoint
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db


def _call(client, endpoint: Endpoint, cast: Cast, query: str = ""):
    url = endpoint.url(cast.instance_a.key) + query
    return getattr(client, endpoint.method)(
        url, {"name": "x"} if endpoint.method in {"post", "patch"} else None, format="json"
    )


def _assert_401(response) -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def _assert_untouched(cast: Cast) -> None:
    assert Instance.objects.filter(pk=cast.instance_a.pk).exists()
    assert not ConnectionEvent.objects.filter(instance=cast.instance_a).exists()


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS, ids=str)
def test_a_request_without_a_key_is_401(cast: Cast, endpoint: Endpoint) -> None:
    _assert_401(_call(cast.client(None), endpoint, cast))
    _assert_untouched(cast)


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS, ids=str)
@pytest.mark.parametrize(
    "key",
    [
        "blast_0123456789ab_not-a-real-secret-at-all-xxxxxxxx",
        "not-even-shaped-like-a-key",
        "blast__",
        "",
    ],
    ids=["unknown", "malformed", "empty-parts", "empty"],
)
def test_a_wrong_key_is_401(cast: Cast, endpoint: Endpoint, key: str) -> None:
    client = cast.client(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    _assert_401(_call(client, endpoint, cast))
    _assert_untouched(cast)


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS, ids=str)
def test_a_revoked_key_is_401(cast: Cast, endpoint: Endpoint) -> None:
    response = _call(cast.client(cast.revoked_key_a), endpoint, cast)
    _assert_401(response)
    assert response.json()["detail"] == "This API key has been revoked."
    _assert_untouched(cast)


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS, ids=str)
def test_a_right_prefix_with_a_wrong_secret_is_401(cast: Cast, endpoint: Endpoint) -> None:
    forged = cast.key_a[:-4] + ("aaaa" if not cast.key_a.endswith("aaaa") else "bbbb")
    response = _call(cast.client(forged), endpoint, cast)
    _assert_401(response)
    assert response.json()["detail"] == "Invalid API key."


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS, ids=str)
def test_another_scheme_than_bearer_is_401(cast: Cast, endpoint: Endpoint) -> None:
    client = cast.client(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {cast.key_a}")
    _assert_401(_call(client, endpoint, cast))


@pytest.mark.parametrize("endpoint", SEED_ENDPOINTS, ids=str)
@pytest.mark.parametrize("which", ["missing", "wrong", "revoked", "empty"])
def test_the_seed_endpoints_refuse_a_bad_access_token(cast: Cast, endpoint: Endpoint, which: str) -> None:
    token = {
        "missing": None,
        "wrong": "blast_0123456789ab_not-a-real-secret-at-all-xxxxxxxx",
        "revoked": cast.revoked_key_a,
        "empty": "",
    }[which]
    query = "" if token is None else f"?access_token={token}"
    _assert_401(_call(cast.client(None), endpoint, cast, query))
    _assert_untouched(cast)


@pytest.mark.parametrize("endpoint", SEED_ENDPOINTS, ids=str)
def test_the_seed_endpoints_accept_the_key_as_access_token(cast: Cast, endpoint: Endpoint) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(desired_state="running")
    response = _call(cast.client(None), endpoint, cast, f"?access_token={cast.key_a}")
    assert response.status_code == 200, response.content


def test_access_token_is_not_accepted_by_the_v1_api(cast: Cast) -> None:
    response = cast.client(None).get(f"/api/v1/instances?access_token={cast.key_a}")
    _assert_401(response)


def test_a_key_is_stored_hashed_and_never_in_clear(cast: Cast) -> None:
    row = ApiKey.objects.get(pk=cast.api_key_a.pk)
    assert row.key_hash == hash_key(cast.key_a)
    assert cast.key_a not in {row.prefix, row.key_hash, row.name}
    assert row.key_hash != cast.key_a
    assert cast.key_a.startswith(f"blast_{row.prefix}_")


def test_a_tenant_has_several_named_keys_and_revoking_one_leaves_the_others(cast: Cast) -> None:
    second, raw = ApiKey.objects.create_key(cast.tenant_a, "crm-sync")
    assert cast.client(raw).get("/api/v1/instances").status_code == 200
    assert second.revoke() is True
    assert second.revoke() is False  # already revoked
    assert cast.client(raw).get("/api/v1/instances").status_code == 401
    assert cast.owner.get("/api/v1/instances").status_code == 200


def test_a_revoked_name_can_be_reused(cast: Cast) -> None:
    _, raw = ApiKey.objects.create_key(cast.tenant_a, "old")  # "old" was revoked in the cast
    assert cast.client(raw).get("/api/v1/health").status_code == 200


def test_last_used_is_recorded_at_most_once_a_minute(cast: Cast) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert cast.owner.get("/api/v1/health").status_code == 200
    first = ApiKey.objects.get(pk=cast.api_key_a.pk).last_used_at
    assert first == start

    with time_machine.travel(start + dt.timedelta(seconds=30), tick=False):
        cast.owner.get("/api/v1/health")
    assert ApiKey.objects.get(pk=cast.api_key_a.pk).last_used_at == first

    later = start + dt.timedelta(seconds=61)
    with time_machine.travel(later, tick=False):
        cast.owner.get("/api/v1/health")
    assert ApiKey.objects.get(pk=cast.api_key_a.pk).last_used_at == later


def test_a_failed_authentication_does_not_touch_last_used(cast: Cast) -> None:
    cast.client(cast.revoked_key_a).get("/api/v1/health")
    assert ApiKey.objects.get(tenant=cast.tenant_a, name="old").last_used_at is None

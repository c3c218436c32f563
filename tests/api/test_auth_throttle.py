"""Bad-key floods: counted per address, refused once over the limit, visible in /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.fixtures.cast import Cast
from tests.monitoring.test_metrics import scrape, value

pytestmark = pytest.mark.django_db

BAD_KEY = "blast_0123456789ab_" + "x" * 30


@pytest.fixture
def limit(settings: Any) -> int:
    settings.BLAST_AUTH_FAILURE_LIMIT = 5
    settings.BLAST_AUTH_FAILURE_WINDOW_S = 60
    return 5


def _get(cast: Cast, key: str, address: str = "203.0.113.7") -> Any:
    client = cast.client(key)
    return client.get("/api/v1/instances", REMOTE_ADDR=address)


def test_an_address_that_sends_too_many_bad_keys_is_answered_429(cast: Cast, limit: int) -> None:
    for _ in range(limit):
        assert _get(cast, BAD_KEY).status_code == 401
    refused = _get(cast, BAD_KEY)
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert "invalid API keys" in refused.json()["detail"]
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_while_refused_even_a_good_key_from_that_address_waits(cast: Cast, limit: int) -> None:
    for _ in range(limit):
        _get(cast, BAD_KEY)
    assert _get(cast, cast.key_a).status_code == 429


def test_other_addresses_are_not_affected(cast: Cast, limit: int) -> None:
    for _ in range(limit + 3):
        _get(cast, BAD_KEY)
    assert _get(cast, cast.key_a, address="198.51.100.20").status_code == 200
    assert _get(cast, BAD_KEY, address="198.51.100.20").status_code == 401


def test_good_keys_are_never_counted(cast: Cast, limit: int) -> None:
    for _ in range(limit * 3):
        assert _get(cast, cast.key_a).status_code == 200


def test_the_query_token_of_the_seed_endpoints_is_counted_too(cast: Cast, limit: int) -> None:
    url = f"/circuit-breaker-status/{cast.instance_a.key}"
    client = Client()
    for _ in range(limit):
        assert client.get(url, {"access_token": BAD_KEY}, REMOTE_ADDR="203.0.113.9").status_code == 401
    assert client.get(url, {"access_token": BAD_KEY}, REMOTE_ADDR="203.0.113.9").status_code == 429


def test_failures_and_refusals_are_counted_in_metrics(cast: Cast, limit: int) -> None:
    client = Client()
    before = scrape(client)
    for _ in range(limit + 2):
        _get(cast, BAD_KEY)
    after = scrape(client)
    grew = value(after, "blast_auth_failures_total", door="api") - value(
        before, "blast_auth_failures_total", door="api"
    )
    refused = value(after, "blast_auth_throttled_total", door="api") - value(
        before, "blast_auth_throttled_total", door="api"
    )
    assert grew == limit
    assert refused == 2


def test_with_redis_down_keys_are_still_checked(cast: Cast, limit: int, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(limit + 2):
        assert _get(cast, BAD_KEY).status_code == 401
    assert _get(cast, cast.key_a).status_code == 200

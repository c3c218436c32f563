"""Circuit-breaker status, force retry and reset: audited with the key, rate-limited per instance."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from api.models import ApiKey
from instances import commands
from instances.models import BreakerState, ConnectionEvent, DesiredState, EventKind, Instance, Status
from tests.fixtures.cast import Cast, build_cast
from tests.fixtures.platform import wait_until

pytestmark = pytest.mark.django_db


def _open_breaker(instance: Instance, failures: int = 10) -> None:
    now = timezone.now()
    Instance.objects.filter(pk=instance.pk).update(desired_state=DesiredState.RUNNING, status=Status.CIRCUIT_OPEN)
    instance.breaker.state = BreakerState.OPEN
    instance.breaker.failures = [now.timestamp() - n for n in range(failures)]
    instance.breaker.opened_at = now
    instance.breaker.cooldown_until = now + timezone.timedelta(minutes=10)
    instance.breaker.trip_count = 1
    instance.breaker.save()


def test_breaker_status_reports_state_window_and_cooldown(cast: Cast) -> None:
    _open_breaker(cast.instance_a)
    response = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/circuit-breaker")
    assert response.status_code == 200
    body = response.json()
    assert body["instance"] == str(cast.instance_a.key)
    assert body["state"] == "open"
    assert body["failures_in_window"] == 10
    assert body["threshold"] == 10
    assert body["window_s"] == 300.0
    assert body["cooldown_until"] is not None
    assert body["trip_count"] == 1


def test_reset_closes_the_breaker_and_is_audited_with_the_key(cast: Cast) -> None:
    _open_breaker(cast.instance_a)
    response = cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/reset-circuit-breaker")
    assert response.status_code == 200, response.content
    assert response.json()["circuit_breaker"]["state"] == "closed"
    assert response.json()["circuit_breaker"]["failures_in_window"] == 0
    assert response.json()["status"] == Status.BACKING_OFF
    event = ConnectionEvent.objects.get(instance=cast.instance_a, kind=EventKind.RESET_BREAKER)
    assert event.actor == f"api-key:{cast.api_key_a.pk}:owner"


def test_force_retry_is_audited_with_the_key(cast: Cast) -> None:
    _open_breaker(cast.instance_a)
    response = cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/force-retry")
    assert response.status_code == 200
    assert Instance.objects.get(pk=cast.instance_a.pk).force_retry is True
    event = ConnectionEvent.objects.get(instance=cast.instance_a, kind=EventKind.FORCE_RETRY)
    assert event.actor == cast.api_key_a.actor


def test_force_retry_of_a_stopped_instance_is_a_409_and_frees_the_slot(cast: Cast) -> None:
    url = f"/api/v1/instances/{cast.instance_a.key}/force-retry"
    response = cast.owner.post(url)
    assert response.status_code == 409
    assert response.json() == {"detail": "The instance is stopped: connect it first."}
    cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/connect")
    # The refused attempt did not use the instance's slot.
    assert cast.owner.post(url).status_code == 200


@pytest.mark.parametrize("action", ["force-retry", "reset-circuit-breaker"])
def test_a_second_use_within_the_interval_is_429_with_retry_after(cast: Cast, action: str) -> None:
    _open_breaker(cast.instance_a)
    url = f"/api/v1/instances/{cast.instance_a.key}/{action}"
    assert cast.owner.post(url).status_code == 200
    response = cast.owner.post(url)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 30
    assert "moments ago" in response.json()["detail"]
    kind = EventKind.FORCE_RETRY if action == "force-retry" else EventKind.RESET_BREAKER
    assert ConnectionEvent.objects.filter(instance=cast.instance_a, kind=kind).count() == 1


def test_the_limit_is_per_instance_not_per_client(cast: Cast) -> None:
    _open_breaker(cast.instance_a)
    _open_breaker(cast.instance_a2)
    _, second_key = ApiKey.objects.create_key(cast.tenant_a, "second")
    assert cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/force-retry").status_code == 200
    # Another key of the tenant, and the seed endpoint, share the instance's slot...
    assert cast.client(second_key).post(f"/api/v1/instances/{cast.instance_a.key}/force-retry").status_code == 429
    assert cast.client(None).post(f"/force-retry/{cast.instance_a.key}?access_token={second_key}").status_code == 429
    # ...another instance and another action have their own.
    assert cast.owner.post(f"/api/v1/instances/{cast.instance_a2.key}/force-retry").status_code == 200
    assert cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/reset-circuit-breaker").status_code == 200


def test_the_slot_frees_after_the_interval(cast: Cast, settings: Any) -> None:
    settings.BLAST_MANUAL_ACTION_INTERVAL_S = 0.3
    _open_breaker(cast.instance_a)
    url = f"/api/v1/instances/{cast.instance_a.key}/force-retry"
    assert cast.owner.post(url).status_code == 200
    assert cast.owner.post(url).status_code == 429
    wait_until(lambda: cast.owner.post(url).status_code == 200, timeout=10, message="slot freed")


def test_an_interval_of_zero_turns_the_limit_off(cast: Cast, settings: Any) -> None:
    settings.BLAST_MANUAL_ACTION_INTERVAL_S = 0
    _open_breaker(cast.instance_a)
    url = f"/api/v1/instances/{cast.instance_a.key}/force-retry"
    assert [cast.owner.post(url).status_code for _ in range(3)] == [200, 200, 200]


def test_without_redis_the_controls_fail_closed_with_503(cast: Cast, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    _open_breaker(cast.instance_a)
    response = cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/force-retry")
    assert response.status_code == 503
    assert response.json()["detail"]
    assert not ConnectionEvent.objects.filter(instance=cast.instance_a, kind=EventKind.FORCE_RETRY).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["force-retry", "reset-circuit-breaker"])
def test_the_limit_holds_under_concurrent_requests(action: str, monkeypatch: Any) -> None:
    """Ten clients at once, through the whole stack and a real Redis: exactly one gets through."""
    monkeypatch.setattr("instances.hints.send", lambda *args, **kwargs: None)
    cast = build_cast()
    _open_breaker(cast.instance_a)
    _, second_key = ApiKey.objects.create_key(cast.tenant_a, "second")
    url = f"/api/v1/instances/{cast.instance_a.key}/{action}"
    clients = 10
    barrier = threading.Barrier(clients)
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def hit(n: int) -> None:
        client = cast.client(cast.key_a if n % 2 else second_key)
        try:
            barrier.wait(timeout=30)
            response = client.post(url)
            with lock:
                results.append((response.status_code, response.headers.get("Retry-After")))
        finally:
            connection.close()

    threads = [threading.Thread(target=hit, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == clients, f"threads did not finish in {time.monotonic() - started:.1f}s"

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [429] * (clients - 1), results
    assert all(retry_after and int(retry_after) >= 1 for status, retry_after in results if status == 429)
    kind = EventKind.FORCE_RETRY if action == "force-retry" else EventKind.RESET_BREAKER
    assert ConnectionEvent.objects.filter(instance=cast.instance_a, kind=kind).count() == 1


def test_the_instance_json_shows_the_breaker_endpoints_summary(cast: Cast) -> None:
    _open_breaker(cast.instance_a)
    full = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/circuit-breaker").json()
    shown = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}").json()["circuit_breaker"]
    assert list(shown) == ["state", "failures_in_window", "threshold", "opened_at", "cooldown_until", "trip_count"]
    assert shown == {name: full[name] for name in shown}


def test_a_breaker_loaded_with_its_instance_is_summarised_without_a_query(
    cast: Cast, django_assert_num_queries: Any
) -> None:
    _open_breaker(cast.instance_a)
    instance = Instance.objects.select_related("breaker").get(pk=cast.instance_a.pk)
    with django_assert_num_queries(0):
        status = commands.breaker_status(instance)
    assert (status.state, status.failures_in_window, status.trip_count) == ("open", 10, 1)

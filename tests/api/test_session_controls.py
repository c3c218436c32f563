"""Connect and disconnect: rate-limited per instance, and which terminal states a connect clears."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from instances.models import DesiredState, Instance, Status
from tests.fixtures.cast import Cast
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args


@pytest.fixture
def interval(settings: Any) -> float:
    settings.BLAST_SESSION_ACTION_INTERVAL_S = 30.0
    return 30.0


def _post(cast: Cast, instance: Instance, action: str) -> Any:
    return cast.owner.post(f"/api/v1/instances/{instance.key}/{action}")


@pytest.mark.django_db
def test_a_second_connect_within_the_interval_is_429(cast: Cast, interval: float) -> None:
    assert _post(cast, cast.instance_a, "connect").status_code == 200
    again = _post(cast, cast.instance_a, "connect")
    assert again.status_code == 429
    assert again["Content-Type"] == "application/json"
    assert 1 <= int(again["Retry-After"]) <= 30


@pytest.mark.django_db
def test_a_connect_disconnect_cycle_runs_once_per_interval(cast: Cast, interval: float) -> None:
    assert _post(cast, cast.instance_a, "connect").status_code == 200
    assert _post(cast, cast.instance_a, "disconnect").status_code == 200
    assert _post(cast, cast.instance_a, "connect").status_code == 429
    assert _post(cast, cast.instance_a, "disconnect").status_code == 429
    assert Instance.objects.get(pk=cast.instance_a.pk).desired_state == DesiredState.STOPPED


@pytest.mark.django_db
def test_the_limit_is_per_instance(cast: Cast, interval: float) -> None:
    assert _post(cast, cast.instance_a, "connect").status_code == 200
    assert _post(cast, cast.instance_a2, "connect").status_code == 200


@pytest.mark.django_db
def test_a_refused_connect_writes_nothing(cast: Cast, interval: float) -> None:
    _post(cast, cast.instance_a, "connect")
    _post(cast, cast.instance_a, "disconnect")
    events = cast.instance_a.events.count()
    assert _post(cast, cast.instance_a, "connect").status_code == 429
    assert cast.instance_a.events.count() == events


@pytest.mark.django_db
def test_redis_down_refuses_the_connect_with_503(cast: Cast, interval: float, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = _post(cast, cast.instance_a, "connect")
    assert response.status_code == 503
    assert response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.STOPPED, Status.LOGGED_OUT, Status.REPLACED])
def test_a_connect_clears_a_stop_a_logout_and_a_replacement(cast: Cast, interval: float, status: str) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(status=status, desired_state=DesiredState.STOPPED)
    body = _post(cast, cast.instance_a, "connect").json()
    assert body["status"] == Status.IDLE
    assert body["desired_state"] == DesiredState.RUNNING


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.FORBIDDEN, Status.HALTED])
def test_a_connect_leaves_a_forbidden_or_halted_instance_so(cast: Cast, interval: float, status: str) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(status=status, desired_state=DesiredState.STOPPED)
    body = _post(cast, cast.instance_a, "connect").json()
    assert body["status"] == status
    assert body["desired_state"] == DesiredState.RUNNING
    # One attempt is a force retry's to make.
    retried = cast.owner.post(f"/api/v1/instances/{cast.instance_a.key}/force-retry")
    assert retried.status_code == 200, retried.content
    assert retried.json()["status"] == Status.IDLE


@gateway_sim_args("--auto-pair-after", "0")
def test_fifteen_quick_connect_cycles_open_one_gateway_session(engine: Engine, settings: Any) -> None:
    settings.BLAST_SESSION_ACTION_INTERVAL_S = 60.0
    out = io.StringIO()
    call_command("create_api_key", engine.tenant.slug, "--name", "cycles", stdout=out, stderr=io.StringIO())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")
    instance = engine.create("cycling", connect=False)
    base = f"/api/v1/instances/{instance.key}"

    assert client.post(f"{base}/connect").status_code == 200
    engine.sim.control.pair(str(instance.key))
    engine.wait_status(instance, Status.CONNECTED, timeout=60)
    answers = []
    for _ in range(15):
        answers.append(client.post(f"{base}/disconnect").status_code)
        answers.append(client.post(f"{base}/connect").status_code)
    # The first disconnect passes; everything after it waits for the interval.
    assert answers[0] == 200
    assert set(answers[1:]) == {429}
    engine.wait_status(instance, Status.STOPPED, timeout=60)
    stats = wait_until(lambda: (s := engine.sim_stats(instance)) and s["current"] == 0 and s, timeout=30)
    assert stats["connects"] == 1
    assert stats["max_concurrent"] == 1


@pytest.mark.django_db
def test_the_admin_actions_share_the_instance_slot(cast: Cast, interval: float) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    operator = get_user_model().objects.create_superuser("root", "root@example.com", "a long operator password")
    client = Client()
    client.force_login(operator)
    assert _post(cast, cast.instance_a, "connect").status_code == 200
    response = client.post(
        "/admin/instances/instance/",
        {"action": "connect", "_selected_action": [cast.instance_a.pk]},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Connect requested for 0 instances" in text
    assert "done moments ago" in text

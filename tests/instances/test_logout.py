"""Logout: the API (and the admin action) unlink an instance's account.
Real processes: the worker sends the gateway `logout`, the simulator unpairs
and closes with 4401, the instance stops as logged_out, and the next connect
shows a QR code."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from api.models import ApiKey
from instances.models import ConnectionEvent, EventKind, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args

pytestmark = pytest.mark.urls("blast.urls")


@gateway_sim_args("--start-paired", "--auto-pair-after", "0")
def test_logout_unpairs_the_account_and_the_next_connect_shows_a_qr(engine: Engine, settings: Any) -> None:
    settings.BLAST_SESSION_ACTION_INTERVAL_S = 0  # no rate limit: the refusal below is the state's
    _, key = ApiKey.objects.create_key(engine.tenant, "owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    instance = engine.create("shop")
    engine.wait_status(instance, Status.CONNECTED)
    assert engine.sim_stats(instance)["paired"] is True

    response = client.post(f"/api/v1/instances/{instance.key}/logout")
    assert response.status_code == 200, response.content
    engine.wait_status(instance, Status.LOGGED_OUT)
    assert engine.sim_stats(instance)["paired"] is False
    instance.refresh_from_db()
    assert not instance.paired and not instance.logout_requested
    assert ConnectionEvent.objects.filter(instance=instance, kind=EventKind.LOGOUT_REQUESTED).count() == 1

    # Not connected: nothing to log out.
    refused = client.post(f"/api/v1/instances/{instance.key}/logout")
    assert refused.status_code == 409 and "not ready" in refused.json()["detail"]

    assert client.post(f"/api/v1/instances/{instance.key}/connect").status_code == 200
    engine.wait_status(instance, Status.AWAITING_QR)
    assert client.get(f"/api/v1/instances/{instance.key}/qr").status_code == 200
    wait_until(lambda: engine.sim_stats(instance)["current"] == 1, message="one session")

"""End to end, through the API only, with real processes.

A connection worker, Celery with beat and the gateway simulator run as
their own processes (``engine`` fixture); the test speaks to the platform
only through the REST API, and to the simulator only through its control
API: create a key, create an instance on the simulator, pair it, see it
connected, break the gateway, watch the breaker open, reset it, see it
connected again.
"""

from __future__ import annotations

import io
from typing import Any

from django.core.management import call_command
from rest_framework.test import APIClient

from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args


class Api:
    """A tenant's client: every call asserts its status and returns the JSON."""

    def __init__(self, key: str) -> None:
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = getattr(self.client, method)(path, body, format="json")
        assert response.status_code == expect, (method, path, response.status_code, response.content)
        return response.json() if response.content else None

    def instance(self, instance_id: str) -> dict[str, Any]:
        return self.call("get", f"/api/v1/instances/{instance_id}")

    def breaker(self, instance_id: str) -> dict[str, Any]:
        return self.call("get", f"/api/v1/instances/{instance_id}/circuit-breaker")


@gateway_sim_args("--auto-pair-after", "0")
def test_create_pair_break_and_heal_an_instance_through_the_api(engine: Engine) -> None:
    out = io.StringIO()
    call_command("create_api_key", engine.tenant.slug, "--name", "e2e", stdout=out, stderr=io.StringIO())
    api = Api(out.getvalue().strip())

    # Create it on the simulator's gateway, connect it: it waits for a scan.
    gateways = api.call("get", "/api/v1/gateways")["results"]
    assert [g["id"] for g in gateways] == [engine.gateway.pk]
    created = api.call("post", "/api/v1/instances", {"name": "e2e", "gateway": engine.gateway.pk}, expect=201)
    instance_id = created["id"]
    api.call("post", f"/api/v1/instances/{instance_id}/connect")
    wait_until(
        lambda: api.instance(instance_id)["status"] == "awaiting_qr",
        timeout=60,
        message=f"awaiting_qr\n{engine.platform.logs()[-3000:]}",
    )
    qr = api.call("get", f"/api/v1/instances/{instance_id}/qr")
    assert qr["code"]
    assert qr["image"].startswith("data:image/png;base64,")

    # Scanned: connected.
    engine.sim.control.pair(instance_id)
    wait_until(lambda: api.instance(instance_id)["status"] == "connected", timeout=60, message="connected")
    assert api.instance(instance_id)["paired"] is True
    assert api.call("get", "/api/v1/health")["connected"] == 1
    api.call("get", f"/api/v1/instances/{instance_id}/qr", expect=404)

    # The gateway breaks: every attempt is refused until the breaker opens.
    engine.sim.control.set_fault("refuse", instance=instance_id, status=503)
    engine.sim.control.close(instance_id, 1000)
    opened = wait_until(
        lambda: (b := api.breaker(instance_id))["state"] == "open" and b,
        timeout=120,
        message=f"breaker open\n{engine.platform.logs()[-3000:]}",
    )
    assert opened["failures_in_window"] >= opened["threshold"] == 10
    assert opened["cooldown_until"] is not None
    assert api.instance(instance_id)["status"] == "circuit_open"
    assert api.call("get", "/api/v1/health")["open_breakers"] == 1

    # The gateway heals; the tenant resets the breaker: connected again.
    engine.sim.control.clear_faults()
    reset = api.call("post", f"/api/v1/instances/{instance_id}/reset-circuit-breaker")
    assert reset["circuit_breaker"]["state"] == "closed"
    wait_until(lambda: api.instance(instance_id)["status"] == "connected", timeout=60, message="connected again")
    assert api.breaker(instance_id)["state"] == "closed"

    # The history tells it, with the key as the actor of the tenant's commands.
    kinds = {
        e["kind"]: e
        for e in reversed(api.call("get", f"/api/v1/instances/{instance_id}/events?page_size=200")["results"])
    }
    assert {"connect", "qr", "paired", "ready", "breaker_opened", "reset_breaker"} <= set(kinds)
    assert kinds["reset_breaker"]["actor"].startswith("api-key:")
    assert kinds["reset_breaker"]["actor"].endswith(":e2e")

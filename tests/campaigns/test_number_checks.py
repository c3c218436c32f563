"""Number checks through an instance's gateway, with real processes (a
connection worker, the simulator, Redis, the database): answered 50 numbers
per `check` frame, remembered per tenant, refused with a reason by a gateway
that does not serve them; another tenant's check is a 404."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from api.models import ApiKey
from campaigns.models import NumberCheck, NumberCheckStatus
from instances.models import Status, Tenant
from tests.campaigns.conftest import URLS
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args

pytestmark = pytest.mark.urls(URLS)

NUMBERS = [f"+1201555{n:04d}" for n in range(60)]
ABSENT = NUMBERS[3:6]


def _client(tenant: Tenant) -> APIClient:
    _, key = ApiKey.objects.create_key(tenant, "owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _done(check_id: str) -> NumberCheck:
    return wait_until(
        lambda: NumberCheck.objects.filter(key=check_id).exclude(status=NumberCheckStatus.PENDING).first(),
        timeout=30,
        message="the check finished",
    )


@gateway_sim_args("--start-paired")
def test_numbers_are_checked_fifty_at_a_time_and_remembered_for_the_tenant(engine: Engine) -> None:
    client = _client(engine.tenant)
    instance = engine.create("checker")
    engine.wait_status(instance, Status.CONNECTED)
    engine.sim.control.set_absent_numbers(ABSENT)
    url = f"/api/v1/instances/{instance.key}/number-checks"
    response = client.post(url, {"phones": [*NUMBERS, NUMBERS[0]]}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and response.json()["pending"] == 60
    check = _done(response.json()["id"])
    assert check.status == NumberCheckStatus.DONE, check.error
    assert check.results == {n: n not in ABSENT for n in NUMBERS}
    assert engine.sim_stats(instance)["checks"] == 2  # 50 + 10
    shown = client.get(f"/api/v1/number-checks/{check.key}").json()
    assert shown["pending"] == 0 and shown["results"][ABSENT[0]] is False

    # Known numbers are answered from the cache; only the new one is asked.
    again = client.post(url, {"phones": [*NUMBERS[:10], "+12015559999"]}, format="json").json()
    assert again["pending"] == 1 and again["results"][ABSENT[0]] is False
    assert _done(again["id"]).results["+12015559999"] is True
    assert engine.sim_stats(instance)["checks"] == 3
    cached = client.post(url, {"phones": NUMBERS[:5]}, format="json").json()
    assert cached["status"] == "done" and cached["pending"] == 0
    assert engine.sim_stats(instance)["checks"] == 3

    rival = _client(Tenant.objects.create(slug="rival", name="Rival"))
    assert rival.get(f"/api/v1/number-checks/{check.key}").status_code == 404
    assert rival.post(url, {"phones": NUMBERS[:1]}, format="json").status_code == 404
    bad = client.post(url, {"phones": ["12", NUMBERS[0]]}, format="json")
    assert bad.status_code == 400 and "phones" in bad.json()


@gateway_sim_args("--start-paired", "--v1")
def test_a_gateway_that_does_not_serve_checks_fails_the_check_with_its_reason(engine: Engine) -> None:
    client = _client(engine.tenant)
    instance = engine.create("plain")
    engine.wait_status(instance, Status.CONNECTED)
    response = client.post(f"/api/v1/instances/{instance.key}/number-checks", {"phones": NUMBERS[:3]}, format="json")
    check = _done(response.json()["id"])
    assert check.status == NumberCheckStatus.FAILED
    assert "did not announce check" in check.error
    assert engine.sim_stats(instance)["checks"] == 0

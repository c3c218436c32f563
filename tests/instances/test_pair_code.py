"""Pairing by phone number, across the real processes.

The API (in the test process) writes the request; the connection worker (its
own process) sends ``pair_code`` to the simulator (its own process), whose
answer lands on the row; the code then pairs the account and the instance
connects. What the simulator received is read from its control API.
"""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from api.models import ApiKey
from instances import hints
from instances.models import EventKind, Instance, PairState, Status
from tests.fixtures.engine import Engine
from tests.fixtures.platform import wait_until
from tests.fixtures.simulator import gateway_sim_args

PHONE = "+6281234567890"
# No pairing by the QR code in these tests: only a code pairs.
BY_CODE = gateway_sim_args("--auto-pair-after", "0", "--pair-code-delay", "1")
NO_FEATURE = gateway_sim_args("--auto-pair-after", "0", "--no-pair-code", "--v1")
ALL_FEATURES = ["check", "media", "pair_code", "presence"]


def _api(engine: Engine) -> APIClient:
    _, key = ApiKey.objects.create_key(engine.tenant, "owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def _awaiting_pairing(engine: Engine, name: str, features: list[str]) -> Instance:
    instance = engine.create(name)
    engine.wait_status(instance, Status.AWAITING_QR)
    wait_until(
        lambda: Instance.objects.get(pk=instance.pk).session_id != "",
        message=f"the hello of {name} written",
    )
    assert Instance.objects.get(pk=instance.pk).gateway_features == features
    return instance


def _pair_code(client: APIClient, instance: Instance) -> dict[str, Any]:
    response = client.get(f"/api/v1/instances/{instance.key}/pair-code")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@BY_CODE
def test_a_code_asked_through_the_api_pairs_the_phone_and_the_instance_connects(engine: Engine) -> None:
    client = _api(engine)
    instance = _awaiting_pairing(engine, "by-code", ALL_FEATURES)
    response = client.post(f"/api/v1/instances/{instance.key}/pair-code", {"phone": PHONE}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "requested"

    issued = wait_until(
        lambda: (body := _pair_code(client, instance))["state"] == "issued" and body,
        message="the pairing code visible in the API",
    )
    assert len(issued["code"]) == 8 and issued["phone"] == PHONE
    assert Instance.objects.get(pk=instance.pk).status == Status.AWAITING_QR

    instance = engine.wait_status(instance, Status.CONNECTED)
    assert (instance.paired, instance.account) == (True, PHONE)
    assert (instance.pair_state, instance.pair_code, instance.pair_phone) == (PairState.NONE, "", "")
    kinds = [e.kind for e in engine.events(instance)]
    requested = kinds.index(EventKind.PAIR_CODE_REQUESTED)
    assert kinds.index(EventKind.PAIR_CODE) > requested
    assert kinds.index(EventKind.PAIRED) > kinds.index(EventKind.PAIR_CODE)
    stats = engine.sim_stats(instance)
    assert (stats["pair_code_requests"], stats["pair_codes"]) == (1, 1)


@BY_CODE
def test_the_gateways_refusal_is_recorded_as_the_requests_failure(engine: Engine) -> None:
    client = _api(engine)
    instance = _awaiting_pairing(engine, "refused", ALL_FEATURES)
    engine.sim.control.set_fault("pair_code", instance=str(instance.key), message="try later", count=1)
    response = client.post(f"/api/v1/instances/{instance.key}/pair-code", {"phone": PHONE}, format="json")
    assert response.status_code == 202

    failed = wait_until(
        lambda: (body := _pair_code(client, instance))["state"] == "failed" and body,
        message="the refusal visible in the API",
    )
    assert failed["error"] == "pair_code_failed: try later"
    event = engine.wait_event(instance, EventKind.PAIR_CODE_FAILED)
    assert event.message == "pair_code_failed: try later"
    # A refusal is not a session failure: the QR code is still shown.
    assert engine.status(instance) == Status.AWAITING_QR
    assert engine.sim_stats(instance)["pair_codes"] == 0


@NO_FEATURE
def test_a_gateway_without_pair_code_is_refused_at_once_and_sent_nothing(engine: Engine) -> None:
    client = _api(engine)
    instance = _awaiting_pairing(engine, "v1-gateway", [])
    response = client.post(f"/api/v1/instances/{instance.key}/pair-code", {"phone": PHONE}, format="json")
    assert response.status_code == 409
    assert "did not announce pairing by phone number" in response.json()["detail"]

    # A request already on the row (written before the gateway changed) is
    # refused by the worker's session: recorded, and no frame sent.
    Instance.objects.filter(pk=instance.pk).update(pair_phone=PHONE, pair_state=PairState.REQUESTED)
    hints.send([instance.pk])
    event = engine.wait_event(instance, EventKind.PAIR_CODE_FAILED)
    assert "did not announce pair_code" in event.message
    assert Instance.objects.get(pk=instance.pk).pair_state == PairState.FAILED
    assert engine.sim_stats(instance)["pair_code_requests"] == 0
    assert engine.status(instance) == Status.AWAITING_QR

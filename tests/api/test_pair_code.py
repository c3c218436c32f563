"""POST/GET /api/v1/instances/{id}/pair-code: asking for a pairing code.

The request is written to the row for the instance's worker (and audited);
these tests read what the API answers and what it wrote. The worker and the
gateway's side are tests/instances/test_pair_code.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from instances.models import ConnectionEvent, DesiredState, EventKind, Instance, PairState, Status
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

PHONE = "+6281234567890"


def _awaiting_pairing(instance: Instance, features: list[str] | None = None) -> None:
    Instance.objects.filter(pk=instance.pk).update(
        desired_state=DesiredState.RUNNING,
        status=Status.AWAITING_QR,
        qr_code="2@code",
        gateway_features=["pair_code"] if features is None else features,
    )


def _post(client: Any, instance: Instance, body: Any) -> Any:
    return client.post(f"/api/v1/instances/{instance.key}/pair-code", body, format="json")


def test_a_request_is_accepted_written_for_the_worker_and_audited(cast: Cast) -> None:
    _awaiting_pairing(cast.instance_a)
    response = _post(cast.owner, cast.instance_a, {"phone": PHONE})
    assert response.status_code == 202, response.content
    assert response.json() == {
        "instance": str(cast.instance_a.key),
        "phone": PHONE,
        "state": "requested",
        "code": "",
        "error": "",
    }
    row = Instance.objects.get(pk=cast.instance_a.pk)
    assert (row.pair_phone, row.pair_state) == (PHONE, PairState.REQUESTED)
    event = ConnectionEvent.objects.get(instance=cast.instance_a, kind=EventKind.PAIR_CODE_REQUESTED)
    assert event.actor == f"api-key:{cast.api_key_a.pk}:owner"
    assert event.data == {"phone": PHONE}


def test_the_code_is_read_back_once_issued(cast: Cast) -> None:
    _awaiting_pairing(cast.instance_a)
    Instance.objects.filter(pk=cast.instance_a.pk).update(
        pair_phone=PHONE, pair_state=PairState.ISSUED, pair_code="K7PQ2M9X"
    )
    response = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/pair-code")
    assert response.status_code == 200
    assert response.json()["state"] == "issued"
    assert response.json()["code"] == "K7PQ2M9X"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"phone": "081234567890"}, "E.164"),
        ({"phone": "+62 812 3456 7890"}, "E.164"),
        ({"phone": "+15551234567"}, "not a valid phone number"),
        ({"phone": 6281234567890}, "Not a valid string"),
        ({"phone": ""}, "may not be blank"),
        ({}, "required"),
    ],
    ids=["national", "spaces", "invalid-number", "number", "blank", "missing"],
)
def test_a_bad_phone_is_a_field_error_and_writes_nothing(cast: Cast, body: dict[str, Any], message: str) -> None:
    _awaiting_pairing(cast.instance_a)
    response = _post(cast.owner, cast.instance_a, body)
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()["phone"])
    assert Instance.objects.get(pk=cast.instance_a.pk).pair_state == PairState.NONE
    assert not ConnectionEvent.objects.filter(instance=cast.instance_a).exists()


def test_an_unknown_field_is_refused_by_name(cast: Cast) -> None:
    _awaiting_pairing(cast.instance_a)
    response = _post(cast.owner, cast.instance_a, {"phone": PHONE, "code": "ABCD1234"})
    assert response.status_code == 400
    assert response.json() == {"code": ["Unknown field."]}


@pytest.mark.parametrize("status", [Status.CONNECTED, Status.CONNECTING, Status.BACKING_OFF, Status.IDLE])
def test_an_instance_not_awaiting_pairing_is_409(cast: Cast, status: str) -> None:
    _awaiting_pairing(cast.instance_a)
    Instance.objects.filter(pk=cast.instance_a.pk).update(status=status)
    response = _post(cast.owner, cast.instance_a, {"phone": PHONE})
    assert response.status_code == 409
    assert "not awaiting pairing" in response.json()["detail"]
    assert Instance.objects.get(pk=cast.instance_a.pk).pair_state == PairState.NONE


@pytest.mark.parametrize("features", [[], ["media"]], ids=["v1-gateway", "other-feature"])
def test_a_gateway_that_did_not_announce_pair_code_is_409_at_once(cast: Cast, features: list[str]) -> None:
    _awaiting_pairing(cast.instance_a, features)
    response = _post(cast.owner, cast.instance_a, {"phone": PHONE})
    assert response.status_code == 409
    assert "did not announce pairing by phone number" in response.json()["detail"]
    assert not ConnectionEvent.objects.filter(instance=cast.instance_a).exists()


def test_a_second_request_within_the_interval_is_429(cast: Cast, settings: Any) -> None:
    settings.BLAST_MANUAL_ACTION_INTERVAL_S = 30.0
    _awaiting_pairing(cast.instance_a)
    assert _post(cast.owner, cast.instance_a, {"phone": PHONE}).status_code == 202
    again = _post(cast.owner, cast.instance_a, {"phone": PHONE})
    assert again.status_code == 429
    assert 1 <= int(again["Retry-After"]) <= 30


def test_a_refused_request_does_not_use_the_slot(cast: Cast, settings: Any) -> None:
    settings.BLAST_MANUAL_ACTION_INTERVAL_S = 30.0
    _awaiting_pairing(cast.instance_a, [])
    assert _post(cast.owner, cast.instance_a, {"phone": PHONE}).status_code == 409
    _awaiting_pairing(cast.instance_a)
    assert _post(cast.owner, cast.instance_a, {"phone": PHONE}).status_code == 202


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_tenants_instance_is_404_and_untouched(cast: Cast, method: str) -> None:
    _awaiting_pairing(cast.instance_a)
    url = f"/api/v1/instances/{cast.instance_a.key}/pair-code"
    response = getattr(cast.outsider, method)(url, {"phone": PHONE}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "No instance with this id."}
    assert Instance.objects.get(pk=cast.instance_a.pk).pair_state == PairState.NONE
    assert not ConnectionEvent.objects.filter(instance=cast.instance_a).exists()


def test_the_schema_describes_the_request_and_its_answers(client: Any) -> None:
    schema = yaml.safe_load(client.get("/api/schema/").content)
    operation = schema["paths"]["/api/v1/instances/{id}/pair-code"]["post"]
    assert operation["operationId"] == "instances_pair_code"
    assert set(operation["responses"]) >= {"202", "400", "404", "409", "429"}
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][body]["required"] == ["phone"]
    answer = schema["components"]["schemas"]["PairCode"]
    assert set(answer["properties"]) == {"instance", "phone", "state", "code", "error"}
    assert "get" in schema["paths"]["/api/v1/instances/{id}/pair-code"]

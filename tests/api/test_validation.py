"""Bad input: field-level 400s, 413 for oversized bodies, 415 for non-JSON, JSON 404/405."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from instances.models import Instance
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db


def _create(cast: Cast, body: object):
    return cast.owner.post("/api/v1/instances", body, format="json")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"gateway": "GW"}, "name", "This field is required."),
        ({"name": "", "gateway": "GW"}, "name", "This field may not be blank."),
        ({"name": "   ", "gateway": "GW"}, "name", "This field may not be blank."),
        ({"name": "x" * 101, "gateway": "GW"}, "name", "Ensure this field has no more than 100 characters."),
        ({"name": "bad\x00name", "gateway": "GW"}, "name", "Null characters are not allowed."),
        ({"name": "bad\nname", "gateway": "GW"}, "name", "The name may not contain control or invisible characters."),
        (
            {"name": "bad\u200bname", "gateway": "GW"},
            "name",
            "The name may not contain control or invisible characters.",
        ),
        ({"name": 12, "gateway": "GW"}, "name", "Not a valid string."),
        ({"name": ["a"], "gateway": "GW"}, "name", "Not a valid string."),
        ({"name": "ok"}, "gateway", "This field is required."),
        ({"name": "ok", "gateway": "abc"}, "gateway", "A gateway id is a positive whole number."),
        ({"name": "ok", "gateway": True}, "gateway", "A gateway id is a positive whole number."),
        ({"name": "ok", "gateway": 1.5}, "gateway", "A gateway id is a positive whole number."),
        ({"name": "ok", "gateway": {"id": 1}}, "gateway", "A gateway id is a positive whole number."),
        ({"name": "ok", "gateway": None}, "gateway", "This field may not be null."),
    ],
)
def test_create_refuses_bad_fields_one_message_per_field(cast: Cast, body: dict, field: str, message: str) -> None:
    body = {k: cast.gateway.pk if v == "GW" else v for k, v in body.items()}
    response = _create(cast, body)
    assert response.status_code == 400, response.content
    assert message in response.json()[field]
    assert Instance.objects.count() == 3


def test_an_unknown_gateway_is_a_400_on_the_gateway_field(cast: Cast) -> None:
    for gateway_id in [999_999, 0, -1, 2**70]:
        response = _create(cast, {"name": "ok", "gateway": gateway_id})
        assert response.status_code == 400, (gateway_id, response.content)
        assert "Unknown gateway id" in response.json()["gateway"][0]


def test_a_disabled_gateway_is_refused(cast: Cast) -> None:
    response = _create(cast, {"name": "ok", "gateway": cast.disabled_gateway.pk})
    assert response.status_code == 400
    assert response.json()["gateway"] == [
        f"Gateway {cast.disabled_gateway.pk} is disabled: choose another from GET /api/v1/gateways."
    ]


def test_a_duplicate_name_is_a_400_on_the_name_field(cast: Cast) -> None:
    response = _create(cast, {"name": "sales", "gateway": cast.gateway.pk})
    assert response.status_code == 400
    assert response.json() == {"name": ["You already have an instance with this name."]}


def test_a_rename_onto_another_instances_name_is_a_400(cast: Cast) -> None:
    response = cast.owner.patch(f"/api/v1/instances/{cast.instance_a.key}", {"name": "support"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["You already have an instance with this name."]}
    # Renaming to its own name is fine.
    response = cast.owner.patch(f"/api/v1/instances/{cast.instance_a.key}", {"name": "sales"}, format="json")
    assert response.status_code == 200


def test_unknown_and_read_only_fields_are_refused_by_name(cast: Cast) -> None:
    response = _create(cast, {"name": "ok", "gateway": cast.gateway.pk, "status": "connected", "colour": "red"})
    assert response.status_code == 400
    assert response.json() == {"status": ["This field is read-only."], "colour": ["Unknown field."]}
    response = cast.owner.patch(
        f"/api/v1/instances/{cast.instance_a.key}", {"gateway": cast.other_gateway.pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"gateway": ["This field is read-only."]}


@pytest.mark.parametrize("body", [[], "name", 42, None])
def test_a_body_that_is_not_an_object_is_a_400(cast: Cast, body: object) -> None:
    response = cast.owner.post("/api/v1/instances", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.json()


@pytest.mark.parametrize("raw", [b"{", b"{'name': 1}", b"\xff\xfe", b'{"name": NaN}', b"[" * 100_000])
def test_malformed_json_is_a_400(cast: Cast, raw: bytes) -> None:
    response = cast.owner.generic("POST", "/api/v1/instances", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("JSON parse error")


def test_a_body_that_is_not_json_is_a_415(cast: Cast) -> None:
    response = cast.owner.post(
        "/api/v1/instances", "name=x&gateway=1", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert response.json()["detail"]


def test_an_oversized_body_is_a_413_json(cast: Cast, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = json.dumps({"name": "x" * 4000, "gateway": cast.gateway.pk})
    response = cast.owner.post("/api/v1/instances", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 2048 bytes."}


def test_an_oversized_body_without_content_length_is_a_413(cast: Cast, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = json.dumps({"name": "x" * 4000, "gateway": cast.gateway.pk}).encode()
    response = cast.owner.generic("POST", "/api/v1/instances", body, content_type="application/json", CONTENT_LENGTH="")
    # Without a length DRF reads no body at all: a 400 for the missing fields, never a 500.
    assert response.status_code in {400, 413}
    assert response.json()


def test_an_invalid_status_filter_is_a_400(cast: Cast) -> None:
    response = cast.owner.get("/api/v1/instances?status=sleeping")
    assert response.status_code == 400
    assert response.json() == {"status": ['"sleeping" is not a valid choice.']}


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nothing", "/api/v1/instances/", "/api/v2/instances", "/api/", "/api/v1/instances/x/y/z"],
)
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_route_is_a_json_404(cast: Cast, path: str, method: str) -> None:
    response = getattr(cast.owner, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("No such API endpoint.")


@pytest.mark.parametrize("path", ["/api/v1/messages/", "/api/v1/nothing"])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unknown_route_is_a_json_404_even_where_django_would_want_a_csrf_token(
    cast: Cast, path: str, method: str
) -> None:
    """A client as curl is (no CSRF cookie or token, an API key) mistyping a
    path: Django's CSRF check would answer an HTML 403 before the route."""
    client = Client(enforce_csrf_checks=True)
    response = getattr(client, method)(
        path, data="{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {cast.key_a}"
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("No such API endpoint.")


def test_a_trailing_slash_gets_a_hint(cast: Cast) -> None:
    response = cast.owner.get("/api/v1/instances/")
    assert response.json()["detail"].endswith("try /api/v1/instances")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/instances"),
        ("put", "/api/v1/instances/{id}"),
        ("get", "/api/v1/instances/{id}/connect"),
        ("delete", "/api/v1/instances/{id}/force-retry"),
        ("post", "/api/v1/instances/{id}/circuit-breaker"),
        ("post", "/api/v1/health"),
        ("post", "/api/v1/gateways"),
        ("get", "/force-retry/{id}"),
    ],
)
def test_a_wrong_method_is_a_json_405(cast: Cast, method: str, path: str) -> None:
    response = getattr(cast.owner, method)(path.format(id=cast.instance_a.key))
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "not allowed" in response.json()["detail"]

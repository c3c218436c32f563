"""The pairing QR endpoint, the seed endpoints' answers, the schema and the docs page."""

from __future__ import annotations

import base64

import pytest
import yaml

from instances.models import Instance, Status
from tests.fixtures.cast import Cast

pytestmark = pytest.mark.django_db

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _awaiting(cast: Cast, code: str = "2@AbCdEf,ghIJ==,12345") -> Instance:
    Instance.objects.filter(pk=cast.instance_a.pk).update(
        desired_state="running", status=Status.AWAITING_QR, qr_code=code
    )
    return cast.instance_a


def test_qr_answers_the_code_and_a_png_data_uri(cast: Cast) -> None:
    instance = _awaiting(cast)
    response = cast.owner.get(f"/api/v1/instances/{instance.key}/qr")
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == "2@AbCdEf,ghIJ==,12345"
    assert body["instance"] == str(instance.key)
    prefix = "data:image/png;base64,"
    assert body["image"].startswith(prefix)
    assert base64.b64decode(body["image"][len(prefix) :]).startswith(PNG_MAGIC)


def test_qr_answers_the_png_itself_with_format_png(cast: Cast) -> None:
    instance = _awaiting(cast)
    response = cast.owner.get(f"/api/v1/instances/{instance.key}/qr?format=png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)


def test_qr_answers_an_svg_with_format_svg(cast: Cast) -> None:
    instance = _awaiting(cast)
    response = cast.owner.get(f"/api/v1/instances/{instance.key}/qr?format=svg")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in response.content


@pytest.mark.parametrize("query", ["", "?format=png", "?format=svg"])
def test_qr_is_a_json_404_when_not_awaiting_a_scan(cast: Cast, query: str) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(status=Status.CONNECTED, qr_code="stale")
    response = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/qr{query}")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The instance is not awaiting a QR scan: there is no pairing code to show."}


def test_the_seed_breaker_status_answers_like_the_api(cast: Cast) -> None:
    seed = cast.client(None).get(f"/circuit-breaker-status/{cast.instance_a.key}?access_token={cast.key_a}")
    api = cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}/circuit-breaker")
    assert seed.status_code == api.status_code == 200
    assert seed.json() == api.json()


def test_the_seed_force_retry_and_reset_answer_the_instance(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(desired_state="running")
    client = cast.client(None)
    retried = client.post(f"/force-retry/{cast.instance_a.key}?access_token={cast.key_a}")
    reset = client.post(f"/reset-circuit-breaker/{cast.instance_a.key}?access_token={cast.key_a}")
    assert retried.status_code == reset.status_code == 200
    assert retried.json()["id"] == reset.json()["id"] == str(cast.instance_a.key)


def test_a_malformed_id_on_a_seed_endpoint_is_a_json_404(cast: Cast) -> None:
    response = cast.client(None).get(f"/circuit-breaker-status/not-a-uuid?access_token={cast.key_a}")
    assert response.status_code == 404
    assert response.json() == {"detail": "No instance with this id."}


def test_the_schema_is_openapi_3_and_documents_every_path(client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) >= {
        "/api/v1/gateways",
        "/api/v1/instances",
        "/api/v1/instances/{id}",
        "/api/v1/instances/{id}/connect",
        "/api/v1/instances/{id}/disconnect",
        "/api/v1/instances/{id}/circuit-breaker",
        "/api/v1/instances/{id}/force-retry",
        "/api/v1/instances/{id}/reset-circuit-breaker",
        "/api/v1/instances/{id}/qr",
        "/api/v1/instances/{id}/events",
        "/api/v1/health",
        "/circuit-breaker-status/{instance_id}",
        "/force-retry/{instance_id}",
        "/reset-circuit-breaker/{instance_id}",
    }
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant API key: `Authorization: Bearer blast_<prefix>_<secret>`.",
    }


def test_the_docs_page_loads_its_assets_from_this_host(client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
    assert "/static/drf_spectacular_sidecar/" in html


def test_the_redoc_page_loads_its_assets_from_this_host(client) -> None:
    html = client.get("/api/redoc/").content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn." not in html

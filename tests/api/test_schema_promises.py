"""What the OpenAPI schema promises, the API does, and the other way round:
inputs are taken exactly as the schema types them (no number read from a
string, no date read as a date-time), parameters that the schema bounds with
an enum refuse anything else, errors are JSON wherever they are documented,
and rules the API enforces on the shape of a body are in the schema."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from campaigns.models import Campaign, ContactList
from instances.models import Instance, Status
from tests.fixtures.cast import Cast

pytestmark = [pytest.mark.django_db, pytest.mark.urls("blast.urls")]


@pytest.fixture
def components(client: Any) -> dict[str, Any]:
    return dict(client.get("/api/schema/?format=json").json()["components"]["schemas"])


@pytest.fixture
def paths(client: Any) -> dict[str, Any]:
    return dict(client.get("/api/schema/?format=json").json()["paths"])


# --- values the schema does not admit are refused -----------------------------------


def other_forms(key: uuid.UUID) -> list[Any]:
    """``key`` as uuid.UUID reads it too, but not in the schema's canonical form."""
    return [key.hex, "{" + str(key) + "}", key.urn, key.int]


def test_a_delay_is_a_number_not_a_string(cast: Cast) -> None:
    response = cast.owner.post("/api/v1/campaigns", {"name": "spring", "send_delay_min_s": "1"}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["send_delay_min_s"]
    assert not Campaign.objects.exists()


def test_a_start_time_is_an_rfc_3339_date_time(cast: Cast) -> None:
    for start_at in ("2030-01-01", "2030-01-01T09:00:00", "2030-01-01 09:00:00Z"):
        response = cast.owner.post("/api/v1/campaigns", {"name": "spring", "start_at": start_at}, format="json")
        assert response.status_code == 400 and list(response.json()) == ["start_at"], start_at
    assert not Campaign.objects.exists()
    for start_at in ("2030-01-01T09:00:00.5+02:00", "2030-01-01t07:00:00.5z"):
        response = cast.owner.post("/api/v1/campaigns", {"name": "spring", "start_at": start_at}, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["start_at"] == "2030-01-01T07:00:00.500000Z"


def test_ids_in_the_body_are_written_in_their_canonical_form(cast: Cast) -> None:
    contact_list = ContactList.objects.create(tenant=cast.tenant_a, name="customers")
    for form in other_forms(contact_list.key):
        response = cast.owner.post("/api/v1/campaigns", {"name": "spring", "contact_list": form}, format="json")
        assert response.status_code == 400 and list(response.json()) == ["contact_list"], (form, response.content)
    for form in other_forms(cast.instance_a.key):
        response = cast.owner.post("/api/v1/campaigns", {"name": "spring", "instances": [form]}, format="json")
        assert response.status_code == 400 and list(response.json()) == ["instances"], (form, response.content)
        message = {"instance": form, "to": "+5511999990001", "text": "hi"}
        response = cast.owner.post("/api/v1/messages/batch", {"messages": [message]}, format="json")
        assert response.status_code == 400 and list(response.json()["messages"][0]) == ["instance"], form
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_webhook_switches_are_true_or_false(cast: Cast, value: Any) -> None:
    body = {"name": "status", "url": "https://hooks.example.com/a", "message_events": value}
    response = cast.owner.post("/api/v1/webhooks", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["message_events"]


def test_a_gateway_id_is_a_number_not_a_string(cast: Cast) -> None:
    response = cast.owner.post("/api/v1/instances", {"name": "new", "gateway": str(cast.gateway.pk)}, format="json")
    assert response.status_code == 400
    assert response.json() == {"gateway": ["A gateway id is a positive whole number."]}


def test_an_expiry_is_a_date_time_with_its_offset(cast: Cast) -> None:
    message = {"instance": str(cast.instance_a.key), "to": "+5511999990001", "text": "hi"}
    response = cast.owner.post(
        "/api/v1/messages/batch", {"messages": [{**message, "expires_at": "2999-01-01T00:00:00"}]}, format="json"
    )
    assert response.status_code == 400, response.content
    assert list(response.json()["messages"][0]) == ["expires_at"]
    response = cast.owner.post(
        f"/api/v1/instances/{cast.instance_a.key}/messages",
        {"to": "+5511999990001", "text": "hi", "expires_at": "2999-01-01"},
        format="json",
    )
    assert response.status_code == 400 and list(response.json()) == ["expires_at"]


def test_an_instance_id_in_another_form_is_a_404(cast: Cast) -> None:
    assert cast.owner.get(f"/api/v1/instances/{cast.instance_a.key}").status_code == 200
    for form in other_forms(cast.instance_a.key)[:3]:
        assert cast.owner.get(f"/api/v1/instances/{form}").status_code == 404, form


# --- parameters with an enum --------------------------------------------------------


def test_an_empty_or_unknown_format_is_a_400_listing_the_formats(cast: Cast) -> None:
    Instance.objects.filter(pk=cast.instance_a.pk).update(status=Status.AWAITING_QR, qr_code="2@code")
    campaign = Campaign.objects.create(tenant=cast.tenant_a, name="spring")
    for url, formats in (
        (f"/api/v1/instances/{cast.instance_a.key}/qr", "json, png, svg"),
        (f"/api/v1/campaigns/{campaign.key}/report", "json, csv"),
    ):
        for wanted in ("", "xml"):
            response = cast.owner.get(f"{url}?format={wanted}")
            assert response.status_code == 400, (url, wanted, response.content)
            assert response["Content-Type"] == "application/json"
            assert response.json() == {"format": [f"'{wanted}' is not one of {formats}."]}
        assert cast.owner.get(f"{url}?format=json").status_code == 200


def test_an_empty_status_filter_is_a_400(cast: Cast) -> None:
    response = cast.owner.get("/api/v1/instances?status=")
    assert response.status_code == 400
    assert response.json() == {"status": ["This filter may not be blank."]}


@pytest.mark.parametrize("region", ["", "br", " BR"])
def test_an_upload_region_is_a_country_code_in_capitals(cast: Cast, region: str) -> None:
    contact_list = ContactList.objects.create(tenant=cast.tenant_a, name="customers")
    url = f"/api/v1/contact-lists/{contact_list.key}/upload?region={region}"
    response = cast.owner.generic("POST", url, "phone\n11999990001\n", content_type="text/csv")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["region"]
    ok = cast.owner.generic("POST", url.split("?")[0] + "?region=BR", "phone\n11999990001\n", content_type="text/csv")
    assert ok.status_code == 200 and ok.json()["created"] == 1


# --- the schema states the rules ------------------------------------------------------


def test_request_bodies_admit_no_other_keys(components: dict[str, Any]) -> None:
    for name in (
        "InstanceRequest",
        "PatchedInstanceUpdateRequest",
        "CampaignRequest",
        "PatchedCampaignRequest",
        "ContactListRequest",
        "ContactRequest",
        "MessageCreateRequest",
        "MessageBatchRequest",
        "MessageBatchItemRequest",
        "WebhookRequest",
        "OptOutRequest",
        "PairCodeRequestRequest",
    ):
        assert components[name]["additionalProperties"] is False, name


def test_the_schema_bounds_what_the_api_bounds(components: dict[str, Any]) -> None:
    batch = components["MessageBatchRequest"]["properties"]["messages"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    fields = components["ContactRequest"]["properties"]["fields"]
    assert fields["type"] == "object" and fields["maxProperties"] == 50
    assert components["InstanceRequest"]["properties"]["name"]["pattern"] == r"^[^\u0000]*$"
    hours = components["CampaignRequest"]["properties"]["allowed_hours"]
    window, days = hours["oneOf"]
    assert window["required"] == ["start", "end"] and window["additionalProperties"] is False
    assert "start" not in days["properties"] and days["additionalProperties"] is False
    assert window["properties"]["start"]["pattern"] == "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


def test_errors_are_documented_as_json_only(paths: dict[str, Any]) -> None:
    for path in ("/api/v1/instances/{id}/qr", "/api/v1/campaigns/{id}/report", "/api/v1/campaigns/{id}/report.csv"):
        responses = paths[path]["get"]["responses"]
        for code, response in responses.items():
            if code.startswith("4"):
                assert list(response["content"]) == ["application/json"], (path, code)
    assert "format" not in {p["name"] for p in paths["/api/v1/campaigns/{id}/report.csv"]["get"]["parameters"]}

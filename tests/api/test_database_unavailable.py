"""A database outage is a 503 with Retry-After, never a 500."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError

from api.exceptions import api_exception_handler


def test_the_handler_turns_a_database_error_into_503() -> None:
    response = api_exception_handler(OperationalError("server closed the connection"), {"request": None})
    assert response is not None
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "unavailable" in response.data["detail"]


@pytest.mark.django_db
def test_an_endpoint_answers_503_while_the_database_refuses(client) -> None:
    from tests.fixtures.cast import build_cast

    cast = build_cast()
    with mock.patch("instances.models.Instance.objects.filter", side_effect=OperationalError("too many clients")):
        response = client.get("/api/v1/instances", HTTP_AUTHORIZATION=f"Bearer {cast.key_a}")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("The service is briefly unavailable")

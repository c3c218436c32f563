"""The admin login: throttled by user name and address, with Django's full password rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client

from tests.monitoring.test_metrics import scrape, value

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def operator(settings: Any) -> Any:
    settings.BLAST_REDIS_PREFIX = f"blast-test-login-{uuid.uuid4().hex[:8]}"
    settings.BLAST_LOGIN_FAILURE_LIMIT = 3
    settings.BLAST_LOGIN_FAILURE_WINDOW_S = 900
    return get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)


def _login(username: str, password: str, address: str = "203.0.113.5") -> Any:
    return Client().post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_the_right_password_logs_in(operator: Any) -> None:
    response = _login("operator", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_a_wrong_password_is_refused_with_the_form(operator: Any) -> None:
    response = _login("operator", "wrong")
    assert response.status_code == 200
    assert b"Please enter the correct username and password" in response.content


def test_after_the_limit_the_right_password_is_refused_from_that_address(operator: Any) -> None:
    for _ in range(3):
        assert _login("operator", "wrong").status_code == 200
    refused = _login("operator", PASSWORD)
    assert refused.status_code == 429
    assert b"Too many failed logins" in refused.content
    assert 1 <= int(refused["Retry-After"]) <= 900
    assert "sessionid" not in refused.cookies


def test_the_operator_can_still_log_in_from_another_address(operator: Any) -> None:
    for _ in range(3):
        _login("operator", "wrong")
    assert _login("operator", PASSWORD, address="198.51.100.1").status_code == 302


def test_one_address_guessing_many_names_is_refused(operator: Any) -> None:
    for attempt in range(12):  # four times the limit, spread over names
        _login(f"guess-{attempt}", "wrong")
    assert _login("operator", PASSWORD).status_code == 429


def test_many_addresses_guessing_one_name_are_refused_for_that_name(operator: Any) -> None:
    for attempt in range(30):  # ten times the limit, from different addresses
        _login("operator", "wrong", address=f"198.51.100.{attempt + 10}")
    assert _login("operator", PASSWORD, address="192.0.2.200").status_code == 429
    get_user_model().objects.create_superuser("other", "o@example.com", PASSWORD)
    assert _login("other", PASSWORD, address="192.0.2.200").status_code == 302


def test_a_successful_login_clears_the_pair(operator: Any) -> None:
    for _ in range(2):
        _login("operator", "wrong")
    assert _login("operator", PASSWORD).status_code == 302
    for _ in range(2):
        assert _login("operator", "wrong").status_code == 200
    assert _login("operator", PASSWORD).status_code == 302


def test_failed_logins_are_counted_in_metrics(operator: Any) -> None:
    client = Client()
    before = scrape(client)
    for _ in range(4):
        _login("operator", "wrong")
    after = scrape(client)
    failures = value(after, "blast_auth_failures_total", door="admin") - value(
        before, "blast_auth_failures_total", door="admin"
    )
    refused = value(after, "blast_auth_throttled_total", door="admin") - value(
        before, "blast_auth_throttled_total", door="admin"
    )
    assert (failures, refused) == (3, 1)


@pytest.mark.parametrize("weak", ["password", "12345678901", "short", "operator123"])
def test_weak_passwords_are_refused(weak: str) -> None:
    user = get_user_model()(username="operator123", email="operator123@example.com")
    with pytest.raises(ValidationError):
        validate_password(weak, user)


def test_the_admin_refuses_a_weak_password_for_a_new_user(operator: Any) -> None:
    client = Client()
    client.force_login(operator)
    response = client.post(
        "/admin/auth/user/add/",
        {"username": "newstaff", "password1": "password", "password2": "password", "usable_password": "true"},
    )
    assert response.status_code == 200
    assert b"This password is too common" in response.content
    assert not get_user_model().objects.filter(username="newstaff").exists()

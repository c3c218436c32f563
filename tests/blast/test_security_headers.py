"""Security headers: CSP everywhere, HSTS and secure cookies when served over HTTPS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def _policy(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in header.split(";")) if part}


def test_every_page_has_a_content_security_policy_without_inline_scripts() -> None:
    response = Client().get("/admin/login/")
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_dashboard_script_carries_the_nonce_of_its_policy() -> None:
    staff = get_user_model().objects.create_superuser("ops", "ops@example.com", "a long operator password")
    client = Client()
    client.force_login(staff)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    nonces = [v for v in _policy(response)["script-src"] if v.startswith("'nonce-")]
    assert len(nonces) == 1
    nonce = nonces[0][len("'nonce-") : -1]
    scripts = re.findall(r"<script([^>]*)>", response.content.decode())
    inline = [attrs for attrs in scripts if "src=" not in attrs and 'type="application/json"' not in attrs]
    assert inline, "the dashboard has its inline script"
    assert all(f'nonce="{nonce}"' in attrs for attrs in inline)


def test_the_swagger_page_has_no_inline_script() -> None:
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    scripts = re.findall(r"<script([^>]*)>", response.content.decode())
    assert scripts and all("src=" in attrs for attrs in scripts)


def test_plain_http_sends_no_hsts_and_plain_cookies() -> None:
    response = Client().get("/admin/login/")
    assert "Strict-Transport-Security" not in response
    assert not response.cookies["csrftoken"]["secure"]


def _settings_with(**env: str) -> list[str]:
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, 'testserver' in s.ALLOWED_HOSTS)"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[-4:]


def test_https_turns_on_hsts_and_secure_cookies() -> None:
    assert _settings_with(BLAST_HTTPS="1") == ["31536000", "True", "True", "False"]
    assert _settings_with() == ["0", "False", "False", "False"]


def test_hsts_is_sent_on_secure_requests_when_https_is_on(settings: Any) -> None:
    settings.SECURE_HSTS_SECONDS = 31_536_000
    response = Client().get("/admin/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000"

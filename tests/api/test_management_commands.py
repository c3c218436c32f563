"""Operators' commands: create_tenant, create_api_key, add_gateway."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from api.models import ApiKey
from instances.models import Gateway, Tenant
from tests.fixtures.platform import ROOT, database_url

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_tenant_creates_and_says_so() -> None:
    out, _ = run("create_tenant", "acme", "--name", "Acme Corp")
    assert out == "Created tenant acme (Acme Corp).\n"
    assert Tenant.objects.get(slug="acme").name == "Acme Corp"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Slug", "--name", "x"], "Invalid slug 'Bad_Slug'"),
        (["-leading", "--name", "x"], None),  # argparse: an option, not a slug
        (["acme", "--name", "   "], "The name must be 1-200 characters."),
    ],
)
def test_create_tenant_refuses_bad_input(args: list[str], message: str | None) -> None:
    with pytest.raises((CommandError, SystemExit)) as info:
        run("create_tenant", *args)
    if message:
        assert message in str(info.value)
    assert not Tenant.objects.exists()


def test_create_tenant_refuses_a_duplicate_slug() -> None:
    run("create_tenant", "acme", "--name", "Acme")
    with pytest.raises(CommandError, match=re.escape("A tenant with slug 'acme' already exists.")):
        run("create_tenant", "acme", "--name", "Other")


def test_create_api_key_prints_the_key_alone_on_stdout_and_it_works() -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    out, err = run("create_api_key", "acme", "--name", "crm")
    lines = out.splitlines()
    assert len(lines) == 1
    raw = lines[0]
    assert raw.startswith("blast_")
    assert "not shown again" in err
    assert raw not in err
    key = ApiKey.objects.get(tenant=tenant, name="crm")
    assert key.matches(raw)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/health").status_code == 200


def test_create_api_key_refuses_an_unknown_tenant_and_a_duplicate_name() -> None:
    with pytest.raises(CommandError, match=re.escape("No tenant with slug 'nobody'.")):
        run("create_api_key", "nobody", "--name", "x")
    Tenant.objects.create(slug="acme", name="Acme")
    run("create_api_key", "acme", "--name", "crm")
    with pytest.raises(CommandError, match="already has an active API key named 'crm'"):
        run("create_api_key", "acme", "--name", "crm")
    with pytest.raises(CommandError, match="1-100 characters"):
        run("create_api_key", "acme", "--name", "x" * 101)


def test_add_gateway_adds_an_enabled_gateway() -> None:
    out, _ = run("add_gateway", "eu-1", "wss://gw.example.com:8443/blast")
    gateway = Gateway.objects.get(name="eu-1")
    assert out == f"Added gateway eu-1 (id {gateway.pk}): wss://gw.example.com:8443/blast\n"
    assert gateway.enabled


def test_add_gateway_can_add_it_disabled() -> None:
    out, _ = run("add_gateway", "eu-2", "ws://127.0.0.1:8765", "--disabled")
    assert out.endswith("(disabled)\n")
    assert not Gateway.objects.get(name="eu-2").enabled


@pytest.mark.parametrize(
    "url",
    ["http://gw.example.com", "ws://", "ws://gw.example.com/", "ws://gw.example.com?x=1", "ws://gw:99999", "gw"],
)
def test_add_gateway_refuses_a_bad_url(url: str) -> None:
    with pytest.raises(CommandError, match="Invalid gateway URL"):
        run("add_gateway", "bad", url)
    assert not Gateway.objects.exists()


def test_add_gateway_refuses_a_duplicate_name() -> None:
    run("add_gateway", "eu-1", "ws://127.0.0.1:8765")
    with pytest.raises(CommandError, match=re.escape("A gateway named 'eu-1' already exists.")):
        run("add_gateway", "eu-1", "ws://127.0.0.1:8766")


@pytest.mark.django_db(transaction=True)
def test_a_script_captures_the_key_from_the_real_command() -> None:
    """As an operator's script would: the key is stdout, whole; errors are one line, no traceback."""
    Tenant.objects.create(slug="acme", name="Acme")
    env = {**os.environ, "DATABASE_URL": database_url()}
    manage = [sys.executable, "manage.py"]
    made = subprocess.run(
        [*manage, "create_api_key", "acme", "--name", "ci"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip()
    assert ApiKey.objects.get(name="ci").matches(raw)

    refused = subprocess.run(
        [*manage, "create_tenant", "acme", "--name", "Again"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == "CommandError: A tenant with slug 'acme' already exists."
    assert "Traceback" not in refused.stderr

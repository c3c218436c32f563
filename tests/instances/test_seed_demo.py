"""``manage.py seed_demo`` (what ``make run`` seeds): the admin's password is
kept across runs, and the report counts the instances there are."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from instances.models import Instance, Tenant

pytestmark = pytest.mark.django_db


def seed(monkeypatch: pytest.MonkeyPatch, password: str | None = None) -> str:
    if password is None:
        monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("DEMO_ADMIN_PASSWORD", password)
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture
def run_dir(settings: Any, tmp_path: Path) -> Path:
    settings.RUN_DIR = tmp_path
    return tmp_path


def test_the_first_password_is_printed_kept_and_still_works_after_a_second_run(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = seed(monkeypatch)
    kept = run_dir / "admin-password"
    password = kept.read_text().strip()
    assert f"password {password!r}" in first and str(kept) in first
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    second = seed(monkeypatch)
    assert "password unchanged" in second and password not in second
    assert authenticate(username="admin", password=password) is not None


def test_demo_admin_password_sets_it(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(monkeypatch)
    out = seed(monkeypatch, password="chosen-by-the-operator")
    assert "DEMO_ADMIN_PASSWORD" in out and "chosen-by-the-operator" not in out
    assert authenticate(username="admin", password="chosen-by-the-operator") is not None


def test_the_report_counts_the_instances_there_are(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "(4 instances, 4 new;" in seed(monkeypatch)
    tenant = Tenant.objects.get(slug="demo")
    Instance.objects.filter(tenant=tenant, name="support").delete()
    Instance.objects.create(tenant=tenant, name="extra", gateway=Instance.objects.filter(tenant=tenant)[0].gateway)
    assert "(5 instances, 1 new;" in seed(monkeypatch)

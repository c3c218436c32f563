"""Demo data for `make run`: an admin, a tenant and instances on the local simulator.

The admin's password is kept: ``DEMO_ADMIN_PASSWORD`` sets it; otherwise the
first run generates one, prints it and keeps it in ``.run/admin-password``
(``BLAST_RUN_DIR``), and every later run uses that one again and says where
it is, so a password an operator wrote down keeps working.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from instances.models import DesiredState, Gateway, Instance, Tenant

DEMO_INSTANCES = ["sales-1", "sales-2", "support", "marketing"]


class Command(BaseCommand):
    help = "Create (or refresh) the demo admin user, tenant, gateway and instances."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--gateway-url", default=f"ws://127.0.0.1:{os.environ.get('GATEWAY_PORT', '8765')}")
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, gateway_url: str, username: str, **options: Any) -> None:
        password, told = admin_password()
        with transaction.atomic():
            user_model = get_user_model()
            user, _ = user_model.objects.get_or_create(
                username=username, defaults={"is_staff": True, "is_superuser": True}
            )
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()

            gateway, _ = Gateway.objects.update_or_create(
                name="local-simulator", defaults={"url": gateway_url, "enabled": True}
            )
            tenant, _ = Tenant.objects.get_or_create(slug="demo", defaults={"name": "Demo Tenant"})
            created = 0
            for name in DEMO_INSTANCES:
                _, new = Instance.objects.get_or_create(
                    tenant=tenant,
                    name=name,
                    defaults={"gateway": gateway, "desired_state": DesiredState.RUNNING},
                )
                created += new
            held = Instance.objects.filter(tenant=tenant).count()

        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  tenant:    {tenant.slug} ({held} instances, {created} new; demo gateway {gateway.url})")
        self.stdout.write(f"  admin:     username {username!r}, {told}")


def admin_password() -> tuple[str, str]:
    """The demo admin's password, and what to print about it."""
    given = os.environ.get("DEMO_ADMIN_PASSWORD")
    if given:
        return given, "password from DEMO_ADMIN_PASSWORD"
    kept = Path(settings.RUN_DIR) / "admin-password"
    if kept.is_file() and kept.read_text().strip():
        return kept.read_text().strip(), f"password unchanged (kept in {kept})"
    password = secrets.token_urlsafe(9)
    kept.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password, f"password {password!r} (kept in {kept}; DEMO_ADMIN_PASSWORD sets another)"

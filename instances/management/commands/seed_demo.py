"""Demo data for `make run`: an admin, a tenant and instances on the local simulator."""

from __future__ import annotations

import os
import secrets
from typing import Any

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
        password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
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
            for name in DEMO_INSTANCES:
                Instance.objects.get_or_create(
                    tenant=tenant,
                    name=name,
                    defaults={"gateway": gateway, "desired_state": DesiredState.RUNNING},
                )

        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  tenant:    {tenant.slug} ({len(DEMO_INSTANCES)} instances on {gateway.url})")
        self.stdout.write(f"  admin:     username {username!r}, password {password!r}")

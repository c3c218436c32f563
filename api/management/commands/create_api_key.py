"""``manage.py create_api_key SLUG --name NAME``: a new API key for a tenant.

The key is printed once, alone on its own line of standard output, so that
a script can capture it (``KEY=$(python manage.py create_api_key acme --name ci)``);
what else the command says goes to standard error. It is never shown again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiKey
from instances.models import Tenant


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it once, alone on its own line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the tenant's slug")
        parser.add_argument("--name", required=True, help="what the key is for, unique among the tenant's keys")

    def handle(self, *args: Any, slug: str, name: str, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {slug!r}.")
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("The key name must be 1-100 characters.")
        if ApiKey.objects.active().filter(tenant=tenant, name=name).exists():
            raise CommandError(f"Tenant {slug!r} already has an active API key named {name!r}.")
        key, raw = ApiKey.objects.create_key(tenant, name, created_by="manage.py create_api_key")
        self.stderr.write(
            f"Created API key {key.name!r} ({key.display_prefix}) for tenant {tenant.slug}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(raw)

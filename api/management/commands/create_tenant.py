"""``manage.py create_tenant SLUG --name NAME``: a new tenant."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from instances.models import Tenant, slug_validator


class Command(BaseCommand):
    help = "Create a tenant. Prints 'Created tenant SLUG (NAME).'"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="1-63 lowercase letters, digits or hyphens; unique")
        parser.add_argument("--name", required=True, help="the tenant's display name")

    def handle(self, *args: Any, slug: str, name: str, **options: Any) -> None:
        try:
            slug_validator(slug)
        except ValidationError:
            raise CommandError(f"Invalid slug {slug!r}: use 1-63 lowercase letters, digits or hyphens.") from None
        name = name.strip()
        if not name or len(name) > 200:
            raise CommandError("The name must be 1-200 characters.")
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"A tenant with slug {slug!r} already exists.")
        tenant = Tenant.objects.create(slug=slug, name=name)
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.name}).")

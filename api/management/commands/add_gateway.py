"""``manage.py add_gateway NAME URL``: allow tenants to use a gateway."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from instances.models import Gateway, validate_gateway_url


class Command(BaseCommand):
    help = "Add a gateway to the list tenants choose from. Prints 'Added gateway NAME (id N): URL'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="unique name, shown to tenants")
        parser.add_argument("url", help="ws:// or wss:// host[:port][/prefix], no trailing slash")
        parser.add_argument("--disabled", action="store_true", help="add it disabled")

    def handle(self, *args: Any, name: str, url: str, disabled: bool, **options: Any) -> None:
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("The gateway name must be 1-100 characters.")
        if len(url) > 500:
            raise CommandError("The gateway URL must be at most 500 characters.")
        try:
            validate_gateway_url(url)
        except ValidationError as exc:
            raise CommandError(f"Invalid gateway URL {url!r}: {' '.join(exc.messages)}") from None
        if Gateway.objects.filter(name=name).exists():
            raise CommandError(f"A gateway named {name!r} already exists.")
        gateway = Gateway.objects.create(name=name, url=url, enabled=not disabled)
        state = " (disabled)" if disabled else ""
        self.stdout.write(f"Added gateway {gateway.name} (id {gateway.pk}): {gateway.url}{state}")

"""The cast of the API tests, built once per test.

Tenant A ("acme") has an owner key, a revoked key and two instances; tenant
B ("rival") has its own key and an instance, and must see nothing of A's.
Two gateways are allowed, a third is disabled. Rate-limit slots live under
a Redis prefix of the test's own, removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from rest_framework.test import APIClient

from api.models import ApiKey
from instances.models import Gateway, Instance, Tenant


@dataclass
class Cast:
    tenant_a: Tenant
    tenant_b: Tenant
    key_a: str
    key_b: str
    revoked_key_a: str
    api_key_a: ApiKey
    gateway: Gateway
    other_gateway: Gateway
    disabled_gateway: Gateway
    instance_a: Instance
    instance_a2: Instance
    instance_b: Instance

    def client(self, key: str | None) -> APIClient:
        client = APIClient()
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    @property
    def owner(self) -> APIClient:
        """Tenant A's owner key."""
        return self.client(self.key_a)

    @property
    def outsider(self) -> APIClient:
        """Tenant B's key: must see nothing of tenant A."""
        return self.client(self.key_b)


def build_cast() -> Cast:
    tenant_a = Tenant.objects.create(slug="acme", name="Acme")
    tenant_b = Tenant.objects.create(slug="rival", name="Rival")
    gateway = Gateway.objects.create(name="gw-main", url="ws://127.0.0.1:9")
    other_gateway = Gateway.objects.create(name="gw-backup", url="ws://127.0.0.1:10")
    disabled_gateway = Gateway.objects.create(name="gw-old", url="ws://127.0.0.1:11", enabled=False)
    api_key_a, key_a = ApiKey.objects.create_key(tenant_a, "owner")
    _, key_b = ApiKey.objects.create_key(tenant_b, "owner")
    revoked, revoked_key_a = ApiKey.objects.create_key(tenant_a, "old")
    revoked.revoke()
    instance_a = Instance.objects.create(tenant=tenant_a, name="sales", gateway=gateway)
    instance_a2 = Instance.objects.create(tenant=tenant_a, name="support", gateway=gateway)
    instance_b = Instance.objects.create(tenant=tenant_b, name="sales", gateway=gateway)
    return Cast(
        tenant_a=tenant_a,
        tenant_b=tenant_b,
        key_a=key_a,
        key_b=key_b,
        revoked_key_a=revoked_key_a,
        api_key_a=api_key_a,
        gateway=gateway,
        other_gateway=other_gateway,
        disabled_gateway=disabled_gateway,
        instance_a=instance_a,
        instance_a2=instance_a2,
        instance_b=instance_b,
    )


@pytest.fixture
def cast(db: Any) -> Cast:
    return build_cast()


@pytest.fixture(autouse=True)
def redis_prefix(settings: Any) -> Iterator[str]:
    """A Redis key prefix of this test's own (rate-limit slots), cleaned afterwards."""
    prefix = f"blast-test-api-{uuid.uuid4().hex[:8]}"
    settings.BLAST_REDIS_PREFIX = prefix
    url = settings.REDIS_URL  # a test may point the setting at a dead Redis
    yield prefix
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()

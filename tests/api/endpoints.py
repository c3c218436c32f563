"""Every endpoint of the tenant API and the seed's, for table-driven tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{id}": an instance's public id
    seed: bool = False  # the seed's endpoints also take ?access_token=

    def url(self, instance_id: object = "") -> str:
        return self.path.format(id=instance_id)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


INSTANCE_ENDPOINTS = [
    Endpoint("get", "/api/v1/instances/{id}"),
    Endpoint("patch", "/api/v1/instances/{id}"),
    Endpoint("delete", "/api/v1/instances/{id}"),
    Endpoint("post", "/api/v1/instances/{id}/connect"),
    Endpoint("post", "/api/v1/instances/{id}/disconnect"),
    Endpoint("get", "/api/v1/instances/{id}/circuit-breaker"),
    Endpoint("post", "/api/v1/instances/{id}/force-retry"),
    Endpoint("post", "/api/v1/instances/{id}/reset-circuit-breaker"),
    Endpoint("get", "/api/v1/instances/{id}/qr"),
    Endpoint("get", "/api/v1/instances/{id}/pair-code"),
    Endpoint("get", "/api/v1/instances/{id}/events"),
    Endpoint("get", "/circuit-breaker-status/{id}", seed=True),
    Endpoint("post", "/force-retry/{id}", seed=True),
    Endpoint("post", "/reset-circuit-breaker/{id}", seed=True),
]

COLLECTION_ENDPOINTS = [
    Endpoint("get", "/api/v1/gateways"),
    Endpoint("get", "/api/v1/instances"),
    Endpoint("post", "/api/v1/instances"),
    Endpoint("get", "/api/v1/health"),
]

ALL_ENDPOINTS = INSTANCE_ENDPOINTS + COLLECTION_ENDPOINTS
SEED_ENDPOINTS = [e for e in INSTANCE_ENDPOINTS if e.seed]

"""Fixtures of the API tests: the shared cast (tests.fixtures.cast), built
once per test, and rate-limit slots under a Redis prefix of the test's own,
removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.fixtures.cast import Cast, build_cast


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

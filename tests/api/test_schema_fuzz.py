"""A schemathesis fuzz run of the OpenAPI schema against the running API.

Every operation of ``/api/schema/`` is called with generated inputs through
the real WSGI application (middleware, DRF, database, Redis), as tenant A's
owner, and every response is checked: no 5xx, documented status codes and
content types, bodies that match the schema. Examples are bounded so that
the run fits CI. Path ids and gateway ids are sometimes swapped for real
ones so that the happy paths are fuzzed too, not only the 404s.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.models import ApiKey
from instances.models import Instance, Status
from tests.fixtures.cast import Cast

MAX_EXAMPLES = 20
# Fixed ids, so that the generated cases are reproducible from run to run.
REAL_INSTANCE = uuid.UUID("0b5e7c1e-5a1e-4f00-8000-00000000c0de")
AWAITING_INSTANCE = uuid.UUID("0b5e7c1e-5a1e-4f00-8000-00000000beef")
# What the running test's cast holds: the gateway id and tenant A's owner key.
CURRENT: dict[str, Any] = {}

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Now and then, an id that exists (one running, one awaiting its QR scan).

    Only in place of a well-formed id: a deliberately malformed one (negative
    testing) must stay malformed and be refused.
    """
    name = next((n for n in ("id", "instance_id") if n in (path_parameters or {})), None)
    if name is None or not _is_uuid(path_parameters[name]):
        return st.just(path_parameters)
    return st.sampled_from(
        [
            path_parameters,
            {**path_parameters, name: str(REAL_INSTANCE)},
            {**path_parameters, name: str(AWAITING_INSTANCE)},
        ]
    )


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """Now and then, a create naming a gateway that exists (only in place of a valid id)."""
    gateway = body.get("gateway") if isinstance(body, dict) else None
    if not isinstance(gateway, int) or isinstance(gateway, bool) or gateway < 1 or "gateway" not in CURRENT:
        return st.just(body)
    return st.sampled_from([body, {**body, "gateway": CURRENT["gateway"]}])


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@pytest.fixture
def in_test_transaction() -> Iterator[None]:
    """Keep Django from closing the test's connection at the end of each request.

    The WSGI handler closes old connections on request_started/finished,
    which would end the test's transaction; Django's own test client
    disconnects the same receiver for the same reason.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_cast(cast: Cast, in_test_transaction: None) -> Cast:
    CURRENT.update(key=cast.key_a, gateway=cast.gateway.pk)
    Instance.objects.filter(pk=cast.instance_a.pk).update(key=REAL_INSTANCE, desired_state="running")
    Instance.objects.filter(pk=cast.instance_a2.pk).update(
        key=AWAITING_INSTANCE, desired_state="running", status=Status.AWAITING_QR, qr_code="2@fuzz,code"
    )
    return cast


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
    database=None,  # no .hypothesis/ folder in the work tree
)
def test_the_api_honours_its_schema(case: Any, fuzz_cast: Cast) -> None:
    # A create with a schema-valid but unknown gateway id, or a name the
    # tenant already uses, is rightly a 400: no schema can say which ids
    # exist, so "positive data acceptance" does not apply to this API.
    _use_the_owner_key(case, fuzz_cast.key_a)
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def _use_the_owner_key(case: Any, key: str) -> None:
    """Swap a generated credential for the owner's key, keeping deliberately bad ones.

    schemathesis fills the security schemes with random values: a well-formed
    ``Bearer ...`` (or a non-empty ``access_token``) becomes the real key; a
    missing, empty or malformed credential (negative testing) is left as
    generated and must be answered 401.
    """
    headers = dict(case.headers or {})
    if str(headers.get("Authorization", "")).startswith("Bearer "):
        headers["Authorization"] = f"Bearer {key}"
        case.headers = headers
    query = dict(case.query or {})
    if isinstance(query.get("access_token"), str) and query["access_token"].strip():
        query["access_token"] = key
        case.query = query


def test_the_fuzzed_key_is_live(fuzz_cast: Cast) -> None:
    """Guards the run above: with a dead key everything would be a documented 401."""
    assert not ApiKey.objects.get(pk=fuzz_cast.api_key_a.pk).revoked

"""A schemathesis fuzz run of the OpenAPI schema against the running API.

Every operation of ``/api/schema/`` is called with generated inputs through
the real WSGI application (middleware, DRF, database, Redis), as tenant A's
owner, and every response goes through every check schemathesis has: no
5xx, documented status codes, content types and headers, bodies that match
the schema, schema-valid requests accepted and schema-violating ones
refused, 405s with a right ``Allow``, credentials enforced. A stateful run
then chains operations through the links schemathesis infers (create, read,
change, delete) and adds the checks that need a history: a deleted object
is gone, a created one can be read.

What a JSON schema cannot say, the schema's descriptions say, and
:func:`before_call` makes every *positive* (schema-valid) case honour it
before it is sent, as a careful client would: ids of objects that exist
(gateways, instances, contact lists), names the tenant does not use yet,
numbers that are valid phone numbers, an ``expires_at`` in the future, a
template in the template syntax, a CSV upload with a ``phone`` column.
Negative cases are sent as generated and must be refused.

Examples are bounded so that the file fits CI. A longer exploration, by
hand: ``BLAST_FUZZ_EXAMPLES=300 BLAST_FUZZ_SCENARIOS=300 BLAST_FUZZ_STEPS=20``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
import uuid
import zlib
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, load_all_checks

from api.models import ApiKey
from campaigns.models import Campaign, ContactList
from campaigns.templating import NAME
from instances.models import Gateway, Instance, SendingDefaults, Status
from tests.fixtures.cast import Cast
from tests.fixtures.files import serve_files

MAX_EXAMPLES = int(os.environ.get("BLAST_FUZZ_EXAMPLES", "30"))
STATEFUL_SCENARIOS = int(os.environ.get("BLAST_FUZZ_SCENARIOS", "40"))
STATEFUL_STEPS = int(os.environ.get("BLAST_FUZZ_STEPS", "10"))
# Fixed ids, so that the generated cases are reproducible from run to run.
REAL_INSTANCE = uuid.UUID("0b5e7c1e-5a1e-4f00-8000-00000000c0de")
AWAITING_INSTANCE = uuid.UUID("0b5e7c1e-5a1e-4f00-8000-00000000beef")
# What the running test's cast holds: the tenant, its owner key and the gateway id.
CURRENT: dict[str, Any] = {}
# Valid numbers (phonenumbers' metadata) for positive cases.
PHONES = ["+5511999990001", "+14155552671", "+6281234567890", "+33612345678", "+447911123456"]
CSV_UPLOAD = "phone,name,city\n+5511999990001,Ana,Rio\n+14155552671,Bo,\n"
# A PNG to the sniffer: what an upload of an image holds.
PNG_UPLOAD = b"\x89PNG\r\n\x1a\n" + bytes(200)
DELAY_MIN_S = float(django_settings.BLAST_CAMPAIGN_DELAY_MIN_S)
DELAY_MAX_S = float(django_settings.BLAST_CAMPAIGN_DELAY_MAX_S)

load_all_checks()
# Every check schemathesis registers (the class-based ones are run-level hooks, not response checks).
ALL_CHECKS = [check for check in CHECKS.get_all() if not isinstance(check, type)]

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

FUZZ_SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "derandomize": True,
    "database": None,  # no .hypothesis/ folder in the work tree
}


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


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# --- positive cases honour the rules the schema states in words ---------------------


def _unique(value: str, max_length: int) -> str:
    tag = f"-{uuid.uuid4().hex[:8]}"
    return value[: max_length - len(tag)] + tag


def _display_name(value: Any, max_length: int) -> str:
    """A name people read: no control or invisible characters, not blank."""
    text = "".join(
        ch for ch in str(value) if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    )
    return text if text.strip() else _unique("name", max_length)


def _free_name(model: type[Any], tenant_id: int, value: Any, max_length: int, exclude: Any = None) -> str:
    """``value`` as a display name that no other of the tenant's ``model`` has."""
    name = _display_name(value, max_length)
    taken = model.objects.filter(tenant_id=tenant_id, name=name.strip())
    if exclude is not None:
        taken = taken.exclude(key=exclude)
    return _unique(name.strip(), max_length) if taken.exists() else name


def _pick(choices: list[Any], seed: Any) -> Any:
    """One of ``choices``, the same for the same generated value (so that a
    replayed scenario sends what it sent the first time)."""
    return choices[zlib.crc32(repr(seed).encode()) % len(choices)]


def _phone(value: Any) -> str:
    return str(_pick(PHONES, value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value.strip() else "hello"


def _template(value: Any) -> str:
    """``value`` as plain text of the template syntax (its braces and bars escaped)."""
    text = str(value)
    for special in ("\\", "{", "}", "|"):
        text = text.replace(special, "\\" + special)
    return text if len(text) <= 20_000 else ""


def _future(value: Any) -> Any:
    if value is None:
        return None
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()


def _start_time(value: str) -> str | None:
    """``value`` when it is a time Python can hold before year 9999 (not a
    leap second, not before year 1 in UTC), else no start time."""
    try:
        moment = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    return value if moment.year < 9999 else None


def _path_uuid(case: Any, name: str = "id") -> uuid.UUID | None:
    raw = (case.path_parameters or {}).get(name)
    return uuid.UUID(str(raw)) if raw is not None and _is_uuid(raw) else None


def _instance_keys(tenant_id: int) -> list[str]:
    return [str(key) for key in Instance.objects.filter(tenant_id=tenant_id).values_list("key", flat=True)]


def _fix_instance(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "name" in body:
        body["name"] = _free_name(Instance, tenant_id, body["name"], 100, exclude=_path_uuid(case))
    if "gateway" in body:
        body["gateway"] = Gateway.objects.filter(enabled=True).order_by("id").values_list("id", flat=True).first()


def _fix_contact_list(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "name" in body:
        body["name"] = _free_name(ContactList, tenant_id, body["name"], 200, exclude=_path_uuid(case))


def _fix_campaign(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    stored = Campaign.objects.filter(tenant_id=tenant_id, key=_path_uuid(case)).first()
    if "name" in body:
        body["name"] = _display_name(body["name"], 200)
    if "template" in body:
        body["template"] = _template(body["template"])
    if body.get("contact_list") is not None:
        first = ContactList.objects.filter(tenant_id=tenant_id).values_list("key", flat=True).first()
        body["contact_list"] = str(first) if first is not None else None
    if "instances" in body:
        keys = _instance_keys(tenant_id)
        body["instances"] = keys[: len(body["instances"])]
    low = body.get("send_delay_min_s", stored.send_delay_min_s if stored else DELAY_MIN_S)
    high = body.get("send_delay_max_s", stored.send_delay_max_s if stored else DELAY_MAX_S)
    if low is not None and high is not None and low > high:
        body["send_delay_min_s"], body["send_delay_max_s"] = high, low
    if body.get("start_at") is not None:
        body["start_at"] = _start_time(body["start_at"])
    if body.get("media") is not None:
        body["media"] = None  # the tenant holds no media here


def _fix_contact(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "phone" in body:
        body["phone"] = _phone(body["phone"])
    if isinstance(body.get("fields"), dict):
        fields: dict[str, Any] = {}
        for index, (name, value) in enumerate(body["fields"].items()):
            key = str(name).strip().lower()
            if not NAME.match(key) or key == "phone":
                key = f"field_{index}"
            fields[key] = value if isinstance(value, str) and "\x00" not in value else "x"
        body["fields"] = fields


def _fix_opt_out(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "phone" in body:
        body["phone"] = _phone(body["phone"])


def _fix_message(item: dict[str, Any], tenant_id: int) -> None:
    if "to" in item:
        item["to"] = _phone(item["to"])
    if item.get("media") is not None:
        item["media"] = None  # the tenant holds no media here: a text message
    if "text" in item or item.get("media") is None:
        item["text"] = _text(item.get("text"))
    if "expires_at" in item:
        item["expires_at"] = _future(item["expires_at"])
    if "instance" in item:
        keys = _instance_keys(tenant_id)
        item["instance"] = _pick(keys, item["instance"]) if keys else item["instance"]
    if "idempotency_key" in item:
        item["idempotency_key"] = uuid.uuid4().hex


def _fix_single_message(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    _fix_message(body, tenant_id)
    headers = case.headers or {}
    if "Idempotency-Key" in headers:
        case.headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}


def _fix_batch(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    for item in body.get("messages") or []:
        if isinstance(item, dict):
            _fix_message(item, tenant_id)


def _fix_pair_code(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "phone" in body:
        body["phone"] = _phone(body["phone"])


def _fix_number_check(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if isinstance(body.get("phones"), list):
        body["phones"] = [_phone(phone) for phone in body["phones"]][:1000]


def _fix_media_by_url(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "url" in body:
        body["url"] = f"{CURRENT['files']}/file.png"


def _fix_webhook(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "name" in body:
        body["name"] = _display_name(body["name"], 100)
    if "url" in body:
        body["url"] = "https://hooks.example.com/blast"
    if body.get("instance") is not None:
        keys = _instance_keys(tenant_id)
        body["instance"] = keys[0] if keys else None


ZONES = ["UTC", "America/Sao_Paulo", "Europe/Berlin", "Asia/Kolkata"]


def _fix_hours(body: dict[str, Any], stored: Any) -> None:
    """The schema states them in words: an IANA time zone, each sending day
    once, and sending hours with both ends or neither, the end not the start."""
    if "send_timezone" in body and body["send_timezone"] != "":
        body["send_timezone"] = _pick(ZONES, body["send_timezone"])
    if isinstance(body.get("send_days"), list):
        body["send_days"] = list(dict.fromkeys(body["send_days"]))  # each day once
    start = body["send_hours_start"] if "send_hours_start" in body else getattr(stored, "send_hours_start", None)
    end = body["send_hours_end"] if "send_hours_end" in body else getattr(stored, "send_hours_end", None)
    if "send_hours_start" not in body and "send_hours_end" not in body:
        return
    if start is None or end is None:
        body["send_hours_start"] = body["send_hours_end"] = None
    elif str(start)[:8] == str(end)[:8]:
        body["send_hours_end"] = None
        body["send_hours_start"] = None


def _fix_delays(body: dict[str, Any], stored: Any, low_default: float, high_default: float) -> None:
    low = body.get("send_delay_min_s", getattr(stored, "send_delay_min_s", None))
    high = body.get("send_delay_max_s", getattr(stored, "send_delay_max_s", None))
    low, high = (low_default if low is None else low), (high_default if high is None else high)
    if low > high:  # the schema states it in words: the longest at least the shortest
        body["send_delay_min_s"], body["send_delay_max_s"] = high, low


def _fix_sending_policy(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    stored = Instance.objects.filter(tenant_id=tenant_id, key=_path_uuid(case)).first()
    _fix_delays(body, stored, 0.0, 0.0)
    _fix_hours(body, stored)


def _fix_sending_defaults(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    stored = SendingDefaults.objects.filter(tenant_id=tenant_id).first()
    platform = Instance()  # a blank default is the platform's
    _fix_delays(body, stored, platform.send_delay_min_s, platform.send_delay_max_s)
    _fix_hours(body, stored)


def _fix_auto_reply(case: Any, body: dict[str, Any], tenant_id: int) -> None:
    if "name" in body:
        body["name"] = _display_name(body["name"], 100)
    if "instance" in body:
        keys = _instance_keys(tenant_id)
        body["instance"] = _pick(keys, body["instance"]) if keys else body["instance"]
    if "pattern" in body:
        # Any text, as a literal: always a valid (regular) expression.
        body["pattern"] = re.escape(_display_name(body["pattern"], 100)[:200])
    if body.get("reply_media") is not None:
        body["reply_media"] = None  # the tenant holds no media here
    if "reply_text" in body or case.method.upper() == "POST":
        body["reply_text"] = _text(body.get("reply_text"))


FIXES: dict[tuple[str, str], Callable[[Any, dict[str, Any], int], None]] = {
    ("POST", "/api/v1/instances"): _fix_instance,
    ("PATCH", "/api/v1/instances/{id}"): _fix_instance,
    ("POST", "/api/v1/contact-lists"): _fix_contact_list,
    ("PATCH", "/api/v1/contact-lists/{id}"): _fix_contact_list,
    ("POST", "/api/v1/campaigns"): _fix_campaign,
    ("PATCH", "/api/v1/campaigns/{id}"): _fix_campaign,
    ("POST", "/api/v1/contact-lists/{id}/contacts"): _fix_contact,
    ("POST", "/api/v1/opt-outs"): _fix_opt_out,
    ("POST", "/api/v1/instances/{id}/messages"): _fix_single_message,
    ("POST", "/api/v1/messages/batch"): _fix_batch,
    ("POST", "/api/v1/instances/{id}/pair-code"): _fix_pair_code,
    ("POST", "/api/v1/instances/{id}/number-checks"): _fix_number_check,
    ("POST", "/api/v1/media"): _fix_media_by_url,
    ("POST", "/api/v1/webhooks"): _fix_webhook,
    ("PATCH", "/api/v1/webhooks/{id}"): _fix_webhook,
    ("PATCH", "/api/v1/instances/{id}/sending-policy"): _fix_sending_policy,
    ("PATCH", "/api/v1/sending-defaults"): _fix_sending_defaults,
    ("POST", "/api/v1/auto-replies"): _fix_auto_reply,
    ("PATCH", "/api/v1/auto-replies/{id}"): _fix_auto_reply,
}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """A positive case honours the rules the schema states in words (module docstring)."""
    tenant_id = CURRENT.get("tenant")
    meta = case.meta
    if tenant_id is None or meta is None or not meta.generation.mode.is_positive:
        return
    method, path = case.method.upper(), case.path
    if path == "/api/v1/media" and method == "POST" and isinstance(case.body, dict) and "file" in case.body:
        case.body = {**case.body, "file": PNG_UPLOAD}
        return
    if path == "/api/v1/contact-lists/{id}/upload" and method == "POST":
        if isinstance(case.body, dict):
            case.body = {**case.body, "file": CSV_UPLOAD}
        else:
            case.body = CSV_UPLOAD
        return
    fix = FIXES.get((method, path))
    if fix is not None and isinstance(case.body, dict):
        body = dict(case.body)
        fix(case, body, tenant_id)
        case.body = body


# --- the runs -------------------------------------------------------------------------


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


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    """Media fetched by URL come from here: every GET answers the PNG."""
    with serve_files({}, default=PNG_UPLOAD) as base:
        yield base


@pytest.fixture
def fuzz_cast(cast: Cast, in_test_transaction: None, file_server: str, settings: Any, tmp_path: Any) -> Iterator[Cast]:
    settings.BLAST_MEDIA_FETCH_PRIVATE = True  # the file server is on 127.0.0.1
    settings.STORAGES = {
        **settings.STORAGES,
        "media": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    CURRENT.update(key=cast.key_a, gateway=cast.gateway.pk, tenant=cast.tenant_a.pk, files=file_server)
    Instance.objects.filter(pk=cast.instance_a.pk).update(key=REAL_INSTANCE, desired_state="running")
    Instance.objects.filter(pk=cast.instance_a2.pk).update(
        key=AWAITING_INSTANCE, desired_state="running", status=Status.AWAITING_QR, qr_code="2@fuzz,code"
    )
    yield cast
    CURRENT.clear()


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, **FUZZ_SETTINGS)
def test_the_api_honours_its_schema(case: Any, fuzz_cast: Cast) -> None:
    _use_the_owner_key(case, fuzz_cast.key_a)
    case.call_and_validate(checks=_checks_for(case))


@pytest.mark.django_db
def test_chains_of_calls_honour_the_schema(fuzz_cast: Cast) -> None:
    """Create, read, change and delete in sequences, with every check."""
    key = fuzz_cast.key_a

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        """Each scenario starts from the cast alone: what it changed in the
        database (a savepoint) and in Redis (rate-limit slots) is undone
        after it, so that Hypothesis can replay it and get the same answers."""

        def setup(self) -> None:
            self.scenario = transaction.atomic()
            self.scenario.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self.scenario.__exit__(None, None, None)
            _forget_redis_state()

        def before_call(self, case: Any) -> None:
            _use_the_owner_key(case, key)

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(
                response, checks=_checks_for(case), transport_kwargs=kwargs or None, recorder=self.recorder
            )

    Workflow.run(
        settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS, **FUZZ_SETTINGS)
    )


# A media upload is a multipart form: its fields reach the server as text
# whatever JSON type a negative case gave them, so a "wrong type" there is
# not something the server can see, let alone refuse. Every other check runs.
MULTIPART_UNTYPED = {("POST", "/api/v1/media")}


def _checks_for(case: Any) -> list[Any]:
    multipart = str(getattr(case, "media_type", "") or "").startswith("multipart/")
    if multipart and (case.method.upper(), case.path) in MULTIPART_UNTYPED:
        return [check for check in ALL_CHECKS if check.__name__ != "negative_data_rejection"]
    return ALL_CHECKS


def _forget_redis_state() -> None:
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{django_settings.BLAST_REDIS_PREFIX}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


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


def test_every_check_runs() -> None:
    """Guards the runs above: the checks the schema's promises rest on are all in."""
    names = {check.__name__ for check in ALL_CHECKS}
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "positive_data_acceptance",
        "negative_data_rejection",
        "use_after_free",
        "ensure_resource_availability",
        "missing_required_header",
        "unsupported_method",
        "allow_header_conformance",
        "ignored_auth",
    } <= names


def test_the_fuzzed_key_is_live(fuzz_cast: Cast) -> None:
    """Guards the run above: with a dead key everything would be a documented 401."""
    assert not ApiKey.objects.get(pk=fuzz_cast.api_key_a.pk).revoked


def test_the_timezones_the_schema_lists_are_the_ones_accepted(fuzz_cast: Cast) -> None:
    """The schema's enum of timezone names is zoneinfo's list, exactly."""
    raw = schema.raw_schema["components"]["schemas"]
    assert set(raw["TimezoneEnum"]["enum"]) == zoneinfo.available_timezones()

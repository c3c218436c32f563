"""Operator and tenant commands on instances.

Each command writes its intent and its audit event to the database first,
in one transaction, and sends the hint second (after commit): a lost hint
delays the command until the next beat period, it never loses it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from instances import breaker as breakers
from instances import hints
from instances.breaker import BreakerPolicy
from instances.breaker_rows import breaker_fields, breaker_from_row
from instances.models import (
    PAIR_CODE_FEATURE,
    TERMINAL_STATUSES,
    CircuitBreaker,
    ConnectionEvent,
    DesiredState,
    EventKind,
    Instance,
    PairState,
    Status,
    validate_pairing_phone,
)


class CommandRefused(Exception):
    """The command does not apply to the instance in its current state."""


class InvalidPhone(ValueError):
    """A phone number the command cannot use; ``str()`` says why, for a person."""


def _hint_after_commit(instance_id: int) -> None:
    transaction.on_commit(lambda: hints.send([instance_id]))


def _locked(instance: Instance) -> Instance:
    return Instance.objects.select_for_update().get(pk=instance.pk)


# The terminal states a connect ends: the tenant stopped the instance, its
# phone unlinked it (a new pairing follows) or another session took it over
# (the tenant wants it back). Forbidden (the gateway refused the account, a
# ban) and halted (a fault such as a bad token) stay: a connect sets the
# desired state but makes no attempt; one attempt is a force retry, which is
# rate-limited and audited.
CONNECT_CLEARS = frozenset({Status.STOPPED, Status.LOGGED_OUT, Status.REPLACED})


def connect(instance: Instance, actor: str) -> Instance:
    """Desired state running; a stop, logout or replacement is cleared
    (:data:`CONNECT_CLEARS`), a forbidden or halted instance stays so."""
    now = timezone.now()
    with transaction.atomic():
        instance = _locked(instance)
        fields: dict[str, Any] = {"desired_state": DesiredState.RUNNING, "next_retry_at": now}
        if instance.status in CONNECT_CLEARS:
            fields.update(status=Status.IDLE, status_changed_at=now, retry_count=0)
        Instance.objects.filter(pk=instance.pk).update(**fields)
        ConnectionEvent.objects.create(instance=instance, kind=EventKind.CONNECT, actor=actor)
        _hint_after_commit(instance.pk)
    instance.refresh_from_db()
    return instance


def disconnect(instance: Instance, actor: str) -> Instance:
    """Desired state stopped; the owner closes the session."""
    with transaction.atomic():
        instance = _locked(instance)
        Instance.objects.filter(pk=instance.pk).update(
            desired_state=DesiredState.STOPPED, next_retry_at=None, force_retry=False
        )
        ConnectionEvent.objects.create(instance=instance, kind=EventKind.DISCONNECT_REQUESTED, actor=actor)
        _hint_after_commit(instance.pk)
    instance.refresh_from_db()
    return instance


def force_retry(instance: Instance, actor: str) -> Instance:
    """One attempt now, even while the breaker is open."""
    now = timezone.now()
    with transaction.atomic():
        instance = _locked(instance)
        if instance.desired_state != DesiredState.RUNNING:
            raise CommandRefused("The instance is stopped: connect it first.")
        fields: dict[str, Any] = {"force_retry": True, "next_retry_at": now}
        if instance.status in TERMINAL_STATUSES:
            fields.update(status=Status.IDLE, status_changed_at=now)
        Instance.objects.filter(pk=instance.pk).update(**fields)
        ConnectionEvent.objects.create(instance=instance, kind=EventKind.FORCE_RETRY, actor=actor)
        _hint_after_commit(instance.pk)
    instance.refresh_from_db()
    return instance


def reset_breaker(instance: Instance, actor: str) -> Instance:
    """Breaker closed and its window cleared; a waiting instance retries now."""
    now = timezone.now()
    with transaction.atomic():
        instance = _locked(instance)
        row, _ = CircuitBreaker.objects.get_or_create(instance=instance)
        before = breaker_from_row(row)
        after, _transition = breakers.reset(before)
        CircuitBreaker.objects.filter(pk=row.pk).update(**breaker_fields(after))
        fields: dict[str, Any] = {}
        if instance.status == Status.CIRCUIT_OPEN:
            fields.update(status=Status.BACKING_OFF, status_changed_at=now, next_retry_at=now, retry_count=0)
        if fields:
            Instance.objects.filter(pk=instance.pk).update(**fields)
        ConnectionEvent.objects.create(
            instance=instance,
            kind=EventKind.RESET_BREAKER,
            actor=actor,
            data={"from": str(before.state), "failures": len(before.failures)},
        )
        _hint_after_commit(instance.pk)
    instance.refresh_from_db()
    return instance


NOT_AWAITING_PAIRING = "The instance is not awaiting pairing: a pairing code is asked for while it shows a QR code."
NO_PAIR_CODE = (
    "The instance's gateway did not announce pairing by phone number (pair_code): pair it by scanning the QR code."
)


def check_pairing_phone(phone: object) -> str:
    """``phone`` if it is a valid E.164 number, else :class:`InvalidPhone`."""
    if not isinstance(phone, str):
        raise InvalidPhone("A phone number is a string, such as +6281234567890.")
    try:
        validate_pairing_phone(phone)
    except ValidationError as exc:
        raise InvalidPhone(" ".join(exc.messages)) from None
    return phone


def request_pair_code(instance: Instance, phone: str, actor: str) -> Instance:
    """Ask the gateway, through the instance's worker, for a code that pairs
    the account of ``phone`` (E.164) without scanning the QR code.

    Refused (:class:`CommandRefused`) unless the instance runs, awaits its QR
    scan and its gateway announced ``pair_code`` in its last ``hello``; a
    phone that is not a valid E.164 number is :class:`InvalidPhone`. The
    request replaces any earlier one; its owner sends it once and the code,
    or the gateway's refusal, lands on the row (``pair_state``).
    """
    check_pairing_phone(phone)
    with transaction.atomic():
        instance = _locked(instance)
        if instance.desired_state != DesiredState.RUNNING or instance.status != Status.AWAITING_QR:
            raise CommandRefused(NOT_AWAITING_PAIRING)
        if PAIR_CODE_FEATURE not in (instance.gateway_features or []):
            raise CommandRefused(NO_PAIR_CODE)
        Instance.objects.filter(pk=instance.pk).update(
            pair_phone=phone, pair_state=PairState.REQUESTED, pair_code="", pair_error=""
        )
        ConnectionEvent.objects.create(
            instance=instance, kind=EventKind.PAIR_CODE_REQUESTED, actor=actor, data={"phone": phone}
        )
        _hint_after_commit(instance.pk)
    instance.refresh_from_db()
    return instance


NOT_LINKED = "the instance's session is not ready: only a linked, connected account can be logged out"


def request_logout(instance: Instance, actor: str) -> Instance:
    """Unlink the instance's account: its worker sends the gateway ``logout``
    (PROTOCOL.md section 2; every version 1 gateway serves it), the gateway
    unpairs and closes with 4401, and the instance stops as ``logged_out``;
    the next connect shows a new QR code. Refused (:class:`CommandRefused`)
    unless the session is connected."""
    with transaction.atomic():
        instance = _locked(instance)
        if instance.desired_state != DesiredState.RUNNING or instance.status != Status.CONNECTED:
            raise CommandRefused(NOT_LINKED)
        Instance.objects.filter(pk=instance.pk).update(logout_requested=True)
        ConnectionEvent.objects.create(instance=instance, kind=EventKind.LOGOUT_REQUESTED, actor=actor)
        _hint_after_commit(instance.pk)
    instance.refresh_from_db()
    return instance


@dataclass(frozen=True)
class BreakerStatus:
    """An instance's breaker as the API, the seed endpoints and the admin
    show it: its saved state, the failures inside the window now, the policy
    it runs under, and the instance's retry schedule."""

    state: str
    failures_in_window: int
    threshold: int
    window_s: float
    cooldown_s: float
    opened_at: dt.datetime | None
    cooldown_until: dt.datetime | None
    trip_count: int
    next_retry_at: dt.datetime | None
    retry_count: int

    def summary(self) -> dict[str, Any]:
        """The part of an instance's JSON about its breaker (``circuit_breaker``)."""
        return {name: getattr(self, name) for name in SUMMARY_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """Every field (``GET .../circuit-breaker``)."""
        return dataclasses.asdict(self)


# The fields of BreakerStatus.summary, in the order the API shows them.
SUMMARY_FIELDS = ("state", "failures_in_window", "threshold", "opened_at", "cooldown_until", "trip_count")


def breaker_status(instance: Instance) -> BreakerStatus:
    """The :class:`BreakerStatus` of ``instance`` now. Its breaker row is the
    one loaded with ``select_related("breaker")`` when there is one (no
    query: a page of instances costs one query), else it is read."""
    policy = BreakerPolicy.from_settings()
    row: CircuitBreaker | None = getattr(instance, "breaker", None)  # None: no row yet, a closed breaker
    breaker = breaker_from_row(row)
    return BreakerStatus(
        state=str(breaker.state),
        failures_in_window=breakers.failures_in_window(breaker, timezone.now().timestamp(), policy),
        threshold=policy.threshold,
        window_s=policy.window_s,
        cooldown_s=policy.cooldown_s,
        opened_at=row.opened_at if row else None,
        cooldown_until=row.cooldown_until if row else None,
        trip_count=breaker.trip_count,
        next_retry_at=instance.next_retry_at,
        retry_count=instance.retry_count,
    )

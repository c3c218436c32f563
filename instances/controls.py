"""The manual controls, rate-limited per instance.

The REST API, the seed's endpoints and the admin all go through here, so a
force retry from a tenant's key and one from an operator share the same
per-instance slot. The commands themselves (audit event, intent, hint) are
``instances.commands``'; this module only adds the limit.

Force retry, reset breaker and a pairing-code request get one slot each per
``BLAST_MANUAL_ACTION_INTERVAL_S``; connect and disconnect one slot each per
``BLAST_SESSION_ACTION_INTERVAL_S``, so that connect/disconnect cycles
cannot open more than one gateway session per instance per interval. A
probe of a down gateway gets one slot per gateway per
``BLAST_MANUAL_ACTION_INTERVAL_S``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings

from instances import commands, outages, ratelimit
from instances.models import Gateway, Instance

FORCE_RETRY = "force-retry"
RESET_BREAKER = "reset-circuit-breaker"
CONNECT = "connect"
DISCONNECT = "disconnect"
PAIR_CODE = "pair-code"
LOGOUT = "logout"


def _limited(
    action: str,
    command: Callable[[Instance, str], Instance],
    instance: Instance,
    actor: str,
    interval_s: float | None = None,
) -> Instance:
    slot = ratelimit.claim(action, str(instance.key), interval_s)
    try:
        return command(instance, actor)
    except BaseException:
        # The action did not happen: do not make the next caller wait for it.
        if slot is not None:
            slot.release()
        raise


def force_retry(instance: Instance, actor: str) -> Instance:
    """``commands.force_retry`` once per instance per interval.

    Raises ``RateLimited``, ``LimiterUnavailable`` or ``CommandRefused``.
    """
    return _limited(FORCE_RETRY, commands.force_retry, instance, actor)


def reset_breaker(instance: Instance, actor: str) -> Instance:
    """``commands.reset_breaker`` once per instance per interval.

    Raises ``RateLimited`` or ``LimiterUnavailable``.
    """
    return _limited(RESET_BREAKER, commands.reset_breaker, instance, actor)


def connect(instance: Instance, actor: str) -> Instance:
    """``commands.connect`` once per instance per session-action interval.

    Raises ``RateLimited`` or ``LimiterUnavailable``.
    """
    return _limited(CONNECT, commands.connect, instance, actor, float(settings.BLAST_SESSION_ACTION_INTERVAL_S))


def disconnect(instance: Instance, actor: str) -> Instance:
    """``commands.disconnect`` once per instance per session-action interval.

    Raises ``RateLimited`` or ``LimiterUnavailable``.
    """
    return _limited(DISCONNECT, commands.disconnect, instance, actor, float(settings.BLAST_SESSION_ACTION_INTERVAL_S))


def logout(instance: Instance, actor: str) -> Instance:
    """``commands.request_logout`` once per instance per session-action interval.

    Raises ``RateLimited``, ``LimiterUnavailable`` or ``CommandRefused``.
    """
    return _limited(LOGOUT, commands.request_logout, instance, actor, float(settings.BLAST_SESSION_ACTION_INTERVAL_S))


def request_pair_code(instance: Instance, phone: str, actor: str) -> Instance:
    """``commands.request_pair_code`` once per instance per interval: WhatsApp
    itself limits how often a number may ask for a code.

    Raises ``InvalidPhone`` (before any slot is taken), ``RateLimited``,
    ``LimiterUnavailable`` or ``CommandRefused``.
    """
    commands.check_pairing_phone(phone)
    return _limited(PAIR_CODE, lambda i, a: commands.request_pair_code(i, phone, a), instance, actor)


PROBE_GATEWAY = "probe-gateway"


def probe_gateway(gateway: Gateway, actor: str) -> Gateway:
    """Probe a down gateway now: once per gateway per interval, audited
    (a ``probe_requested`` gateway event); a worker's gateway loop runs the
    probe within a second.

    Raises ``RateLimited``, ``LimiterUnavailable``, or ``CommandRefused`` when
    the gateway is up (there is nothing to probe: its instances connect).
    """
    slot = ratelimit.claim(PROBE_GATEWAY, f"gateway-{gateway.pk}")
    try:
        if not outages.request_probe(gateway.pk, actor=actor, now=time.time()):
            raise commands.CommandRefused(f"gateway {gateway.name} is up: there is nothing to probe")
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    gateway.refresh_from_db()
    return gateway

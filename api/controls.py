"""The manual breaker controls, rate-limited per instance.

The REST API, the seed's endpoints and the admin all go through here, so a
force retry from a tenant's key and one from an operator share the same
per-instance slot. The commands themselves (audit event, intent, hint) are
``instances.commands``'; this module only adds the limit.
"""

from __future__ import annotations

from collections.abc import Callable

from api import ratelimit
from instances import commands
from instances.models import Instance

FORCE_RETRY = "force-retry"
RESET_BREAKER = "reset-circuit-breaker"


def _limited(action: str, command: Callable[[Instance, str], Instance], instance: Instance, actor: str) -> Instance:
    slot = ratelimit.claim(action, str(instance.key))
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

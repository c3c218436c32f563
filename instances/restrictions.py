"""Restriction telemetry: nacks that say the network is limiting an account.

A gateway passes the network's refusal in ``nack.error`` (the Baileys bridge
as ``whatsapp_error_<code>``). The errors in ``BLAST_RESTRICTION_ERRORS``
(rate limited, the new-chat cap, the reach-out lock) mean "slow down", and
an account that does not is the next one banned. So :func:`record`, called
with the outcomes the worker applies:

- slows the instance down until ``BLAST_SLOWDOWN_S`` from the last such nack
  (longer delays, lower caps: instances.sending), with one ``slowed`` event
  when a slow-down starts;
- after ``BLAST_RESTRICTION_PAUSE_AFTER`` of them within
  ``BLAST_RESTRICTION_WINDOW_S`` pauses the instance's sending for
  ``BLAST_RESTRICTION_PAUSE_S`` with a ``restricted`` event, which raises
  the ``restricted`` alert (monitoring.transitions).

:func:`lift_ended` (the recovery beat job) records ``restriction_lifted``
once a pause is over, which resolves the alert. The rows are updated with
``UPDATE``s of these columns only, beside the worker's fenced state writes.
Synchronous ORM code.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

from instances.models import ConnectionEvent, EventKind, Instance

logger = logging.getLogger("blast.instances")


def is_restriction(error: str) -> bool:
    """Whether a nack's ``error`` is one of ``BLAST_RESTRICTION_ERRORS``
    (its first word, case ignored)."""
    word = error.strip().split(maxsplit=1)[0].rstrip(":").lower() if error.strip() else ""
    return word in {e.strip().lower() for e in settings.BLAST_RESTRICTION_ERRORS}


def record(hits: dict[int, list[float]], now: dt.datetime) -> None:
    """Apply each instance's restriction nacks (epoch seconds they arrived)."""
    window = float(settings.BLAST_RESTRICTION_WINDOW_S)
    pause_after = int(settings.BLAST_RESTRICTION_PAUSE_AFTER)
    slowdown = dt.timedelta(seconds=float(settings.BLAST_SLOWDOWN_S))
    with transaction.atomic():
        for instance in Instance.objects.select_for_update().filter(pk__in=list(hits)):
            stamps = sorted([*instance.restriction_hits, *hits[instance.pk]])
            latest = stamps[-1]
            stamps = [t for t in stamps if latest - t <= window]
            events: list[ConnectionEvent] = []
            slowed = instance.slowed_until is not None and instance.slowed_until > now
            instance.slowed_until = dt.datetime.fromtimestamp(latest, tz=dt.UTC) + slowdown
            if not slowed:
                events.append(
                    _event(instance, EventKind.SLOWED, f"slowed down until {instance.slowed_until:%H:%M} UTC")
                )
                logger.warning("🐢 instance=%s slowed down: the network is limiting the account", instance.pk)
            paused = instance.paused_until is not None and instance.paused_until > now
            if len(stamps) >= pause_after and not paused:
                until = now + dt.timedelta(seconds=float(settings.BLAST_RESTRICTION_PAUSE_S))
                instance.paused_until = until
                stamps = []
                events.append(
                    _event(
                        instance,
                        EventKind.RESTRICTED,
                        f"{pause_after} limits within {window:g} s: paused until {until:%H:%M} UTC",
                    )
                )
                logger.warning("⏸️ instance=%s sending paused: repeated limits from the network", instance.pk)
            instance.restriction_hits = stamps
            Instance.objects.filter(pk=instance.pk).update(
                slowed_until=instance.slowed_until, paused_until=instance.paused_until, restriction_hits=stamps
            )
            ConnectionEvent.objects.bulk_create(events)


def _event(instance: Instance, kind: str, message: str) -> ConnectionEvent:
    return ConnectionEvent(instance=instance, kind=kind, message=message, actor="platform")


def lift_ended(now: dt.datetime) -> list[int]:
    """Record the end of every pause that is over; the instances' ids."""
    with transaction.atomic():
        ended = list(
            Instance.objects.select_for_update()
            .filter(paused_until__isnull=False, paused_until__lte=now)
            .values_list("pk", flat=True)
        )
        if not ended:
            return []
        Instance.objects.filter(pk__in=ended).update(paused_until=None)
        ConnectionEvent.objects.bulk_create(
            ConnectionEvent(
                instance_id=pk, kind=EventKind.RESTRICTION_LIFTED, message="sending resumed", actor="platform"
            )
            for pk in ended
        )
    logger.info("▶️ sending resumed after a pause for limits: instances %s", ended)
    return ended


def hits_of(nacks: Iterable[tuple[int, str, float]]) -> dict[int, list[float]]:
    """(instance id, error, at) of nacks -> the restriction hits per instance."""
    hits: dict[int, list[float]] = {}
    for instance_id, error, at in nacks:
        if is_restriction(error):
            hits.setdefault(instance_id, []).append(at)
    return hits

"""The beat scheduler: django-celery-beat's, made to wait out a database
outage instead of exiting. Beat is what heals the platform when nobody is
watching; a database blip must not take it down with it.

It runs the jobs in the database: those of the registry
(``instances.schedules``), created after ``migrate``, with the intervals
operators set in the admin. Nothing is declared in ``CELERY_BEAT_SCHEDULE``,
which the scheduler would write over those rows at every start."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DatabaseError, InterfaceError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger("blast.beat")

RETRY_S = 5.0


class ResilientDatabaseScheduler(DatabaseScheduler):
    def setup_schedule(self) -> None:
        delay = 1.0
        while True:
            try:
                super().setup_schedule()
                return
            except (DatabaseError, InterfaceError) as exc:
                logger.warning("⚠️ beat cannot read its schedule (%s); retrying in %.0fs", exc, delay)
                close_old_connections()
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return float(super().tick(*args, **kwargs))
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("⚠️ beat tick failed (%s); retrying in %.0fs", exc, RETRY_S)
            close_old_connections()
            # Read everything again once the database is back.
            self._initial_read = True
            return RETRY_S

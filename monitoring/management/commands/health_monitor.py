"""`python manage.py health_monitor`: the external health watchdog.

Polls the platform's ``/health`` every ``--interval`` seconds, logs every
check to ``--log-file`` (default logs/health-monitor.log) and posts to the
platform-wide alert webhooks when the platform stops answering or changes
status (monitoring.watchdog). Runs until SIGTERM or SIGINT; ``--once``
checks once and exits with 0 (pass), 1 (warn), 2 (fail) or 3 (no answer).
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from blast.logs import RedactSecretsFilter
from monitoring.watchdog import EXIT_CODES, Monitor, logger


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Watch the platform's /health from outside; alert when it goes down or changes status."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/health", help="The /health URL to poll.")
        parser.add_argument("--interval", type=_positive, default=30.0, help="Seconds between checks.")
        parser.add_argument("--timeout", type=_positive, default=10.0, help="Seconds to wait for an answer.")
        parser.add_argument(
            "--down-after",
            type=int,
            default=2,
            help="Unanswered checks in a row before the platform is reported down.",
        )
        parser.add_argument(
            "--log-file", default=str(settings.BASE_DIR / "logs" / "health-monitor.log"), help="Log file."
        )
        parser.add_argument(
            "--state-file",
            default=None,
            help="Where the last reported state is kept (default: beside the log file).",
        )
        parser.add_argument("--once", action="store_true", help="Check once and exit with the status code.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["down_after"] < 1:
            raise CommandError("--down-after must be at least 1")
        log_file = Path(options["log_file"])
        log_file.parent.mkdir(parents=True, exist_ok=True)
        state_file = Path(options["state_file"]) if options["state_file"] else log_file.with_suffix(".state")
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.addFilter(RedactSecretsFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        monitor = Monitor(
            options["url"],
            interval=options["interval"],
            timeout=options["timeout"],
            down_after=options["down_after"],
            state_file=state_file,
        )
        try:
            if options["once"]:
                seen = monitor.check()
                raise SystemExit(EXIT_CODES[seen.state])
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: monitor.stop.set())
            monitor.run()
        finally:
            logger.removeHandler(handler)
            handler.close()

"""``manage.py run_gateway_sim``: run the gateway simulator in the foreground.

    python manage.py run_gateway_sim --host 127.0.0.1 --port 8765 [--start-paired]
        [--auto-pair-after S] [--qr-ttl S] [--receipt-delay S] [--heartbeat-s N]
        [--no-pair-code] [--pair-code-delay S] [--seed N]

Logs one line per session open and close (with the instance key) and stops
cleanly on SIGINT or SIGTERM: live sessions are closed with 1001 first. The
open file limit is raised to the hard limit at start so that thousands of
sessions fit. The flags are those of ``simulator.config.add_arguments``; see
docs/SIMULATOR.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from simulator import config, server


class Command(BaseCommand):
    help = "Run the gateway simulator (PROTOCOL.md v1 plus the /_control/ API) in the foreground."
    # The simulator touches neither models nor the database: start fast.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        config.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            sim_config = config.config_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            server.run(sim_config)
        except OSError as exc:  # typically: the port is taken
            raise CommandError(f"cannot serve on {sim_config.host}:{sim_config.port}: {exc}") from None
        except KeyboardInterrupt:  # a second Ctrl-C during shutdown
            pass

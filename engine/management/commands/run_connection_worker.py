"""`python manage.py run_connection_worker`: the connection worker process.

A Channels worker (``channels.worker.Worker``) listening on the common
connection channel and on a channel of its own, with the supervisor started
before the first message. SIGTERM or SIGINT drains it: sessions closed with
1001, leases released, instances handed to the other workers.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from typing import Any

from channels.layers import get_channel_layer
from channels.worker import Worker
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from engine.consumers import ConnectionHintConsumer
from engine.session import SessionConfig
from engine.supervisor import Supervisor, WorkerConfig
from instances.decisions import Policies

logger = logging.getLogger("blast.worker")


class ConnectionWorker(Worker):
    def __init__(self, supervisor: Supervisor, channel_layer: Any) -> None:
        super().__init__(
            application=ConnectionHintConsumer.as_asgi(),
            channels=[supervisor.config.common_channel, supervisor.own_channel],
            channel_layer=channel_layer,
        )
        self.supervisor = supervisor
        self.stop_requested = asyncio.Event()

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_requested.set)
        await self.supervisor.start()
        listeners = [asyncio.ensure_future(self.listener(channel)) for channel in self.channels]
        await self.stop_requested.wait()
        for listener in listeners:
            listener.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        await self.supervisor.shutdown()

    async def listener(self, channel: str) -> None:
        """Like Worker.listener, but a channel-layer error (Redis restarting)
        is waited out instead of ending the worker."""
        delay = 0.5
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("⚠️ channel layer unavailable on %s; retrying in %.1fs", channel, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.5
            if not isinstance(message, dict) or not message.get("type"):
                logger.warning("⚠️ dropped a hint without a type on %s", channel)
                continue
            scope = {"type": "channel", "channel": channel}
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)


def raise_open_file_limit() -> None:
    """One socket per session: allow as many as the hard limit permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            logger.warning("⚠️ could not raise the open file limit above %s", soft)


class Command(BaseCommand):
    help = "Run a connection worker: owns instances and holds their gateway sessions."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--worker-id", default=None, help="Name of this worker (default: host-pid-random).")

    def handle(self, *args: Any, worker_id: str | None = None, **options: Any) -> None:
        raise_open_file_limit()
        if connections["default"].vendor != "sqlite":
            # One database thread per worker: keep its connection open.
            connections["default"].settings_dict["CONN_MAX_AGE"] = settings.BLAST_WORKER_CONN_MAX_AGE_S
        layer = get_channel_layer()
        if layer is None:
            raise CommandError("No channel layer is configured (CHANNEL_LAYERS).")
        supervisor = Supervisor(
            redis_url=settings.REDIS_URL,
            policies=Policies.from_settings(),
            session_config=SessionConfig.from_settings(),
            config=WorkerConfig.from_settings(),
            channel_layer=layer,
            worker_id=worker_id,
        )
        ConnectionWorker(supervisor, layer).run()

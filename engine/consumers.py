"""Channel-layer consumer of the connection worker.

Handlers run one at a time for a channel, so they never wait on a socket:
they hand the instance ids to the supervisor and return.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import AsyncConsumer

from instances.hints import is_forwarded, parse_ids

logger = logging.getLogger("blast.worker")


class ConnectionHintConsumer(AsyncConsumer):
    async def instances_reconcile(self, message: dict[str, Any]) -> None:
        from engine.supervisor import Supervisor

        supervisor = Supervisor.current
        if supervisor is None:
            logger.warning("⚠️ hint received before the supervisor started; recovery jobs will catch up")
            return
        supervisor.enqueue(parse_ids(message), forwarded=is_forwarded(message))

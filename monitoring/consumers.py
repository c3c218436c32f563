"""The dashboard's browser WebSocket (``/ws/dashboard/``).

Each open page gets a consumer that rebuilds the dashboard's state every
``BLAST_DASHBOARD_POLL_S`` (a fixed handful of aggregate queries,
:mod:`monitoring.dashboard`) and pushes only the sections that changed.
Polling from here, rather than listening for notifications, needs nothing
from the workers and cannot miss a change: the database is the truth.
A database error is logged and the next tick tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import Error as DatabaseError

from monitoring import dashboard

logger = logging.getLogger("blast.monitoring")

# Closed with this when the user is not (or no longer) staff, or is staff
# who are neither operators nor tied to a tenant.
CLOSE_FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        try:
            self.tenant_id = await database_sync_to_async(dashboard.scope_of)(user)
        except PermissionDenied:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.sent: dict[str, str] = {}
        await self.accept()
        self.poller: asyncio.Task[None] | None = asyncio.create_task(self._poll())

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The page may ask for everything again (after it hid and came back).
        if isinstance(content, dict) and content.get("type") == "refresh":
            self.sent = {}

    async def _poll(self) -> None:
        while True:
            try:
                await self.push()
            except asyncio.CancelledError:
                raise
            except DatabaseError:
                logger.warning("⚠️ dashboard: the database does not answer; retrying")
            except Exception:
                logger.exception("⚠️ dashboard update failed; retrying")
            await asyncio.sleep(settings.BLAST_DASHBOARD_POLL_S)

    async def push(self) -> None:
        """Send the sections that changed since the last push, if any."""
        state = await database_sync_to_async(dashboard.build_state)(self.tenant_id)
        changed: dict[str, Any] = {}
        for section, value in state.items():
            encoded = json.dumps(value, sort_keys=True)
            if self.sent.get(section) != encoded:
                changed[section] = value
                self.sent[section] = encoded
        if changed:
            await self.send_json({"type": "update", **changed})

"""The connection worker's state, shared by its steps.

The worker is one object, :class:`engine.supervisor.Supervisor`, built from
one mixin per step, each in its own module: ``reconcile`` (hints and the
audit), ``owning`` (taking an instance and holding its session), ``hooks``
(what a session reports), ``flush`` (fenced writes to the database) and
``renewal`` (leases). :class:`WorkerState` holds what they share: the held
instances, the pending writes and the loops' wake-ups, and the small helpers
more than one step uses.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from django.db import DatabaseError, InterfaceError
from redis.exceptions import RedisError

from engine import outbox, store
from engine.sender import Claims, Reads, Sender
from engine.session import GatewaySession, SessionConfig
from instances import hints, outages
from instances.breaker import Breaker
from instances.decisions import Policies
from instances.leases import Lease, LeaseManager
from instances.models import Status

logger = logging.getLogger("blast.worker")

DB_ERRORS = (DatabaseError, InterfaceError)


@dataclass(frozen=True)
class WorkerConfig:
    lease_ttl: float = 15.0
    heartbeat_interval: float = 5.0
    audit_interval: float = 10.0
    redis_prefix: str = "blast"
    common_channel: str = "blast-connections"
    hint_batch: int = 500
    retry_horizon: float = 5.0
    nack_retry_s: float = 30.0
    capacity: int = 20000

    @classmethod
    def from_settings(cls) -> WorkerConfig:
        from django.conf import settings

        return cls(
            lease_ttl=settings.BLAST_LEASE_TTL_S,
            heartbeat_interval=settings.BLAST_HEARTBEAT_INTERVAL_S,
            audit_interval=max(settings.BLAST_LEASE_TTL_S, 2 * settings.BLAST_HEARTBEAT_INTERVAL_S),
            redis_prefix=settings.BLAST_REDIS_PREFIX,
            common_channel=settings.BLAST_WORKER_CHANNEL,
            hint_batch=settings.BLAST_HINT_BATCH,
            retry_horizon=settings.BLAST_RECOVERY_PERIOD_S + 1.0,
            nack_retry_s=settings.BLAST_NACK_RETRY_S,
            capacity=settings.BLAST_WORKER_CAPACITY,
        )


def new_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass
class Held:
    """An instance this worker owns, and its current session."""

    instance_id: int
    lease: Lease
    url: str
    token: str
    retry_count: int
    breaker: Breaker
    valid_until: float  # monotonic: the lease is proven ours until then
    desired_running: bool = True
    status: str = Status.CONNECTING
    session: GatewaySession | None = None
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    qr_logged: bool = False
    sender: Sender | None = None
    # Send times of the last 24 hours, kept across sessions for pacing caps.
    recent_sends: collections.deque[float] | None = None
    gateway_id: int = 0
    probe: bool = False  # this session probes its down gateway (engine.outages)
    connected_at: float | None = None  # when this session became connected

    @property
    def epoch(self) -> int:
        return self.lease.epoch


class WorkerState:
    """Everything the worker's steps share; see the module's docstring."""

    def __init__(
        self,
        *,
        redis_url: str,
        policies: Policies,
        session_config: SessionConfig,
        config: WorkerConfig,
        channel_layer: Any,
        worker_id: str | None = None,
        outage_policy: outages.OutagePolicy | None = None,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.own_channel = hints.worker_channel(config.common_channel, self.worker_id)
        self.redis_url = redis_url
        self.policies = policies
        self.session_config = session_config
        self.config = config
        self.channel_layer = channel_layer
        self.actor = f"worker:{self.worker_id}"
        self.nack_retry_s = config.nack_retry_s
        self.held: dict[int, Held] = {}
        # In-process connecting markers: instance id -> monotonic start time.
        self.starting: dict[int, float] = {}
        self.pending: set[int] = set()
        # Instances whose retry falls due soon, waiting for their time.
        self.deferred: set[int] = set()
        self._wake = asyncio.Event()
        self.batch = store.Batch()
        self.outcomes = outbox.Outcomes()
        # Every sender's reads and claims, one round trip for many under load.
        self.sender_reads = Reads()
        self.sender_claims = Claims()
        # Leases of ended sessions, released once their last writes landed.
        self.releasing: list[Lease] = []
        self._flush_wake = asyncio.Event()
        self.stopping = False
        self.last_progress: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.redis: aioredis.Redis | None = None
        self.leases: LeaseManager | None = None
        # Gateway outages (engine.outages): the gateways' states as last read,
        # their running instances, reports not yet pushed to Redis.
        self.outage_policy = outage_policy or outages.OutagePolicy.from_settings()
        self.gateways: dict[int, outages.GatewayView] = {}
        self.gateway_running: dict[int, int] = {}
        self._gateway_reports: dict[int, list[str]] = {}
        self._gateway_last_failing: dict[int, int] = {}
        self._last_reason: dict[int, str] = {}
        self._probing: set[int] = set()
        self._checking: set[int] = set()  # instances whose number checks run
        # Inbound frames not stored yet (engine.hooks._store_inbound), in order.
        self.inbound: list[tuple[int, str, str, str]] = []
        self._storing_inbound = False
        # Released instances waiting for their slot in their gateway's ramp,
        # and those whose slot came (started without taking another).
        self._pacing: set[int] = set()
        self._paced: set[int] = set()
        self._late_slots: dict[int, list[int]] = {}
        self._retaken: set[int] = set()
        # Scale-out (engine.balance): the live workers and their capacities,
        # the running instances and where they are placed, sessions being
        # handed off (instance -> new owner), hints forwarded to this worker.
        self.capacity = config.capacity
        self.members: dict[str, int] = {}
        self.members_since = 0.0
        self.running_ids: set[int] = set()
        self.placement: dict[int, str] = {}
        self._running_at = 0.0
        self.handoffs: dict[int, str] = {}
        self._move_budget = 0.0
        self._forwarded: set[int] = set()
        # Workers gone from the membership without leaving (killed): when
        # their sessions' placed owners stop looking for them.
        self._departed: dict[str, float] = {}
        self._views_at = 0.0
        self._counts_at = 0.0
        self._gateway_wake = asyncio.Event()

    def _session_done(self, task: asyncio.Task[None]) -> None:
        self._session_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved, so never "never retrieved"
        if exc is not None:
            logger.error("⚠️ %s ended with an error", task.get_name(), exc_info=exc)

    def _spawn_task(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._session_tasks.add(task)
        task.add_done_callback(self._session_done)

    def _progress(self) -> None:
        self.last_progress = time.time()

    async def _release(self, leases: list[Lease]) -> None:
        if self.leases is None or not leases:
            return
        try:
            await self.leases.release(leases)
        except (RedisError, OSError):
            logger.warning("⚠️ could not release %d leases; they expire by themselves", len(leases))

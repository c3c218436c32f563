"""What the simulator remembers: its instances and the counters the stats report.

:class:`Instance` is one instance key: pairing, the trusted token, the live
sessions (oldest first), the dedup table of accepted message ids and the
per-instance counters. :class:`State` is everything ``POST /_control/reset``
throws away at once: the instances, the faults, the delivery counts, the
hanging upgrades, the inbound bursts and the background tasks. Both are plain
records; the gateway (:mod:`simulator.gateway`) changes them, and the stats
are read from them with ``as_json`` / :meth:`State.stats`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.faults import FaultBook

ATTEMPT_SECONDS_KEPT = 3600

if TYPE_CHECKING:
    from simulator.bursts import Burst
    from simulator.session import Session


@dataclass(eq=False)
class Instance:
    """What the simulator knows about one instance key."""

    key: str
    paired: bool
    account: str | None = None
    token: str | None = None
    sessions: list[Session] = field(default_factory=list)  # oldest first
    max_concurrent: int = 0
    attempts: int = 0  # upgrade requests for this key (valid UUID)
    connects: int = 0  # upgrades accepted (101 sent)
    refused: int = 0  # attempts answered with an HTTP error (auth or `refuse` fault)
    hung: int = 0  # attempts held open without an answer (`hang` fault)
    accepted: dict[str, str] = field(default_factory=dict)  # client message id -> server_id
    duplicates: int = 0  # sends answered from the dedup table
    nacked: int = 0
    malformed_received: int = 0
    pair_code_requests: int = 0  # `pair_code` frames received, served or not
    pair_codes: int = 0  # pairing codes sent
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # client id -> what its media send carried
    media_fetch_failures: int = 0
    checks: int = 0  # `check` requests answered
    presence: list[tuple[str, str]] = field(default_factory=list)  # (to, state) as received

    def ready_session(self) -> Session | None:
        """The newest live session that reached `ready` and is not being closed."""
        for session in reversed(self.sessions):
            if session.ready_at is not None and not session.close_requested:
                return session
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "current": len(self.sessions),
            "max_concurrent": self.max_concurrent,
            "attempts": self.attempts,
            "connects": self.connects,
            "refused": self.refused,
            "hung": self.hung,
            "paired": self.paired,
            "account": self.account,
            "token_known": self.token is not None,
            "accepted": len(self.accepted),
            "duplicates": self.duplicates,
            "nacked": self.nacked,
            "malformed_received": self.malformed_received,
            "pair_code_requests": self.pair_code_requests,
            "pair_codes": self.pair_codes,
            "media": dict(self.media),
            "media_fetch_failures": self.media_fetch_failures,
            "checks": self.checks,
            "presence": [list(p) for p in self.presence[-100:]],
        }


class State:
    """Everything ``POST /_control/reset`` throws away: instances, faults, counters."""

    def __init__(self) -> None:
        self.instances: dict[str, Instance] = {}
        self.faults = FaultBook()
        self.deliveries: dict[str, int] = {}
        # Numbers `check` answers as not on the network (POST /_control/numbers).
        self.absent_numbers: set[str] = set()
        self.media_bytes_fetched = 0
        self.malformed_received = 0
        self.sessions = 0
        # Upgrade requests per whole second of the wall clock, the last hour.
        self.attempts_per_second: dict[int, int] = {}
        self.max_sessions = 0
        self.hanging: set[asyncio.BaseTransport] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # receipts, inbound sends, bursts
        self.bursts: dict[int, Burst] = {}  # POST /_control/inbound-burst, by id
        self.idle = asyncio.Event()  # set whenever the last open session ends

    def live_sessions(self) -> list[Session]:
        return [s for inst in self.instances.values() for s in inst.sessions]

    def count_attempt(self, now: float) -> None:
        second = int(now)
        self.attempts_per_second[second] = self.attempts_per_second.get(second, 0) + 1
        if len(self.attempts_per_second) > ATTEMPT_SECONDS_KEPT:
            del self.attempts_per_second[min(self.attempts_per_second)]

    def stats(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "max_sessions": self.max_sessions,
            "hanging": len(self.hanging),
            "instances": {key: inst.as_json() for key, inst in self.instances.items()},
            "deliveries": dict(self.deliveries),
            "attempts_per_second": {str(second): n for second, n in self.attempts_per_second.items()},
            "malformed_received": self.malformed_received,
            "media_bytes_fetched": self.media_bytes_fetched,
            "absent_numbers": sorted(self.absent_numbers),
            "faults": len(self.faults.as_json()),
        }

"""How one simulator process behaves: :class:`SimConfig` and its CLI flags.

Every field of :class:`SimConfig` is a flag of the same name, shared by
``python -m simulator.server`` and ``manage.py run_gateway_sim`` through
:func:`add_arguments`; :func:`config_from_options` turns parsed options into
a config and raises ``ValueError`` with a one-line message on a bad value.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SimConfig:
    """How the simulator behaves; every field is a CLI flag of the same name."""

    host: str = "127.0.0.1"
    port: int = 8765
    start_paired: bool = False
    auto_pair_after: float = 10.0  # seconds; <= 0: only the control API pairs
    qr_ttl: float = 20.0  # seconds between QR codes
    receipt_delay: float = 0.5  # seconds; 0: at once; < 0: never
    heartbeat_s: int = 20  # announced in `hello`
    pair_code: bool = True  # announce and serve the optional `pair_code` frame
    pair_code_delay: float = 5.0  # seconds from a pairing code to pairing; <= 0: only the control API pairs
    v11: bool = True  # announce and serve protocol v1.1: media, check, presence
    fetch_media: bool = True  # fetch a media send's link before acking it
    seed: int | None = None  # seeds session ids, QR codes, accounts, server ids

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if not (self.qr_ttl > 0 and math.isfinite(self.qr_ttl)):
            raise ValueError(f"qr_ttl must be a positive number of seconds, got {self.qr_ttl}")
        if not all(math.isfinite(v) for v in (self.auto_pair_after, self.receipt_delay, self.pair_code_delay)):
            raise ValueError("auto_pair_after, receipt_delay and pair_code_delay must be finite")
        if self.heartbeat_s < 1:
            raise ValueError(f"heartbeat_s must be at least 1, got {self.heartbeat_s}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's CLI flags to ``parser`` (shared with the management command)."""
    defaults = SimConfig()
    parser.add_argument("--host", default=defaults.host, help="interface to listen on")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port (0: any free port)")
    parser.add_argument("--start-paired", action="store_true", help="every instance is paired from the start")
    parser.add_argument(
        "--auto-pair-after",
        type=float,
        default=defaults.auto_pair_after,
        help="seconds after which an unpaired session pairs by itself; <= 0: only the control API pairs",
    )
    parser.add_argument("--qr-ttl", type=float, default=defaults.qr_ttl, help="seconds between two QR codes")
    parser.add_argument(
        "--receipt-delay",
        type=float,
        default=defaults.receipt_delay,
        help="seconds from ack to the `delivered` receipt (`read` follows as long again); 0: at once; negative: never",
    )
    parser.add_argument("--heartbeat-s", type=int, default=defaults.heartbeat_s, help="heartbeat_s announced in hello")
    parser.add_argument(
        "--no-pair-code",
        dest="pair_code",
        action="store_false",
        help="do not announce the optional pair_code frame (a v1 gateway: pairing by QR code only)",
    )
    parser.add_argument(
        "--pair-code-delay",
        type=float,
        default=defaults.pair_code_delay,
        help="seconds from a pairing code to pairing, as if typed on the phone; <= 0: only the control API pairs",
    )
    parser.add_argument(
        "--v1",
        dest="v11",
        action="store_false",
        help="announce none of protocol v1.1's features (media, check, presence): a version 1 gateway",
    )
    parser.add_argument(
        "--no-fetch-media",
        dest="fetch_media",
        action="store_false",
        help="ack media sends without fetching their link (the file is not checked)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible ids and codes")


def config_from_options(options: Mapping[str, Any]) -> SimConfig:
    """Build a :class:`SimConfig` from parsed CLI options (raises ``ValueError``)."""
    return SimConfig(
        host=options["host"],
        port=options["port"],
        start_paired=bool(options["start_paired"]),
        auto_pair_after=options["auto_pair_after"],
        qr_ttl=options["qr_ttl"],
        receipt_delay=options["receipt_delay"],
        heartbeat_s=options["heartbeat_s"],
        pair_code=bool(options["pair_code"]),
        pair_code_delay=options["pair_code_delay"],
        v11=bool(options.get("v11", True)),
        fetch_media=bool(options.get("fetch_media", True)),
        seed=options["seed"],
    )

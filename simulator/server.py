"""The gateway simulator: a test double for a real messaging gateway.

It implements ``shared/PROTOCOL.md`` (version 1) in full for any number of
instances, and adds a control API under ``/_control/`` on the same port that
lets tests, the demo, the benchmarks and the chaos soak pair accounts, inject
inbound messages and inject faults (refused or hanging upgrades, close codes,
silent peers, malformed frames, nacks, a gateway restart).

This module is the listener and the glue: :func:`build_app` puts the gateway
endpoint (:mod:`simulator.gateway`) and the control API
(:mod:`simulator.control_api`) on one ``aiohttp`` application, :func:`serve`
runs it until stopped, :func:`run` and :func:`main` are the foreground entry
points of ``manage.py run_gateway_sim`` and ``python -m simulator.server``.
The parts: :mod:`simulator.config` (flags), :mod:`simulator.protocol` (wire
rules), :mod:`simulator.codes` (close codes), :mod:`simulator.inputs`
(control input), :mod:`simulator.faults`, :mod:`simulator.state`,
:mod:`simulator.session`.

Contract:

* It is plain asyncio on ``aiohttp.web`` and imports nothing from Django, so it
  can be started cheaply (``python -m simulator.server``) and reused.
* Every session is one ``WebSocketResponse`` plus a few small tasks; thousands
  of concurrent sessions fit in one process.
* A bad client frame is answered with an ``error`` frame, bad control input
  with a 400 JSON body; nothing a client or a control caller sends can crash
  the server or produce a 500.
* The control API never waits on a WebSocket client: closes it orders are
  started in background tasks, so a test that drives the control API
  synchronously from the client's event loop cannot deadlock.

See ``docs/SIMULATOR.md`` for the CLI flags and the control API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from simulator.config import SimConfig, add_arguments, config_from_options
from simulator.control_api import ControlAPI
from simulator.gateway import Simulator

logger = logging.getLogger("simulator.server")  # the same name under `python -m`


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard limit; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def build_app(sim: Simulator) -> web.Application:
    """The application: the gateway endpoint and the control API of ``sim`` on one port."""
    control = ControlAPI(sim)
    app = web.Application(middlewares=[control.errors])
    app.router.add_get("/v1/instances/{instance_key}/socket", sim.handle_socket)
    control.add_routes(app)
    return app


class _ClientProtocolErrorFilter(logging.Filter):
    """Log a client's malformed HTTP as one warning line, not an error with a traceback.

    aiohttp reports an unparsable request (garbage on the port, a missing
    Host header) as "Error handling request" with a traceback; that is the
    client's fault and the simulator carries on, so it is not an error here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            message = record.getMessage()
            record.msg, record.args = "%s: %s", (message, " ".join(str(exc).split()))
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _listen_backlog() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(128, int(f.read().strip()))
    except (OSError, ValueError):
        return 1024


async def serve(
    config: SimConfig,
    *,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str, int], None] | None = None,
) -> None:
    """Run the simulator until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    sim = Simulator(config)
    aiohttp_server_logger = logging.getLogger("aiohttp.server")
    protocol_filter = _ClientProtocolErrorFilter()
    aiohttp_server_logger.addFilter(protocol_filter)
    runner = web.AppRunner(build_app(sim), access_log=None, handle_signals=False, shutdown_timeout=3.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=_listen_backlog(), reuse_address=True)
    await site.start()
    addresses = runner.addresses
    port = int(addresses[0][1]) if addresses else config.port
    logger.info(
        "gateway simulator listening on ws://%s:%d (start_paired=%s auto_pair_after=%s qr_ttl=%s "
        "receipt_delay=%s heartbeat_s=%s pair_code=%s pair_code_delay=%s seed=%s)",
        config.host,
        port,
        config.start_paired,
        config.auto_pair_after,
        config.qr_ttl,
        config.receipt_delay,
        config.heartbeat_s,
        config.pair_code,
        config.pair_code_delay,
        config.seed,
    )
    if on_listening is not None:
        on_listening(config.host, port)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
                installed.append(signum)
    try:
        await stop.wait()
        logger.info("gateway simulator stopping: closing %d session(s)", sim.state.sessions)
        await sim.shutdown()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        aiohttp_server_logger.removeFilter(protocol_filter)
        logger.info("gateway simulator stopped")


def run(config: SimConfig) -> None:
    """Run the simulator in the foreground until SIGINT or SIGTERM."""
    soft, hard = raise_nofile_limit()
    logger.info("open file limit %s (hard %s)", soft, hard)
    asyncio.run(serve(config))


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator.server``: the same flags as ``manage.py run_gateway_sim``."""
    parser = argparse.ArgumentParser(prog="python -m simulator.server", description=__doc__.splitlines()[0])
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(config)
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for starting a simulator on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())

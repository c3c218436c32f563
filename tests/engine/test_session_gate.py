"""The ramp's last gate sits between the TCP connection and the upgrade
request: a real websockets server on 127.0.0.1 records when the request
arrives, and the session's ``before_request`` when it was let through."""

from __future__ import annotations

import asyncio
import http
import time
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from engine.session import GatewaySession, SessionConfig
from instances.reasons import Reason


class NoHooks:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


async def test_before_request_runs_on_the_open_connection_before_the_upgrade_request_is_written() -> None:
    opened: list[float] = []
    requested: list[float] = []
    released: list[float] = []

    def refuse(connection: ServerConnection, request: Request) -> Response:
        requested.append(time.monotonic())
        return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "down for maintenance\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]

        async def before_request() -> None:
            # The TCP connection is open: the server holds it, without a request yet.
            opened.append(float(len(server.handlers)))
            await asyncio.sleep(0.3)
            released.append(time.monotonic())

        session = GatewaySession(
            instance_id=1,
            url=f"ws://127.0.0.1:{port}/",
            token="t",
            config=SessionConfig(open_timeout=5),
            hooks=NoHooks(),  # type: ignore[arg-type]
            before_request=before_request,
        )
        end = await session.run()
    assert end.reason is Reason.UNAVAILABLE
    assert opened == [1.0]
    assert len(requested) == 1 and len(released) == 1
    assert requested[0] >= released[0]


async def test_without_before_request_the_request_goes_at_once() -> None:
    requests: list[Headers] = []

    def refuse(connection: ServerConnection, request: Request) -> Response:
        requests.append(request.headers)
        return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "down\n")

    async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        session = GatewaySession(
            instance_id=1,
            url=f"ws://127.0.0.1:{port}/",
            token="t",
            config=SessionConfig(open_timeout=5),
            hooks=NoHooks(),  # type: ignore[arg-type]
        )
        end = await session.run()
    assert end.reason is Reason.UNAVAILABLE
    assert requests[0]["Authorization"] == "Bearer t"

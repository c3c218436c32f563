"""A small synchronous client for the gateway simulator's control API.

Standard library only (``urllib.request`` + ``json``), so tests, benchmarks
and the chaos soak can drive a simulator from anywhere, including from inside
an asyncio test: every control call returns without waiting on a WebSocket
client (the simulator starts closes in the background), so a blocking call
from the client's event loop cannot deadlock.

Every method sends one request and returns the decoded JSON answer. A non-2xx
answer raises :class:`SimulatorControlError` carrying the status and the
decoded body; :meth:`SimulatorControl.request` returns the status and body
instead of raising, for tests that check error answers.

    control = SimulatorControl("http://127.0.0.1:8765")
    control.set_fault("refuse", instance=key, status=429, retry_after=7, count=1)
    control.stats(key)["refused"]
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["SimulatorControl", "SimulatorControlError"]


class SimulatorControlError(Exception):
    """The simulator answered a control call with an HTTP error status."""

    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {message}")


class SimulatorControl:
    """Client for ``{base_url}/_control/``; ``base_url`` is ``http://host:port``.

    A ``ws://`` or ``wss://`` URL is accepted too and mapped to http(s).
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        if base_url.startswith("ws://"):
            base_url = "http://" + base_url[len("ws://") :]
        elif base_url.startswith("wss://"):
            base_url = "https://" + base_url[len("wss://") :]
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SimulatorControl({self.base_url!r})"

    # --- transport --------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return ``(status, decoded JSON body)``, never raising on a status.

        ``body`` is sent as JSON; ``raw`` is sent as is (for malformed-input
        tests). ``path`` is relative to ``/_control/``.
        """
        url = f"{self.base_url}/_control/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, _decode(exc.read())

    def _call(self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None) -> Any:
        status, decoded = self.request(method, path, body, query=query)
        if not 200 <= status < 300:
            raise SimulatorControlError(status, decoded, method, path)
        return decoded

    # --- the control API ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /_control/health`` -> ``{"ok": true}``."""
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def wait_healthy(self, timeout: float = 30.0, interval: float = 0.05) -> None:
        """Poll :meth:`health` until it answers; raise ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self.health().get("ok") is True:
                    return
            except (OSError, SimulatorControlError, ValueError) as exc:
                last = exc
            time.sleep(interval)
        raise TimeoutError(f"simulator at {self.base_url} not healthy after {timeout} s (last error: {last})")

    def stats(self, instance: str | None = None) -> dict[str, Any]:
        """All stats, or one instance's (``instance`` given; 404 if unknown)."""
        query = None if instance is None else {"instance": instance}
        result: dict[str, Any] = self._call("GET", "stats", query=query)
        return result

    def faults(self) -> list[dict[str, Any]]:
        """The active faults."""
        result: list[dict[str, Any]] = self._call("GET", "faults")["faults"]
        return result

    def set_fault(
        self, fault: str, *, instance: str | None = None, count: int | None = None, **params: Any
    ) -> dict[str, Any]:
        """Set ``fault`` for ``instance`` (None: every instance); return the fault as stored.

        ``count`` limits it to that many attempts/sessions/sends (for
        ``malformed`` it is the number of frames; pass ``sessions=`` to limit
        sessions). Other keyword arguments are the fault's parameters.
        """
        body: dict[str, Any] = {"fault": fault, **params}
        if instance is not None:
            body["instance"] = instance
        if count is not None:
            body["count"] = count
        result: dict[str, Any] = self._call("POST", "faults", body)
        return result

    def clear_faults(self, instance: str | None = None) -> int:
        """Clear every fault, or only ``instance``'s; return how many were removed."""
        query = None if instance is None else {"instance": instance}
        return int(self._call("DELETE", "faults", query=query)["cleared"])

    def restart(self, code: int | str = 1001, *, abort: bool = False) -> dict[str, Any]:
        """Drop every session at once, with close ``code`` or (``abort``) without a close frame."""
        result: dict[str, Any] = self._call("POST", "restart", {"code": code, "abort": abort})
        return result

    def reset(self) -> None:
        """Forget everything: sessions are dropped; faults, stats, pairings, tokens cleared."""
        self._call("POST", "reset")

    def pair(self, instance: str, account: str | None = None) -> dict[str, Any]:
        """Pair ``instance`` (live unpaired sessions go `paired` then `ready`)."""
        body = {} if account is None else {"account": account}
        result: dict[str, Any] = self._call("POST", f"instances/{instance}/pair", body)
        return result

    def unpair(self, instance: str) -> dict[str, Any]:
        """Unpair ``instance``; its live sessions are closed with 4401."""
        result: dict[str, Any] = self._call("POST", f"instances/{instance}/unpair", {})
        return result

    def close(self, instance: str, code: int | str = 1000) -> dict[str, Any]:
        """Close ``instance``'s live sessions with ``code`` (``"abort"``/1006: drop TCP)."""
        result: dict[str, Any] = self._call("POST", f"instances/{instance}/close", {"code": code})
        return result

    def inbound(self, instance: str, sender: str, text: str) -> dict[str, Any]:
        """Deliver an `inbound` message from ``sender`` on ``instance``'s ready session."""
        body = {"from": sender, "text": text}
        result: dict[str, Any] = self._call("POST", f"instances/{instance}/inbound", body)
        return result

    def inbound_burst(
        self,
        count: int,
        rate: float,
        *,
        instances: list[str] | None = None,
        sender: str | None = None,
        text: str | None = None,
    ) -> dict[str, Any]:
        """Have the simulator send ``count`` `inbound` frames at ``rate`` a second,
        round robin over ``instances`` (None: every instance with a ready session);
        the burst as started (its ``burst`` id for :meth:`burst`)."""
        body: dict[str, Any] = {"count": count, "rate": rate}
        if instances is not None:
            body["instances"] = instances
        if sender is not None:
            body["from"] = sender
        if text is not None:
            body["text"] = text
        result: dict[str, Any] = self._call("POST", "inbound-burst", body)
        return result

    def burst(self, burst_id: int) -> dict[str, Any]:
        """How far burst ``burst_id`` got: ``sent``, ``skipped``, ``done``, its start and end."""
        result: dict[str, Any] = self._call("GET", f"inbound-burst/{burst_id}")
        return result

    def set_absent_numbers(self, phones: list[str]) -> None:
        """From now on, `check` answers ``phones`` as not on the network."""
        self._call("POST", "numbers", {"absent": phones})

    def forget_token(self, instance: str) -> None:
        """Forget the token remembered for ``instance``; the next one seen is trusted."""
        self._call("POST", f"instances/{instance}/forget-token", {})


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")

"""The web process refuses a body above ``BLAST_WEB_MAX_BODY_BYTES`` before
storing it, and hands a chunked body it accepts to Django whole.

Against the real web process (``python -m blast.web``, as the Procfile runs
it) over real sockets: unauthenticated 100 MB uploads, declared and chunked,
get a JSON 413 while the process's memory stays flat and ``/health/live``
keeps answering within a second; a chunked JSON POST creates what it says.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pytest
from django.conf import settings

from api.models import ApiKey
from campaigns.parsers import MULTIPART_OVERHEAD
from instances.models import Tenant
from tests.fixtures.platform import Platform, Process, wait_until

MIB = 1024 * 1024
ATTACK_BYTES = 100 * MIB
# What the process may grow by while refusing an attack (it grew by 1.2 GB
# when Twisted stored and parsed the whole body).
MAX_GROWTH_BYTES = 50 * MIB
HEALTH_DEADLINE_S = 1.0
BOUNDARY = "blastboundary7d3c1a9e"
UPLOAD_PATH = "/api/v1/contact-lists/7d3c1a9e-0000-4000-8000-000000000000/upload"


# -- the settings ---------------------------------------------------------------------------


def test_the_default_limit_admits_the_largest_upload_and_json_body() -> None:
    assert settings.BLAST_WEB_MAX_BODY_BYTES >= settings.BLAST_CSV_MAX_BYTES + MULTIPART_OVERHEAD
    assert settings.BLAST_WEB_MAX_BODY_BYTES >= settings.DATA_UPLOAD_MAX_MEMORY_SIZE


# -- a real web process ---------------------------------------------------------------------


@dataclass
class Web:
    process: Process
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, name: str) -> int:
        """A ``/proc/<pid>/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(f"{name}:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {name} in /proc/{self.process.pid}/status")


def health_latency(web: Web) -> float:
    """Seconds ``/health/live`` took to answer 200 (a failure counts as forever)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{web.base}/health/live", timeout=10) as response:
            if response.status != 200:
                return float("inf")
            response.read()
    except OSError:
        return float("inf")
    return time.monotonic() - started


@dataclass
class HealthProbe:
    """Asks ``/health/live`` over and over in a thread until stopped."""

    web: Web
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: self.latencies, timeout=10, message="first health answer")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.latencies.append(health_latency(self.web))


@pytest.fixture
def web(platform: Platform) -> Iterator[Web]:
    """The web process exactly as the Procfile starts it, on a free port."""
    process, base = platform.start_web()
    yield Web(process, int(base.rsplit(":", 1)[1]))


def send_request(
    web: Web, head: bytes, blocks: Iterable[bytes], between_blocks: Callable[[int], None] = lambda sent: None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` then ``blocks`` on one connection; return the response's
    status, headers and body. A server that stops reading is not an error:
    whatever it answered is read after the send fails."""
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        try:
            for block in blocks:
                sock.sendall(block)
                sent += len(block)
                between_blocks(sent)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    assert received, "the connection closed without a response"
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def csv_blocks(total: int) -> Iterator[bytes]:
    """``total`` bytes of a multipart CSV upload, in 1 MiB blocks."""
    first = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="contacts.csv"\r\n'
        "Content-Type: text/csv\r\n\r\nphone\r\n"
    ).encode()
    last = f"\r\n--{BOUNDARY}--\r\n".encode()
    row = b"+15550000000\r\n"
    block = (row * (MIB // len(row) + 1))[:MIB]
    remaining = total - len(first) - len(last)
    yield first
    while remaining > 0:
        piece = block[: min(MIB, remaining)]
        remaining -= len(piece)
        yield piece
    yield last


def chunked(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """``blocks`` in the chunked transfer coding."""
    for block in blocks:
        yield b"%x\r\n%s\r\n" % (len(block), block)
    yield b"0\r\n\r\n"


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    fields = {"Host": "127.0.0.1", "Connection": "close", **headers}
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def attack(web: Web, head: bytes, blocks: Iterable[bytes]) -> tuple[int, dict[str, str], bytes, list[float]]:
    """Send the attack while ``/health/live`` is asked throughout: by a probe
    thread, and by the attacker itself every 10 MiB and once the body is out.
    Return the response and every latency seen."""
    latencies: list[float] = []

    def probe_every_10_mib(sent: int) -> None:
        if sent // (10 * MIB) != (sent - MIB) // (10 * MIB):
            latencies.append(health_latency(web))

    with HealthProbe(web) as probe:
        status, headers, body = send_request(web, head, blocks, probe_every_10_mib)
        latencies.append(health_latency(web))
    return status, headers, body, latencies + probe.latencies


def assert_refused(status: int, headers: dict[str, str], body: bytes, limit: int) -> None:
    assert status == 413, body[:500]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {"detail": f"The request body is larger than {limit} bytes."}


@pytest.fixture
def warm(web: Web) -> Web:
    """The web process after it has served an upload route once (lazy imports done)."""
    small = b"".join(csv_blocks(4096))
    head = request_head(
        "POST",
        UPLOAD_PATH,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(small))},
    )
    status, _, _ = send_request(web, head, [small])
    assert status == 401
    return web


def test_a_declared_100_mb_upload_is_refused_before_it_is_stored(warm: Web) -> None:
    rss_before = warm.status("VmRSS")
    head = request_head(
        "POST",
        UPLOAD_PATH,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(ATTACK_BYTES)},
    )
    status, headers, body, latencies = attack(warm, head, csv_blocks(ATTACK_BYTES))

    assert_refused(status, headers, body, settings.BLAST_WEB_MAX_BODY_BYTES)
    growth = warm.status("VmHWM") - rss_before
    assert growth < MAX_GROWTH_BYTES, f"the web process grew by {growth / MIB:.0f} MiB"
    assert len(latencies) >= 10
    assert max(latencies) < HEALTH_DEADLINE_S, sorted(latencies)[-5:]
    # In the access log, like any response.
    wait_until(lambda: f'"POST {UPLOAD_PATH}" 413' in warm.process.log(), timeout=10, message="413 logged")


def test_a_chunked_100_mb_upload_is_cut_off_at_the_limit(warm: Web) -> None:
    rss_before = warm.status("VmRSS")
    head = request_head(
        "POST",
        UPLOAD_PATH,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Transfer-Encoding": "chunked"},
    )
    status, headers, body, latencies = attack(warm, head, chunked(csv_blocks(ATTACK_BYTES)))

    assert_refused(status, headers, body, settings.BLAST_WEB_MAX_BODY_BYTES)
    growth = warm.status("VmHWM") - rss_before
    assert growth < MAX_GROWTH_BYTES, f"the web process grew by {growth / MIB:.0f} MiB"
    assert len(latencies) >= 10
    assert max(latencies) < HEALTH_DEADLINE_S, sorted(latencies)[-5:]


def test_a_client_expecting_100_continue_gets_the_413_instead(web: Web) -> None:
    """No body is sent at all: the refusal comes from the headers alone."""
    head = request_head(
        "POST",
        UPLOAD_PATH,
        {
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(200 * MIB),
            "Expect": "100-continue",
        },
    )
    status, headers, body = send_request(web, head, [])
    assert_refused(status, headers, body, settings.BLAST_WEB_MAX_BODY_BYTES)


def test_a_chunked_json_post_reaches_the_api_whole(web: Web) -> None:
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    _, key = ApiKey.objects.create_key(tenant, "chunked")
    payload = json.dumps({"name": "Spring launch"}).encode()
    head = request_head(
        "POST",
        "/api/v1/contact-lists",
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    # Two chunks, so that the body is really reassembled.
    status, _, body = send_request(web, head, chunked([payload[:7], payload[7:]]))
    assert status == 201, body[:500]
    assert json.loads(body)["name"] == "Spring launch"

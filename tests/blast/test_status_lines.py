"""Every answer of the web process carries its standard reason phrase.

Against the real web process (``python -m blast.web``): a client that keeps
presenting bad API keys is throttled with 429, and the status line says
``429 Too Many Requests`` (Twisted alone wrote ``429 Unknown Status``).
"""

from __future__ import annotations

import http.client

from tests.fixtures.platform import Platform


def status_line(port: int, path: str, key: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = connection.getresponse()
        response.read()
        return response.status, response.reason
    finally:
        connection.close()


def test_a_throttled_client_reads_too_many_requests(platform: Platform) -> None:
    _, base = platform.start_web(BLAST_AUTH_FAILURE_LIMIT="3")
    port = int(base.rsplit(":", 1)[1])
    answers = [status_line(port, "/api/v1/instances", f"bk_not-a-key-{n}") for n in range(5)]
    assert answers[0] == (401, "Unauthorized")
    assert (429, "Too Many Requests") in answers, answers

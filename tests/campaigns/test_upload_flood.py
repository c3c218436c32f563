"""A CSV upload costs its own request and nothing else. While hostile and
merely large files are uploaded through the API of a real web process
(``python -m blast.web``, as the Procfile runs it), ``/health/live`` and
another API request keep answering within a second, and every upload gets a
clear answer (200, 400, 413 or 429), never a 500 or none at all.

The hostile header (``a,"`` repeated) is what ``csv.Sniffer`` reads in a time
that grows with the square of the line's length, in one call that holds the
interpreter: a 60 KB one froze the whole process for tens of seconds.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from api.models import ApiKey
from campaigns.models import Contact, ContactList
from instances.models import Tenant
from tests.fixtures.platform import Platform, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER_WITHIN_S = 1.0
# The web process's bounds, small enough for the attacks to stay quick.
MAX_BYTES = 4 * 1024 * 1024
MAX_ROWS = 60_000


@dataclass
class Probe:
    started: float
    seconds: float
    status: int  # 0: no answer


@dataclass
class Prober:
    """GETs ``url`` one request after another, in a thread of its own, and
    records how long each took to answer."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                request = urllib.request.Request(self.url, headers=self.headers)
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = int(response.status)
            except urllib.error.HTTPError as exc:
                status = int(exc.code)
            except OSError:
                status = 0
            self.probes.append(Probe(started, time.monotonic() - started, status))
            self.stop.wait(0.05)  # pacing between probes, not a wait for anything

    def during(self, start: float, end: float) -> list[Probe]:
        return [p for p in self.probes if start <= p.started <= end]

    def late(self) -> str:
        """What went wrong so far ("" when every probe answered 200 in time)."""
        late = [p for p in self.probes if p.status != 200 or p.seconds > ANSWER_WITHIN_S]
        if not late:
            return ""
        worst = max(p.seconds for p in self.probes)
        return f"{self.url}: {len(late)} of {len(self.probes)} probes late or failed, worst {worst:.2f}s"


@dataclass
class Answer:
    status: int
    body: dict[str, object]
    headers: dict[str, str]
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Web:
    base: str
    key: str

    def upload(self, list_id: str, body: bytes, multipart: bool = False) -> Answer:
        """POST ``body`` to the list's upload, as a text/csv body or a multipart form."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "text/csv"}
        if multipart:
            boundary = uuid.uuid4().hex
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\n'
            body = head.encode() + body + f"\r\n--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        request = urllib.request.Request(
            f"{self.base}/api/v1/contact-lists/{list_id}/upload", data=body, headers=headers, method="POST"
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw, answered = int(response.status), response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, raw, answered = int(exc.code), exc.read(), dict(exc.headers)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw[:300].decode(errors="replace")}
        return Answer(status, parsed, answered, started, time.monotonic())


@pytest.fixture
def web(platform: Platform) -> Web:
    """The web process as the Procfile starts it, on a free port, and a key of tenant acme."""
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    _, key = ApiKey.objects.create_key(tenant, "uploads")
    _, base = platform.start_web(
        BLAST_CSV_MAX_BYTES=str(MAX_BYTES), BLAST_CSV_MAX_ROWS=str(MAX_ROWS), BLAST_CSV_IMPORT_WAIT_S="1"
    )
    return Web(base, key)


@pytest.fixture
def probers(web: Web) -> Iterator[list[Prober]]:
    """``/health/live`` and the tenant's list of contact lists (a sync API
    view that reads the database), each asked over and over until the test ends."""
    started = [
        Prober(f"{web.base}/health/live"),
        Prober(f"{web.base}/api/v1/contact-lists", headers={"Authorization": f"Bearer {web.key}"}),
    ]
    for prober in started:
        threading.Thread(target=prober.run, daemon=True).start()
    for prober in started:
        wait_until(lambda prober=prober: len(prober.probes) >= 3, timeout=30, message=f"{prober.url} probed")
    yield started
    for prober in started:
        prober.stop.set()


def contact_list(name: str) -> str:
    return str(ContactList.objects.create(tenant=Tenant.objects.get(slug="acme"), name=name).key)


def hostile_header(size: int) -> bytes:
    return ('phone,"' + 'a,"' * (size // 3)).encode()[:size]


def valid_rows(count: int) -> bytes:
    """A header and ``count`` rows of distinct valid numbers (+1 201 2xx xxxx)."""
    rows = [f"+1201{200 + n // 10000}{n % 10000:04d},Name {n},City {n % 97}" for n in range(count)]
    return ("phone,name,city\n" + "\n".join(rows) + "\n").encode()


def assert_answered_throughout(probers: list[Prober], name: str, answer: Answer) -> None:
    for prober in probers:
        if answer.seconds > 0.5:  # asked while the upload ran, not only before and after
            assert prober.during(answer.started, answer.ended), (prober.url, name)
        assert not prober.late(), f"{name}: {prober.late()}"


def test_hostile_and_large_files_get_clear_answers_while_the_process_keeps_answering(
    web: Web, probers: list[Prober]
) -> None:
    list_id = contact_list("customers")
    attacks = [
        ("a 60 KB hostile header", hostile_header(60_000) + b"\n+12015550001,x\n", False, 400, "columns"),
        ("a 1 MB header line", hostile_header(1024 * 1024), False, 400, "a line may be at most"),
        ("a 1 MB header line, multipart", hostile_header(1024 * 1024), True, 400, "a line may be at most"),
        ("a file over the size limit", b"phone\n" + b"+12015550001\n" * (MAX_BYTES // 13 + 1), False, 413, ""),
        ("a large valid file", valid_rows(MAX_ROWS), False, 200, ""),
    ]
    for name, body, multipart, status, message in attacks:
        answer = web.upload(list_id, body, multipart)
        assert answer.status == status, (name, answer.status, answer.body)
        assert message in json.dumps(answer.body), (name, answer.body)
        assert_answered_throughout(probers, name, answer)
    assert answer.body["created"] == MAX_ROWS
    assert Contact.objects.filter(contact_list__key=list_id).count() == MAX_ROWS
    assert answer.seconds > 1.0, "the large file is meant to keep the process busy for a while"


def test_large_files_uploaded_at_once_take_turns_or_get_a_429_while_the_process_keeps_answering(
    web: Web, probers: list[Prober]
) -> None:
    lists = [contact_list(f"list {n}") for n in range(4)]
    body = valid_rows(MAX_ROWS)
    with ThreadPoolExecutor(len(lists)) as pool:
        answers = list(pool.map(lambda list_id: web.upload(list_id, body), lists))
    statuses = sorted(answer.status for answer in answers)
    assert set(statuses) == {200, 429}, [(a.status, a.body) for a in answers]
    for answer in answers:
        if answer.status == 429:
            assert int(answer.headers["Retry-After"]) >= 1
            assert "Another upload is being imported" in str(answer.body["detail"])
        assert_answered_throughout(probers, f"upload answered {answer.status}", answer)
    imported = sum(1 for list_id in lists if Contact.objects.filter(contact_list__key=list_id).exists())
    assert imported == statuses.count(200)

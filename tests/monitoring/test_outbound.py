"""Outbound requests to user-given URLs (monitoring.outbound): the address
policy over tables of URLs and addresses, and real requests to real HTTP(S)
servers on 127.0.0.1 with DNS answered in-process: a name is resolved once,
every address is checked, the checked address is the one connected to (a
rebinding answer reaches nothing), TLS is verified for the name, redirects
are not followed, and failures are told in fixed words."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
import socket
import ssl
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError

from monitoring import outbound
from tests.fixtures.dns import FakeDNS

# A globally routable address: what a rebinding name answers first.
PUBLIC = "93.184.215.14"


# -- the policy, as written --------------------------------------------------------------

ACCEPTED = [
    "https://hooks.example.com/blast",
    "https://hooks.example.com",
    "http://hooks.example.com:8080/x?y=1",
    "https://HOOKS.Example.COM./x",  # case and a trailing dot are the same name
    "https://bücher.example/hook",  # IDNA
    "http://93.184.215.14/x",
    "http://[2606:4700:4700::1111]:8443/x",
    "http://[::ffff:93.184.215.14]/x",  # mapped, NAT64 and 6to4 of a public IPv4 address
    "http://[64:ff9b::93.184.215.14]/x",
    "http://[2002:5db8:d70e::1]/x",
]

REFUSED_AS_WRITTEN = [
    ("ftp://hooks.example.com/x", outbound.BAD_FORM),
    ("hooks.example.com/x", outbound.BAD_FORM),
    ("http:///x", outbound.BAD_FORM),
    ("http://user:pass@hooks.example.com/x", outbound.USERINFO),
    ("http://user@hooks.example.com/x", outbound.USERINFO),
    ("http://hooks.example.com@127.0.0.1/x", outbound.USERINFO),
    ("http://evil.example\\@127.0.0.1/x", outbound.BAD_CHARACTERS),
    ("http://hooks.example.com/a b", outbound.BAD_CHARACTERS),
    ("http://hooks.example.com/\r\nX-Injected: 1", outbound.BAD_CHARACTERS),
    ("http://hooks.example.com:0/x", outbound.BAD_PORT),
    ("http://hooks.example.com:65536/x", outbound.BAD_PORT),
    ("http://hooks.example.com:+80/x", outbound.BAD_PORT),
    ("http://a..example.com/x", outbound.BAD_HOST),
    ("http://-a.example.com/x", outbound.BAD_HOST),
    ("http://[fe80::1%25eth0]/x", outbound.BAD_HOST),
    ("http://[::1/x", outbound.BAD_FORM),
    # IPv4 addresses in the spellings resolvers accept but people do not write.
    ("http://2130706433/x", outbound.BAD_IPV4),
    ("http://0x7f.1/x", outbound.BAD_IPV4),
    ("http://0x7f000001/x", outbound.BAD_IPV4),
    ("http://0177.0.0.1/x", outbound.BAD_IPV4),
    ("http://127.1/x", outbound.BAD_IPV4),
    ("http://127.000.000.001/x", outbound.BAD_IPV4),
    ("http://0/x", outbound.BAD_IPV4),
    # Not public.
    ("http://127.0.0.1:8000/hook", outbound.NOT_PUBLIC),
    ("http://127.0.0.1./hook", outbound.NOT_PUBLIC),
    ("http://127\u30020\u30020\u30021/hook", outbound.NOT_PUBLIC),  # ideographic full stops: dots to IDNA
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook", outbound.NOT_PUBLIC),  # full-width digits
    ("http://10.1.2.3/x", outbound.NOT_PUBLIC),
    ("http://172.16.0.1/x", outbound.NOT_PUBLIC),
    ("http://192.168.1.1/x", outbound.NOT_PUBLIC),
    ("http://169.254.169.254/latest/meta-data/", outbound.NOT_PUBLIC),
    ("http://100.64.0.1/x", outbound.NOT_PUBLIC),
    ("http://0.0.0.0/x", outbound.NOT_PUBLIC),
    ("http://224.0.0.1/x", outbound.NOT_PUBLIC),
    ("http://255.255.255.255/x", outbound.NOT_PUBLIC),
    ("http://[::1]/x", outbound.NOT_PUBLIC),
    ("http://[::]/x", outbound.NOT_PUBLIC),
    ("http://[::ffff:127.0.0.1]/x", outbound.NOT_PUBLIC),
    ("http://[::ffff:10.0.0.1]/x", outbound.NOT_PUBLIC),
    ("http://[::127.0.0.1]/x", outbound.NOT_PUBLIC),
    ("http://[64:ff9b::127.0.0.1]/x", outbound.NOT_PUBLIC),
    ("http://[64:ff9b:1::5db8:d70e]/x", outbound.NOT_PUBLIC),
    ("http://[2002:7f00:1::1]/x", outbound.NOT_PUBLIC),
    ("http://[2002:a9fe:a9fe::1]/x", outbound.NOT_PUBLIC),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", outbound.NOT_PUBLIC),  # Teredo
    ("http://[fc00::1]/x", outbound.NOT_PUBLIC),
    ("http://[fd12:3456::1]/x", outbound.NOT_PUBLIC),
    ("http://[fe80::1]/x", outbound.NOT_PUBLIC),
    ("http://[fec0::1]/x", outbound.NOT_PUBLIC),
    ("http://[ff02::1]/x", outbound.NOT_PUBLIC),
    ("http://[2001:db8::1]/x", outbound.NOT_PUBLIC),
    ("http://localhost/x", outbound.NOT_PUBLIC),
    ("http://LOCALHOST./x", outbound.NOT_PUBLIC),
    ("http://api.localhost/x", outbound.NOT_PUBLIC),
    ("http://printer.local/x", outbound.NOT_PUBLIC),
    ("http://metadata.google.internal/x", outbound.NOT_PUBLIC),
    ("http://redis:6379/x", outbound.NOT_PUBLIC),  # one label: a local name
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_public_urls_are_accepted(url: str) -> None:
    assert outbound.url_problem(url, allow_private=False) == ""


@pytest.mark.parametrize(("url", "message"), REFUSED_AS_WRITTEN)
def test_urls_are_refused_as_written_with_a_reason(url: str, message: str) -> None:
    assert outbound.url_problem(url, allow_private=False) == message


def test_the_request_names_the_host_in_ascii_and_keeps_the_path() -> None:
    target = outbound.parse("https://Bücher.Example./ü?q=ä&r=1")
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "xn--bcher-kva.example",
        443,
        "/%C3%BC?q=%C3%A4&r=1",
    )
    assert outbound.parse("http://hooks.example.com").path == "/"
    assert outbound.parse("http://[::ffff:93.184.215.14]:81/").address == ipaddress.ip_address("::ffff:5db8:d70e")


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("93.184.215.14", False),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("64:ff9b::8.8.8.8", False),
        ("2002:808:808::1", False),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("10.0.0.1", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("100.64.0.1", True),
        ("100.127.255.255", True),
        ("169.254.169.254", True),
        ("0.0.0.0", True),
        ("0.1.2.3", True),
        ("192.0.0.8", True),
        ("192.0.2.1", True),
        ("198.18.0.1", True),
        ("198.51.100.1", True),
        ("203.0.113.1", True),
        ("192.88.99.1", True),
        ("224.0.0.251", True),
        ("239.255.255.250", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("::", True),
        ("::1", True),
        ("::127.0.0.1", True),  # IPv4-compatible
        ("::8.8.8.8", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("64:ff9b::127.0.0.1", True),
        ("64:ff9b::10.0.0.1", True),
        ("64:ff9b:1::8.8.8.8", True),  # local-use NAT64
        ("2002:7f00:1::", True),
        ("2002:c0a8:101::1", True),
        ("2001::1", True),  # Teredo
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),
        ("2001:2::1", True),  # benchmarking
        ("2001:db8::1", True),
        ("3fff::1", True),
        ("100::1", True),
        ("fc00::1", True),
        ("fd00::1", True),
        ("fe80::1", True),
        ("fec0::1", True),
        ("ff02::1", True),
        ("5f00::1", True),  # outside global unicast
    ],
)
def test_the_address_policy(address: str, refused: bool) -> None:
    assert bool(outbound.address_problem(ipaddress.ip_address(address))) is refused


def test_the_opt_in_lifts_the_address_rules_only() -> None:
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.1/x", "http://localhost:8000/x", "http://[::1]/x"):
        assert outbound.url_problem(url, allow_private=True) == ""
    assert outbound.url_problem("http://user:pass@127.0.0.1/x", allow_private=True) == outbound.USERINFO
    assert outbound.url_problem("http://2130706433/x", allow_private=True) == outbound.BAD_IPV4


def test_the_opt_in_is_the_setting(settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    assert outbound.url_problem("http://127.0.0.1/x") == outbound.NOT_PUBLIC
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = True
    assert outbound.url_problem("http://127.0.0.1/x") == ""


def test_the_validator_raises_a_field_error(settings: Any) -> None:
    settings.BLAST_WEBHOOK_ALLOW_PRIVATE = False
    outbound.validate_public_url("https://hooks.example.com/x")
    with pytest.raises(ValidationError) as raised:
        outbound.validate_public_url("http://10.0.0.1/x")
    assert raised.value.messages == [outbound.NOT_PUBLIC]


def test_any_text_is_refused_or_accepted_never_an_exception() -> None:
    rng = random.Random(18)
    alphabet = string.printable + "\ud800\u3002\uff0e\uff11\u0130ßé@[]:%#?/\\."
    for _ in range(20_000):
        text = rng.choice(["http://", "https://", "http://[", ""]) + "".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 40))
        )
        try:
            outbound.parse(text)
        except outbound.Refused:
            pass


# -- real servers --------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    """A real HTTP (or HTTPS) server on 127.0.0.1 that records every POST and
    the TLS server names it was asked for."""

    status: int = 200
    reply: bytes = b"internal reply"
    reply_headers: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def start(self, tls: ssl.SSLContext | None = None) -> LocalServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.hits.append(Hit(self.path, dict(self.headers.items()), body))
                self.send_response(owner.status)
                for name, value in owner.reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(owner.reply)))
                self.end_headers()
                self.wfile.write(owner.reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def internal() -> Iterator[LocalServer]:
    """The internal service an attacker wants to reach."""
    server = LocalServer().start()
    yield server
    server.stop()


def send(url: str, timeout: float = 5.0, **kwargs: Any) -> outbound.Response:
    return outbound.post(url, b'{"x":1}', {"Content-Type": "application/json"}, timeout, **kwargs)


def test_a_name_is_resolved_once_and_its_checked_address_connected_to(
    monkeypatch: pytest.MonkeyPatch, internal: LocalServer
) -> None:
    dns = FakeDNS(monkeypatch, {"hooks.test": [["127.0.0.1"], ["10.9.9.9"]]})
    response = send(f"http://hooks.test:{internal.port}/hook?a=1", allow_private=True)
    assert (response.status_code, response.error, response.excerpt) == (200, "", "internal reply")
    assert dns.calls["hooks.test"] == 1
    [hit] = internal.hits
    assert (hit.path, hit.headers["Host"], hit.body) == ("/hook?a=1", f"hooks.test:{internal.port}", b'{"x":1}')


def test_dns_rebinding_never_reaches_the_internal_address(
    monkeypatch: pytest.MonkeyPatch, internal: LocalServer
) -> None:
    # A TTL-0 record: public when checked, loopback for any later lookup.
    dns = FakeDNS(monkeypatch, {"rebind.example.com": [[PUBLIC], ["127.0.0.1"]]})
    response = send(f"http://rebind.example.com:{internal.port}/hook", timeout=1.0, allow_private=False)
    assert internal.hits == []
    assert dns.calls["rebind.example.com"] == 1
    # The public address does not answer on that port: a failure in fixed words.
    assert response.status_code is None and response.excerpt == ""
    assert response.error in (outbound.CONNECTION_FAILED, outbound.TIMED_OUT)
    assert PUBLIC in response.detail and "127.0.0.1" not in response.detail


@pytest.mark.parametrize(
    "answer",
    [
        [PUBLIC, "127.0.0.1"],
        ["127.0.0.1"],
        ["10.0.0.7"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["64:ff9b::7f00:1"],
        ["2002:7f00:1::1"],
        ["2001:0:4136:e378:8000:63bf:3fff:fdd2"],
        ["2606:4700:4700::1111", "fd00::1"],
    ],
)
def test_one_refused_address_refuses_the_whole_request(
    monkeypatch: pytest.MonkeyPatch, internal: LocalServer, answer: list[str]
) -> None:
    FakeDNS(monkeypatch, {"mixed.example.com": [answer]})
    response = send(f"http://mixed.example.com:{internal.port}/hook", allow_private=False)
    assert (response.status_code, response.error, response.excerpt) == (None, outbound.REFUSED, "")
    assert internal.hits == []


def test_redirects_are_not_followed(internal: LocalServer) -> None:
    redirector = LocalServer(status=302, reply=b"", reply_headers={"Location": f"http://127.0.0.1:{internal.port}/"})
    redirector.start()
    try:
        response = send(f"http://127.0.0.1:{redirector.port}/hook", allow_private=True)
    finally:
        redirector.stop()
    assert (response.status_code, response.error) == (302, "HTTP 302")
    assert len(redirector.hits) == 1 and internal.hits == []


def _tls_pair(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` from a test CA, and a
    client context that trusts that CA only."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Blast test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(ca_file))
    return server, client


def test_https_sends_the_name_and_verifies_the_certificate_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server_tls, client_tls = _tls_pair(tmp_path, "hooks.test")
    server = LocalServer(reply=b"tls ok").start(tls=server_tls)
    FakeDNS(monkeypatch, {"hooks.test": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
    try:
        response = send(f"https://hooks.test:{server.port}/hook", allow_private=True, context=client_tls)
        assert (response.status_code, response.excerpt) == (200, "tls ok")
        assert server.server_names == ["hooks.test"]
        assert server.hits[0].headers["Host"] == f"hooks.test:{server.port}"
        # The same address under a name the certificate does not carry.
        mismatch = send(f"https://other.test:{server.port}/hook", allow_private=True, context=client_tls)
        assert (mismatch.status_code, mismatch.error) == (None, outbound.TLS_FAILED)
        assert len(server.hits) == 1
        # And the system's trust store does not know the test CA.
        untrusted = send(f"https://hooks.test:{server.port}/hook", allow_private=True)
        assert untrusted.error == outbound.TLS_FAILED and len(server.hits) == 1
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_failures_are_told_in_fixed_words_and_detailed_for_operators(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = send(f"http://127.0.0.1:{_free_port()}/x", allow_private=True)
    assert (refused.status_code, refused.error, refused.excerpt) == (None, outbound.CONNECTION_FAILED, "")
    assert "Connection refused" in refused.detail

    FakeDNS(monkeypatch, {"nowhere.example.com": [[]]})
    missing = send("http://nowhere.example.com/x", allow_private=False)
    assert missing.error == outbound.NOT_FOUND and "gaierror" in missing.detail

    # Accepts the connection (the kernel's backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        slow = send(f"http://127.0.0.1:{silent.getsockname()[1]}/x", timeout=0.5, allow_private=True)
    assert slow.error == outbound.TIMED_OUT

    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(1)

    def answer_garbage() -> None:
        conn, _ = garbage.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        bad = send(f"http://127.0.0.1:{garbage.getsockname()[1]}/x", allow_private=True)
    finally:
        thread.join(timeout=5)
        garbage.close()
    assert (bad.status_code, bad.error, bad.excerpt) == (None, outbound.BAD_RESPONSE, "")
    assert "SSH" not in bad.error


def test_a_reply_body_is_cut_short(internal: LocalServer) -> None:
    internal.reply = b"x" * 100_000
    response = send(f"http://127.0.0.1:{internal.port}/x", allow_private=True)
    assert response.ok and response.excerpt == "x" * outbound.EXCERPT_CHARS

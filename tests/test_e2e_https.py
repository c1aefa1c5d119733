"""End to end: an HTTPS upstream with a self-signed certificate, or one from a private CA, behind a
real mitmdump in reverse mode (README "HTTPS upstreams"). mitmproxy refuses both by default, with a
502 naming the verification failure; ``ssl_verify_upstream_trusted_ca`` trusts the certificates
(or CAs) in the PEM file given, ``ssl_insecure`` trusts anything. Certificates are made here with
``cryptography`` (a mitmproxy dependency); the upstream is Python's http.server in an ``ssl``
context."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import chunk, completion, delta, sse
from proxy import Mitmdump, ServerThread

pytestmark = pytest.mark.e2e

# every request is asked upstream as a stream, so a JSON client's answer is aggregated from SSE
# that arrived over TLS, and a streaming client's passes through
RULES = "rules:\n  - name: tls\n    upstream: stream\n"
PIECES = ["Over ", "TLS", "."]
STREAM = sse(
    chunk(delta(role="assistant", content="")),
    *[chunk(delta(content=p)) for p in PIECES],
    chunk(delta(finish_reason="stop")),
)
ANSWER = completion({"index": 0, "message": {"role": "assistant", "content": "".join(PIECES)}})


# -- certificates -------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey], ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if subject == "localhost":  # the server's certificate: valid for the address mitmproxy dials
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(*items: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    out = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            out += item.public_bytes(serialization.Encoding.PEM)
        else:
            out += item.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
    return out


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` of a self-signed server certificate for localhost/127.0.0.1, as
    ``openssl req -x509 -addext subjectAltName=…`` makes one."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("localhost", key, ("localhost", key), ca=True)
    (workdir / "self-signed.pem").write_bytes(_pem(cert))
    (workdir / "self-signed.key").write_bytes(_pem(key))
    return workdir / "self-signed.pem", workdir / "self-signed.key"


def private_ca(workdir: Path) -> tuple[Path, Path, Path]:
    """``(ca.pem, server chain pem, server key)``: a server certificate issued by a private CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("streamshim test CA", ca_key, ("streamshim test CA", ca_key), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("localhost", key, ("streamshim test CA", ca_key), ca=False)
    (workdir / "ca.pem").write_bytes(_pem(ca))
    (workdir / "server.pem").write_bytes(_pem(cert))
    (workdir / "server.key").write_bytes(_pem(key))
    return workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"


# -- the upstream -------------------------------------------------------------------------------


class TlsUpstream(ServerThread):
    """An OpenAI-shaped HTTPS server on 127.0.0.1 (a thread): SSE for ``stream: true``, JSON
    otherwise. ``requests`` counts the requests that got through the TLS handshake."""

    scheme = "https"

    def __init__(self, cert: Path, key: Path) -> None:
        self.requests = 0
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                try:
                    self.request.do_handshake()  # here, in the handler's thread, not in accept()
                except (ssl.SSLError, OSError):
                    self.request.close()
                    raise
                super().setup()

            def do_POST(self) -> None:
                upstream.requests += 1
                req = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                streamed = req.get("stream") is True
                body = STREAM if streamed else json.dumps(ANSWER).encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream" if streamed else "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a handshake mitmproxy refused: expected, not worth a traceback

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = Server(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        super().__init__(server, "tls-upstream")


# -- three proxies: mitmproxy's default, and each of the two options ---------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    certs = tmp_path_factory.mktemp("certs")
    self_cert, self_key = self_signed(certs)
    ca, ca_cert, ca_key = private_ca(certs)
    trusted = certs / "trusted.pem"  # one PEM file may hold several: here both, as the README shows
    trusted.write_bytes(self_cert.read_bytes() + ca.read_bytes())
    upstreams = {"self": TlsUpstream(self_cert, self_key).start(), "ca": TlsUpstream(ca_cert, ca_key).start()}
    listeners = {label: u.url for label, u in upstreams.items()}
    lazy = ("--set", "connection_strategy=lazy")  # as the README's commands
    options = {
        "default": lazy,
        "trusted-ca": (*lazy, "--set", f"ssl_verify_upstream_trusted_ca={trusted}"),
        "insecure": (*lazy, "--set", "ssl_insecure=true"),
    }
    proxies = {
        name: Mitmdump(tmp_path_factory.mktemp(name), listeners, RULES, *extra)
        for name, extra in options.items()
    }
    with ThreadPoolExecutor(len(proxies)) as pool:  # each takes a second or two to start and stop
        started = list(pool.map(lambda p: p.start(), proxies.values()))
        yield {"upstreams": upstreams, "proxies": dict(zip(proxies, started, strict=True))}
        list(pool.map(lambda p: p.stop(), started))
    for u in upstreams.values():
        u.stop()


def sdk(proxy: Mitmdump, label: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url(label)}/v1", api_key="sk-tls", max_retries=0, timeout=30)


def ask(proxy: Mitmdump, label: str) -> None:
    """Both shapes through the openai SDK: the JSON answer (aggregated from the upstream's SSE) and
    the stream, as the upstream sent it."""
    c = sdk(proxy, label)
    got = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert got.choices[0].message.content == "Over TLS." and got.choices[0].finish_reason == "stop"
    pieces = [
        ch.choices[0].delta.content
        for ch in c.chat.completions.create(model="m", messages=[], stream=True)
        if ch.choices and ch.choices[0].delta.content
    ]
    assert pieces == PIECES


REFUSALS = {
    "self": "Certificate verify failed: self-signed certificate",
    "ca": "Certificate verify failed: unable to get local issuer certificate",
}


def assert_refused(proxy: Mitmdump, label: str, upstream: TlsUpstream) -> None:
    before = upstream.requests
    r = httpx.post(f"{proxy.url(label)}/v1/chat/completions", json={"model": "m", "messages": []}, timeout=30)
    assert r.status_code == 502 and r.headers["content-type"] == "text/html"  # mitmproxy's own page
    assert REFUSALS[label] in r.text
    with pytest.raises(openai.InternalServerError) as ei:
        sdk(proxy, label).chat.completions.create(model="m", messages=[])
    # the page's text is the error's body (openai 2.x also puts it in the message; 3.x shows only
    # the "message" of a JSON error there, so its message is a bare "Error code: 502")
    assert ei.value.status_code == 502 and isinstance(ei.value.body, str) and REFUSALS[label] in ei.value.body
    assert upstream.requests == before  # nothing was sent over the unverified connection


def test_refused_by_default_with_a_502_naming_the_verification_failure(setup: dict[str, Any]) -> None:
    proxy = setup["proxies"]["default"]
    for label, upstream in setup["upstreams"].items():
        assert_refused(proxy, label, upstream)
    assert REFUSALS["self"] in proxy.log()


def test_the_certificate_or_private_ca_given_as_trusted_ca(setup: dict[str, Any]) -> None:
    proxy = setup["proxies"]["trusted-ca"]
    for label, upstream in setup["upstreams"].items():
        before = upstream.requests
        ask(proxy, label)
        assert upstream.requests == before + 2


def test_ssl_insecure_accepts_either(setup: dict[str, Any]) -> None:
    proxy = setup["proxies"]["insecure"]
    ask(proxy, "self")
    ask(proxy, "ca")

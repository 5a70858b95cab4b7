"""hubsync/outbound.py: webhook URLs reach public addresses only, checked when saved and again on the connection
that is actually opened (no DNS rebinding in between); https only with DEBUG off; the operator's allow-list.

The address table goes through the real resolver (glibc parses the odd numeric forms exactly as a socket
would); names that must resolve somewhere particular are stubbed at `getaddrinfo`, the boundary to DNS."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from hubsync import outbound

PUBLIC = "93.184.215.14"  # a public unicast address (no connection is made to it in these tests)

# (URL, why it must be refused). Every one of these was accepted before.
REFUSED = [
    ("http://127.0.0.1:8000/hook", "loopback"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://127.1.2.3/", "loopback (the whole 127/8)"),
    ("https://2130706433/", "decimal integer form of 127.0.0.1"),
    ("https://0177.0.0.1/", "octal form of 127.0.0.1"),
    ("https://0x7f.0.0.1/", "hex form of 127.0.0.1"),
    ("https://0x7f000001/", "hex integer form of 127.0.0.1"),
    ("https://127.1/", "short form of 127.0.0.1"),
    ("https://localhost/", "a name that resolves to loopback"),
    ("https://[::1]/", "IPv6 loopback"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped IPv6 loopback"),
    ("https://[::ffff:7f00:1]/", "IPv4-mapped IPv6 loopback, hex"),
    ("https://[::127.0.0.1]/", "IPv4-compatible IPv6"),
    ("https://[64:ff9b::7f00:1]/", "NAT64 of 127.0.0.1"),
    ("https://[2002:7f00:1::]/", "6to4 of 127.0.0.1"),
    ("https://[::ffff:169.254.169.254]/", "IPv4-mapped metadata service"),
    ("https://169.254.169.254/latest/meta-data/", "link-local: the cloud metadata service"),
    ("https://[fe80::1]/", "IPv6 link-local"),
    ("https://10.0.0.1/", "private"),
    ("https://172.16.5.4/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://100.64.0.1/", "shared address space (CGNAT)"),
    ("https://[fd00::1]/", "IPv6 unique local"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::]/", "IPv6 unspecified"),
    ("https://224.0.0.1/", "multicast"),
    ("https://[ff02::1]/", "IPv6 multicast"),
    ("https://240.0.0.1/", "reserved"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://198.18.0.1/", "benchmarking range"),
    ("ftp://hooks.slack.com/x", "not http(s)"),
    ("file:///etc/passwd", "not http(s)"),
    ("gopher://hooks.slack.com/", "not http(s)"),
    ("http://hooks.slack.com/services/x", "plain http with DEBUG off"),
    ("https://user:pw@hooks.slack.com/x", "credentials in the URL"),
    ("https://metadata.google.internal/computeMetadata/v1/", "a name that resolves to link-local"),
    ("https://internal.example/hook", "a name with a public and a private answer"),
    ("https://nowhere.invalid/hook", "a name that does not resolve"),
]

NAMES = {
    "hooks.slack.com": [PUBLIC],
    "metadata.google.internal": ["169.254.169.254"],
    "internal.example": [PUBLIC, "10.1.2.3"],
}


@pytest.fixture(autouse=True)
def _dns(monkeypatch, settings):
    """Names used here resolve as in NAMES; everything else goes to the real resolver (numeric forms, localhost).
    Production settings: DEBUG off, no loopback allowance, no allow-list."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in NAMES:
            family = {4: socket.AF_INET, 6: socket.AF_INET6}
            return [(family[6 if ":" in a else 4], socket.SOCK_STREAM, 6, "", (a, port or 443)) for a in NAMES[host]]
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    settings.DEBUG = False
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = False
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = []


@pytest.mark.parametrize(("url", "why"), REFUSED, ids=[u for u, _ in REFUSED])
def test_refused_addresses(url, why):
    with pytest.raises(outbound.RefusedURL):
        outbound.check_url(url)


def test_a_public_https_url_passes():
    assert outbound.check_url("https://hooks.slack.com/services/T0/B0/x") == "https://hooks.slack.com/services/T0/B0/x"


def test_plain_http_only_with_debug(settings):
    settings.DEBUG = True
    assert outbound.check_url("http://hooks.slack.com/services/x")
    with pytest.raises(outbound.RefusedURL):  # DEBUG allows http, never a private address
        outbound.check_url("http://127.0.0.1:8000/x")


def test_allow_list(settings):
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = ["hooks.slack.com"]
    assert outbound.check_url("https://hooks.slack.com/services/x")
    with pytest.raises(outbound.RefusedURL, match="allow-list"):
        outbound.check_url("https://example.com/x")
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = [".slack.com"]
    assert outbound.check_url("https://hooks.slack.com/services/x")
    with pytest.raises(outbound.RefusedURL, match="allow-list"):
        outbound.check_url("https://evilslack.com/x")
    # An allow-listed name is still checked: it cannot be pointed at the metadata service.
    settings.ALERT_WEBHOOK_ALLOWED_HOSTS = ["metadata.google.internal"]
    with pytest.raises(outbound.RefusedURL, match="link-local"):
        outbound.check_url("https://metadata.google.internal/")


def test_loopback_allowance_is_ignored_in_production(settings):
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    settings.DEBUG, settings.TESTING = False, False
    with pytest.raises(outbound.RefusedURL):
        outbound.check_url("https://127.0.0.1/x")
    settings.TESTING = True  # the test suite's own setting: loopback (only loopback) becomes reachable
    assert outbound.check_url("http://127.0.0.1:8000/x")
    with pytest.raises(outbound.RefusedURL):
        outbound.check_url("http://10.0.0.1/x")


class Listener:
    """A TCP listener on 127.0.0.1 that answers any HTTP request with 200 and records what reached it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                self.received.append(data or b"<connected>")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def test_the_session_refuses_loopback_without_connecting(listener):
    for url in (f"http://127.0.0.1:{listener.port}/x", f"https://localhost:{listener.port}/x"):
        with pytest.raises((outbound.RefusedURL, requests.RequestException)):
            outbound.session().post(url, json={}, timeout=2, allow_redirects=False)
    assert listener.received == []


def test_dns_rebinding_is_checked_on_the_connection(monkeypatch, listener, settings):
    """The name is public when the URL is checked and loopback when the connection is made: the connection
    resolves and checks again, and refuses."""
    settings.DEBUG = True  # plain http to the listener's port
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in next(answers)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = f"http://rebind.example:{listener.port}/hook"
    assert outbound.check_url(url)  # first answer: public
    with pytest.raises(outbound.RefusedURL, match="loopback"):
        outbound.session().post(url, json={}, timeout=2, allow_redirects=False)
    assert listener.received == []


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(monkeypatch, listener, settings):
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True  # honoured: the suite runs with HUBSYNC_TESTING
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        if host == "hooks.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    response = outbound.session().post(
        f"http://hooks.example:{listener.port}/hook", json={"a": 1}, timeout=2, allow_redirects=False
    )
    assert response.status_code == 200
    assert f"Host: hooks.example:{listener.port}".encode() in listener.received[0]
    # Resolved once, by the check on the connection; the socket then connected to the numeric address.
    assert calls.count("hooks.example") == 1


def test_environment_proxies_are_not_used(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert outbound.session().trust_env is False


def _self_signed(tmp_path, name: str) -> tuple[str, str]:
    """A certificate for `name` (and its key), written as PEM files; it is also its own CA."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


def test_https_through_the_pinned_connection_keeps_sni_and_the_certificate_check(monkeypatch, settings, tmp_path):
    """The socket goes to the checked address; TLS still sends the host name (SNI) and verifies the certificate
    against it, so pinning weakens nothing."""
    import ssl
    from http.server import BaseHTTPRequestHandler, HTTPServer

    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    cert, key = _self_signed(tmp_path, "hooks.example")
    seen_sni: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in ("hooks.example", "other.example"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    port = server.server_address[1]
    try:
        response = outbound.session().post(
            f"https://hooks.example:{port}/x", json={}, timeout=5, allow_redirects=False, verify=cert
        )
        assert response.status_code == 204 and seen_sni == ["hooks.example"]
        # The same server reached under another name: the certificate does not match, the request fails.
        with pytest.raises(requests.exceptions.SSLError):
            outbound.session().post(
                f"https://other.example:{port}/x", json={}, timeout=5, allow_redirects=False, verify=cert
            )
    finally:
        server.shutdown()
        server.server_close()

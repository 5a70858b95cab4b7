"""Requests to URLs that users typed (alert webhooks): only to public addresses, and only to the address checked.

A webhook URL is chosen by any workspace admin, so sending to it must not become a way into the server's own
network (server-side request forgery): 127.0.0.1, the cloud metadata service at 169.254.169.254, private ranges,
and every disguise of them (``http://2130706433/``, ``http://0177.0.0.1/``, ``[::ffff:127.0.0.1]``, a name
whose DNS answer is private). Two places check:

- `check_url` when a channel is saved and again before each send: scheme (https unless DEBUG), the operator's
  allow-list, and every address the host resolves to.
- `session()` when the connection is opened: the connection class resolves the host itself, refuses the request
  if any answer is not public, and connects to the address it just checked (the TLS server name, certificate
  check and Host header stay the host name). A DNS answer that changes between the save-time check and the send
  (DNS rebinding) is therefore checked again at the only moment that matters. Redirects are never followed.

Addresses are classified with the standard library's `ipaddress` (no hand-written parsing); the resolver does
the parsing of odd numeric forms, so what is checked is exactly what the socket would connect to.

Why not a library: `advocate` has not been released since 2020. `requests-hardened` (maintained) pins the
address the same way and blocks similar ranges, but it checks a name's first answer only, lets reserved ranges
such as IPv4-compatible IPv6 (::127.0.0.1) through, has no host allow-list, logs the resolved address, and its
check is not a public function the channel form could call for a save-time error; adopting it would still leave
us writing the save-time check. The part that must be right, the classification, is the standard library's;
the pinning is one urllib3 method override (`_new_conn`), tested with SNI and certificate verification.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address a gateway would connect to (RFC 6052 NAT64, local-use NAT64).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class RefusedURL(ValueError):
    """The URL may not be requested; the message says why without naming any resolved address."""


def loopback_allowed() -> bool:
    """Tests and local development may point a webhook at a listener on 127.0.0.1 / ::1 (and over plain http).
    The setting is ignored unless DEBUG or HUBSYNC_TESTING is on, so it cannot open production up."""
    return bool(getattr(settings, "ALERT_WEBHOOK_ALLOW_LOOPBACK", False)) and bool(settings.DEBUG or settings.TESTING)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if any(address in net for net in _NAT64) or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str:
    """Why a connection to this address is refused ("" when it is a public unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = refusal(inner)
            if reason:
                return reason
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:  # shared address space (100.64/10) and the rest of the special-purpose registry
        return "not public"
    return ""


def _allowed(address: IPAddress) -> bool:
    reason = refusal(address)
    return not reason or (reason == "loopback" and loopback_allowed())


def resolve(host: str, port: int) -> IPAddress:
    """Every address `host` resolves to must be allowed; returns the first, the one to connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedURL(f"the host name {host!r} could not be resolved") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise RefusedURL(f"the host name {host!r} could not be resolved")
    for address in addresses:
        if not _allowed(address):
            raise RefusedURL(f"{host!r} is a {refusal(address)} address, not a public one")
    return addresses[0]


def _host_allowed(host: str) -> bool:
    """HUBSYNC_WEBHOOK_ALLOWED_HOSTS: empty allows any public host; "hooks.slack.com" that host only;
    ".example.com" the domain and its subdomains."""
    allowed = [h.strip().lower() for h in getattr(settings, "ALERT_WEBHOOK_ALLOWED_HOSTS", []) if h.strip()]
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    return any(
        host == entry or (entry.startswith(".") and (host.endswith(entry) or host == entry[1:])) for entry in allowed
    )


def check_url(url: str, *, resolve_host: bool = True, host_allow_list: bool = True) -> str:
    """Refuse (RefusedURL) a URL that may not be requested; returns it unchanged otherwise. `host_allow_list=False`
    skips the webhook allow-list (for addresses that are not webhooks, such as a Profile Space's custom endpoint);
    the address rules still apply."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedURL("this is not a valid web address") from None
    scheme = parts.scheme.lower()
    plain_ok = settings.DEBUG or loopback_allowed()
    if scheme != "https" and not (scheme == "http" and plain_ok):
        raise RefusedURL("only https:// addresses are allowed")
    host = parts.hostname or ""
    if not host:
        raise RefusedURL("the address has no host name")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("addresses with a user name or password are not allowed")
    if host_allow_list and not _host_allowed(host):
        raise RefusedURL(f"{host!r} is not in this server's webhook allow-list (HUBSYNC_WEBHOOK_ALLOWED_HOSTS)")
    if resolve_host:
        resolve(host, port or (443 if scheme == "https" else 80))
    return url


class _PinnedMixin:
    """Resolve, check, and connect to the checked address; `self.host` (SNI, certificate, Host) keeps the name."""

    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        address = resolve(name, self.port)  # RefusedURL (a ValueError) passes through urllib3 untouched
        self._dns_host = str(address)
        try:
            return super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = name


class _PinnedHTTPConnection(_PinnedMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedMixin, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    def __init__(self, *args: Any, host_allow_list: bool = True, **kwargs: Any) -> None:
        self.host_allow_list = host_allow_list
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        check_url(request.url or "", resolve_host=False, host_allow_list=self.host_allow_list)
        return super().send(request, *args, **kwargs)


def session(*, host_allow_list: bool = True, pool_maxsize: int = 10) -> requests.Session:
    """A session for user-chosen URLs: pinned, checked connections; no proxies from the environment (a proxy would
    make the connection check meaningless); callers pass allow_redirects=False."""
    s = requests.Session()
    s.trust_env = False
    s.max_redirects = 0
    for prefix in ("http://", "https://"):
        s.mount(prefix, PinnedAdapter(max_retries=0, host_allow_list=host_allow_list, pool_maxsize=pool_maxsize))
    return s

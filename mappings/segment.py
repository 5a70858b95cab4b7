"""The Segment HTTP Tracking API client (../shared/REFERENCE.md, "Segment HTTP Tracking API").

One job: POST a batch to a Profile Space's endpoint and say whether Segment accepted it. Transient failures
(408, 429, 5xx except 501/505, timeouts, connection errors) are retried a bounded number of times with
exponential backoff and full jitter, honouring `Retry-After`; every other 4xx is permanent and raised at once
with Segment's answer. The write key goes in the Basic auth header only, and never into an error or a log line.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings

from hubsync import outbound
from hubsync.http import full_jitter, retry_after_seconds

logger = logging.getLogger(__name__)

ENDPOINTS = {
    "us": "https://api.segment.io",
    "eu": "https://events.eu1.segmentapis.com",
}
LIBRARY = {"name": "hubsync", "version": "0.1.0"}

# Segment's limits. Batches are cut below the 500 KB limit: the envelope, and any difference in how Segment
# measures, must never push a batch over (the official library cuts at 475,000 bytes for the same reason).
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 475_000
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_ID_CHARS = 100

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, *range(506, 600)})
BODY_EXCERPT_CHARS = 2000


class SegmentError(Exception):
    """Segment did not accept a batch."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "", attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.attempts = attempts


class SegmentPermanentError(SegmentError):
    """A 4xx that retrying cannot fix (bad request, bad key, payload too large). The batch fails now."""


class SegmentTransientError(SegmentError):
    """Retries exhausted on 408/429/5xx, timeouts or connection errors. The batch may succeed later."""


@dataclass
class BatchResult:
    status: int
    body: str
    attempts: int  # HTTP requests made for this batch, retries included


CUSTOM = "custom"


def endpoint(region: str, custom: str = "") -> str:
    """The API root for a Profile Space's region (or its custom endpoint). The sandbox is resolved at call time
    (tests move BASE_URL)."""
    if region == CUSTOM:
        if not custom:
            raise ValueError("this Profile Space has no custom endpoint: enter one in its settings")
        return custom.rstrip("/")
    if region == "sandbox":
        return f"{settings.BASE_URL}/sandbox/segment"
    try:
        return ENDPOINTS[region]
    except KeyError:
        raise ValueError(f"unknown Segment region {region!r}") from None


def private_endpoints_allowed() -> bool:
    """A custom endpoint on this machine or a private network, and over plain http: only while developing (DEBUG)
    or in tests that allow loopback (hubsync.outbound.loopback_allowed). In production a custom endpoint follows
    the rules of every user-typed address (hubsync.outbound): https, public addresses only, checked again when
    each connection is opened."""
    return bool(settings.DEBUG)


def clean_custom_endpoint(url: str, *, resolve_host: bool = True) -> str:
    """The API root a user typed for a Segment-compatible host, normalised (no trailing slash; a pasted
    `/v1/batch` or `/v1` is taken off, since the client adds it), or ValueError saying what is wrong."""
    url = (url or "").strip()
    if not url:
        raise ValueError("Enter the endpoint's address, for example https://segment-proxy.example.com.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ValueError("This is not a valid web address.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("Enter a full address starting with https://, for example https://segment-proxy.example.com.")
    if scheme == "http" and not (private_endpoints_allowed() or outbound.loopback_allowed()):
        raise ValueError(
            "Use an https:// address: write keys must not travel in plain text (http is allowed only "
            "while DEBUG is on)."
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("Leave the user name and password out of the address: the write key is the credential.")
    if parts.query or parts.fragment:
        raise ValueError("Enter the API root only, without ?query or #fragment.")
    path = parts.path.rstrip("/")
    for suffix in ("/v1/batch", "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    normalised = urlunsplit((scheme, parts.netloc, path, "", ""))
    if not private_endpoints_allowed():
        try:
            outbound.check_url(normalised, resolve_host=resolve_host, host_allow_list=False)
        except outbound.RefusedURL as exc:
            raise ValueError(f"This endpoint cannot be used: {exc}.") from None
    return normalised


def encode_message(message: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, measured the way Segment measures a message's size."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def batch_body(messages: Sequence[bytes | dict[str, Any]], sent_at: str | None = None) -> bytes:
    """`{"batch":[...],"sentAt":"..."}` assembled from already-encoded messages (no second serialisation)."""
    parts = [m if isinstance(m, bytes | bytearray) else encode_message(m) for m in messages]
    return b'{"batch":[' + b",".join(parts) + b'],"sentAt":"' + (sent_at or _now_iso()).encode() + b'"}'


def _auth_header(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def _scrub(text: str, write_key: str) -> str:
    text = text[:BODY_EXCERPT_CHARS]
    return text.replace(write_key, "•••") if write_key else text


_local = threading.local()


def _session(region: str = "") -> requests.Session:
    """One pooled session per thread (requests.Session is not thread-safe), kept for the process's life. A custom
    endpoint is an address a user typed: outside DEBUG its connections go through hubsync.outbound's checked,
    pinned session (no private addresses, DNS answers checked when each connection opens)."""
    if region == CUSTOM and not private_endpoints_allowed():
        pinned = getattr(_local, "pinned", None)
        if pinned is None:
            pinned = _local.pinned = outbound.session(host_allow_list=False, pool_maxsize=8)
        return pinned
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


class SegmentClient:
    """Sends batches to one region. Retry knobs default to the SEGMENT_* settings; `sleep` is injectable so
    tests can check the waits without waiting."""

    def __init__(
        self,
        region: str,
        *,
        base_url: str = "",
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        backoff_cap: float | None = None,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = region
        self.base_url = base_url
        self.max_attempts = max_attempts or settings.SEGMENT_MAX_ATTEMPTS
        self.backoff_base = settings.SEGMENT_BACKOFF_BASE if backoff_base is None else backoff_base
        self.backoff_cap = settings.SEGMENT_BACKOFF_CAP if backoff_cap is None else backoff_cap
        self.timeout = timeout or settings.SEGMENT_TIMEOUT
        self.sleep = sleep

    @property
    def batch_url(self) -> str:
        return endpoint(self.region, self.base_url) + "/v1/batch"

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt)). A Retry-After is a floor (capped too, so a
        hostile or broken header cannot park a worker for hours)."""
        delay = full_jitter(attempt, base=self.backoff_base, cap=self.backoff_cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_cap))
        return delay

    def send_batch(self, write_key: str, messages: Sequence[bytes | dict[str, Any]]) -> BatchResult:
        """POST one batch. Returns when Segment accepted it (2xx); raises SegmentPermanentError or
        SegmentTransientError otherwise. Messages may be dicts or already-encoded JSON bytes."""
        body = batch_body(messages)
        headers = {
            "Authorization": _auth_header(write_key),
            "Content-Type": "application/json",
            "User-Agent": f"hubsync/{LIBRARY['version']}",
        }
        url = self.batch_url
        session = _session(self.region)
        last_error = ""
        last_status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                # Never follow a redirect: the write key would go wherever a proxy points.
                response = session.post(url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
            except outbound.RefusedURL as exc:
                # The custom endpoint's host resolves to an address that may not be reached: retrying cannot help.
                raise SegmentPermanentError(f"Segment endpoint refused: {exc}", attempts=attempt) from None
            except (requests.Timeout, requests.ConnectionError) as exc:
                # The exception text holds the URL at most, never the Authorization header.
                last_status, last_error = None, f"{type(exc).__name__}: {_scrub(str(exc), write_key)}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return BatchResult(status=status, body=response.text[:BODY_EXCERPT_CHARS], attempts=attempt)
                text = _scrub(response.text, write_key)
                if status not in RETRYABLE_STATUSES:
                    raise SegmentPermanentError(
                        f"Segment refused the batch: HTTP {status}: {text}", status=status, body=text, attempts=attempt
                    )
                last_status, last_error = status, f"HTTP {status}: {text}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt < self.max_attempts:
                delay = self.backoff(attempt - 1, retry_after)
                logger.info("segment batch attempt %d failed (%s); retrying in %.2fs", attempt, last_error[:200], delay)
                self.sleep(delay)
        raise SegmentTransientError(
            f"Segment did not accept the batch after {self.max_attempts} attempts; last: {last_error}",
            status=last_status,
            body=last_error,
            attempts=self.max_attempts,
        )


def send_batch(write_key: str, messages: Sequence[bytes | dict[str, Any]], *, region: str = "us") -> BatchResult:
    """Send one batch to the region's endpoint with the default retry policy."""
    return SegmentClient(region).send_batch(write_key, messages)


def close_session() -> None:
    """Close this thread's pooled connections (tests, and workers shutting down)."""
    for name in ("session", "pinned"):
        session = getattr(_local, name, None)
        if session is not None:
            session.close()
            setattr(_local, name, None)


@dataclass
class ConnectionCheck:
    ok: bool
    detail: str


def check_connection(region: str, write_key: str, *, base_url: str = "", timeout: float = 10) -> ConnectionCheck:
    """Verify a Profile Space's endpoint answers, sending nothing to any profile.

    The sandbox can say whether it knows the key (`GET /v1/_check`). Real Segment cannot: its Tracking API
    answers 200 to any key, so against US/EU we post an empty batch, which proves the endpoint is reachable and
    accepts our requests, and say that the key itself is only confirmed when messages show up in the space.
    """
    base = endpoint(region, base_url)
    headers = {"Authorization": _auth_header(write_key), "Content-Type": "application/json"}
    try:
        if region == "sandbox":
            response = _session().get(f"{base}/v1/_check", headers=headers, timeout=timeout)
            if response.status_code == 200:
                return ConnectionCheck(True, "The sandbox endpoint answered and knows this write key.")
            if response.status_code == 401:
                return ConnectionCheck(False, "The sandbox endpoint answered, but no sandbox space has this write key.")
            return ConnectionCheck(False, f"The sandbox endpoint answered HTTP {response.status_code}.")
        response = _session(region).post(
            f"{base}/v1/batch", data=batch_body([]), headers=headers, timeout=timeout, allow_redirects=False
        )
    except outbound.RefusedURL as exc:
        return ConnectionCheck(False, f"{base} may not be reached from this server: {exc}.")
    except requests.RequestException as exc:
        return ConnectionCheck(False, f"Could not reach {base}: {type(exc).__name__}.")
    if 200 <= response.status_code < 300:
        return ConnectionCheck(
            True,
            f"{base} answered and accepted an empty batch. Segment does not confirm write keys over this API: "
            "the key is confirmed when the first messages appear in the space's debugger.",
        )
    return ConnectionCheck(False, f"{base} answered HTTP {response.status_code}: {_scrub(response.text, write_key)}")

"""Realism: rate limits, latency, random 5xx and dropped connections.

Rate-limit counters live in the memory of the serving process (one `sandbox_serve` process, or the test
process running live_server); they are not shared between processes. That is enough to be faithful because the
sandbox is always served by one process; `reset_rate_limits()` clears them (tests do, between tests).
"""

from __future__ import annotations

import bisect
import json
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    body = _json_body(data)
    resp = HttpResponse(body, status=status, content_type="application/json;charset=utf-8")
    if headers:
        for k, v in headers.items():
            resp[k] = v
    return resp


def _json_body(data: Any) -> bytes:
    """Compact UTF-8 JSON. orjson writes a page of records several times faster than the json module (the
    double shares the benchmark machine with the client it serves); what orjson refuses (integers beyond 64 bits,
    a key that is not a string) goes through the json module."""
    try:
        return orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def correlation_id() -> str:
    return str(uuid.uuid4())


def error_response(status: int, category: str, message: str, **extra: Any) -> HttpResponse:
    cid = correlation_id()
    body = {"status": "error", "message": message, "correlationId": cid, "category": category}
    body.update(extra)
    return json_response(body, status=status, headers={"X-HubSpot-Correlation-Id": cid})


# --- rate limits ---------------------------------------------------------------------------------------------
# The WSGI environ key sandbox_serve sets to the time.monotonic() a request reached it.
ARRIVED = "sandbox.arrived"


class SlidingWindow:
    """HubSpot's rolling windows: a request counts at the moment it arrived (a gateway counts at its edge, before
    the request is handled), so requests that arrived in one order may be counted in another here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[Any, list[float]] = {}

    def hit(self, key: Any, maximum: int, interval_s: float, at: float | None = None) -> tuple[bool, int]:
        """Count one request that arrived `at` (time.monotonic(); now when not given): allowed when fewer than
        `maximum` requests arrived in the `interval_s` before it; returns (allowed, remaining after it)."""
        now = time.monotonic()
        at = now if at is None else min(at, now)
        with self._lock:
            stamps = self._hits.setdefault(key, [])
            # Kept a second longer than the window: a request handled late still sees what arrived before it.
            del stamps[: bisect.bisect_right(stamps, now - interval_s - 1.0)]
            used = bisect.bisect_right(stamps, at) - bisect.bisect_right(stamps, at - interval_s)
            if used >= maximum:
                return False, 0
            bisect.insort(stamps, at)
            return True, maximum - used - 1

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


GENERAL = SlidingWindow()
SEARCH = SlidingWindow()


def reset_rate_limits() -> None:
    GENERAL.clear()
    SEARCH.clear()


def rate_limited_response(search: bool) -> HttpResponse:
    cid = correlation_id()
    if search:
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": cid,
            "policyName": "SECONDLY",
            "category": "RATE_LIMITS",
        }
    else:
        body = {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": cid,
            "policyName": "TEN_SECONDLY_ROLLING",
            "category": "RATE_LIMITS",
        }
    return json_response(body, status=429, headers={"X-HubSpot-Correlation-Id": cid})


# --- faults ----------------------------------------------------------------------------------------------------
GATEWAY_BODIES = {
    502: "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
    500: '{"status":"error","message":"internal error","category":"INTERNAL_ERROR"}',
    503: '{"status":"error","message":"Service Unavailable","category":"SERVICE_UNAVAILABLE"}',
    504: "<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>",
}


def fault_response(status: int) -> HttpResponse:
    body = GATEWAY_BODIES.get(status, GATEWAY_BODIES[503])
    ctype = "application/json;charset=utf-8" if body.startswith("{") else "text/html"
    return HttpResponse(body, status=status, content_type=ctype)


class ConnectionDropped(Exception):
    """Raised after the client socket was shut down, so nothing more is written."""


def _find_socket(request: HttpRequest) -> socket.socket | None:
    sock = request.META.get("gunicorn.socket") or request.META.get("sandbox.socket")
    if isinstance(sock, socket.socket):
        return sock
    # wsgiref-based servers (runserver, live_server) do not expose the socket: find the request handler
    # that is serving this thread further up the stack.
    frame = sys._getframe(1)
    while frame is not None:
        obj = frame.f_locals.get("self")
        if isinstance(obj, socketserver.StreamRequestHandler):
            return obj.connection
        frame = frame.f_back
    return None


def drop_connection(request: HttpRequest) -> HttpResponse:
    """Abort the connection without an HTTP response: the client sees a connection error."""
    sock = _find_socket(request)
    if sock is None:
        raise ConnectionDropped("sandbox: connection reset (no socket available)")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    # Never reaches the client: the server's attempt to write it is a broken pipe, which both gunicorn and
    # Django's server ignore quietly (status 200 so Django does not log a bogus error response either).
    resp = HttpResponse(b"")
    resp["Connection"] = "close"
    return resp

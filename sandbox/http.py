"""What every sandbox JSON endpoint shares: reading a JSON object body safely, and refusing browser requests from
other sites (the endpoints are CSRF-exempt and need no login, so any page a developer visits could otherwise
drive them while `make run` is up)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class BadBody(ValueError):
    """The body is not a JSON object (invalid, nested too deeply, or another JSON type)."""


def json_object(raw: bytes | str, *, default: str = "{}") -> dict[str, Any]:
    try:
        value = json.loads(raw or default)
    except RecursionError as exc:  # "[[[[…" thousands deep exhausts the parser's stack
        raise BadBody("The JSON body is nested too deeply.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody("The body is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise BadBody("The body must be a JSON object.")
    return value


def _same_origin(request: HttpRequest, origin: str) -> bool:
    from django.conf import settings

    try:
        own = f"{request.scheme}://{request.get_host()}"
    except Exception:  # DisallowedHost: Django answers that one itself
        return False
    return origin == own or origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", [])


class OriginCheckMiddleware:
    """State-changing requests to /sandbox/ from a browser page of another origin get 403.

    Non-browser clients (curl, the HubSpot and Segment SDKs, hubsync's own workers) send no Origin and pass; so
    does the sandbox's own UI (same origin). Browsers always send Origin on cross-site POSTs (and `null` from
    sandboxed frames and data: URLs, which is refused too)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/sandbox/") and request.method in UNSAFE_METHODS:
            origin = request.headers.get("Origin")
            cross_site = request.headers.get("Sec-Fetch-Site") == "cross-site"
            if (origin is not None and not _same_origin(request, origin)) or (origin is None and cross_site):
                return JsonResponse(
                    {
                        "error": "cross_origin",
                        "message": "The sandbox accepts changes only from its own pages "
                        "or from clients that send no Origin (curl, SDKs).",
                    },
                    status=403,
                )
        return self.get_response(request)

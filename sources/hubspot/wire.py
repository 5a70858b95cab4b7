"""HubSpot wire basics: the API root, typed errors, secret-free log lines, backoff."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import requests
from django.conf import settings

from hubsync.http import full_jitter, retry_after_seconds

log = logging.getLogger("sources.hubspot")

BATCH_SIZE = 100
SECRET_KEYS = {"access_token", "refresh_token", "token", "client_secret", "code", "code_verifier", "password"}
REDACTED = "•••"


def api_base() -> str:
    """HubSpot's API root: HUBSPOT_API_BASE, or the sandbox on this server when that is empty."""
    return settings.HUBSPOT_API_BASE.rstrip("/") or f"{settings.BASE_URL.rstrip('/')}/sandbox/hubspot"


# --- errors ---------------------------------------------------------------------------------------------


def redact(value: Any) -> Any:
    """A copy of a JSON body with every secret-looking field masked."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in SECRET_KEYS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class HubSpotError(Exception):
    """A HubSpot call that failed. `body` is HubSpot's error body with secrets masked."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        category: str = "",
        correlation_id: str = "",
        body: dict | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.category = category
        self.correlation_id = correlation_id
        self.body = redact(body or {})
        super().__init__(message)

    def __str__(self) -> str:
        parts = [str(self.status) if self.status else "", self.category]
        head = " ".join(p for p in parts if p)
        text = f"{head}: {self.message}" if head else self.message
        return f"{text} (correlationId {self.correlation_id})" if self.correlation_id else text

    @classmethod
    def from_response(cls, response: requests.Response, default: str = "") -> HubSpotError:
        body = _json_or_empty(response)
        message = body.get("message") or body.get("error_description") or default or response.reason or "error"
        category = body.get("category") or body.get("status") or body.get("error") or ""
        if category == "error":  # HubSpot's generic {"status": "error"}: the category field says more
            category = body.get("category") or ""
        return cls(
            str(message),
            status=response.status_code,
            category=str(category),
            correlation_id=str(body.get("correlationId") or response.headers.get("X-HubSpot-Correlation-Id", "")),
            body=body,
        )


class TransientError(HubSpotError):
    """429 / 5xx / timeout / connection reset, still failing after the bounded retries."""


class AuthError(HubSpotError):
    """401 even after one refresh and one retry (or no way to refresh)."""


class NeedsReconnect(HubSpotError):
    """The refresh token is revoked or invalid: the source is marked needs_reconnect and its schedule stopped."""


class MissingScopes(HubSpotError):
    """403: the connection lacks a scope (fails that collection only)."""


class NotFound(HubSpotError):
    """404."""


class BadRequest(HubSpotError):
    """400, e.g. a search paging past 10,000 results."""


# Timeouts, refused / reset connections, and a connection dropped while the body was being read.
NETWORK_ERRORS = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError)

_BY_STATUS: dict[int, type[HubSpotError]] = {400: BadRequest, 401: AuthError, 403: MissingScopes, 404: NotFound}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_or_empty(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- logging without secrets ----------------------------------------------------------------------------

_TOKEN_PATH = re.compile(r"(/access-tokens/|/refresh-tokens/)[^/?#]+")
_SECRET_QUERY = re.compile(r"([?&](?:" + "|".join(SECRET_KEYS | {"hapikey"}) + r")=)[^&#]*", re.IGNORECASE)


def safe_url(url: str) -> str:
    """The URL with tokens in the path or query masked, and the property list shortened: fit for a log line."""
    url = _TOKEN_PATH.sub(r"\1" + REDACTED, url)
    url = _SECRET_QUERY.sub(r"\1" + REDACTED, url)
    return url if len(url) <= 300 else url[:300] + "…"


# --- backoff --------------------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Full-jitter backoff before retry `attempt` (1-based): the first retry waits up to `base`."""
    return full_jitter(attempt - 1, base=base, cap=cap)


def _retry_after(response: requests.Response) -> float | None:
    return retry_after_seconds(response.headers.get("Retry-After"))

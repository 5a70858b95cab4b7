"""Small HTTP helpers shared by the HubSpot and Segment clients."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110); None if absent or
    unreadable, so the caller falls back to its own backoff."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def full_jitter(exponent: int, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^exponent)].
    Spreads retries of many workers hitting the same limit instead of synchronising them."""
    return random.uniform(0, min(cap, base * (2 ** max(0, exponent))))


def safe_next(request, default: str) -> str:
    """Where to go back to: the request's `next` when it is a path on this site, else `default`.

    Only a path (`/...`) is taken, never a URL name (Django's redirect() would reverse one, and a made-up name is
    a NoReverseMatch, a 500) and never another host (`https://evil.example`, `//evil.example`, `/\\evil.example`:
    an open redirect)."""
    from django.utils.http import url_has_allowed_host_and_scheme

    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if (
        nxt.startswith("/")
        and not nxt.startswith(("//", "/\\"))
        and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    ):
        return nxt
    return default

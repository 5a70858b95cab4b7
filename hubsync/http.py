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

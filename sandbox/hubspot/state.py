"""Per-process cache of the knobs row and portal rows, so an API call costs one query (the change overlay).

Writes made in this process invalidate at once (signals, and explicit calls after queryset updates); writes
made by another process (e.g. `sandbox_mutate` or a test talking to a `sandbox_serve` subprocess) apply within
CACHE_SECONDS. Record changes are never cached: every page reads its overlay rows.
"""

from __future__ import annotations

import threading
import time

from .models import Knobs, Portal

CACHE_SECONDS = 1.0
_lock = threading.Lock()
_knobs: tuple[float, Knobs] | None = None
_portals: dict[int, tuple[float, Portal | None]] = {}


def knobs() -> Knobs:
    global _knobs
    cached = _knobs
    now = time.monotonic()
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    obj = Knobs.load()
    _knobs = (now, obj)
    return obj


def portal(hub_id: int) -> Portal | None:
    from .portals import get_portal

    cached = _portals.get(hub_id)
    now = time.monotonic()
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    obj = get_portal(hub_id)
    with _lock:
        if len(_portals) > 1000:
            _portals.clear()
        _portals[hub_id] = (now, obj)
    return obj


def invalidate(*_args, **_kwargs) -> None:
    global _knobs
    _knobs = None
    with _lock:
        _portals.clear()

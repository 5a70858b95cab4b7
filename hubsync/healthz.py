"""GET /healthz from a shared, recent health report instead of a broker round trip per request.

Checking the workers means a broadcast ping that waits up to HEALTH_WORKER_TIMEOUT; doing that on every request
made /healthz a slow path anyone could hammer. Here at most one request per HEALTH_CACHE_SECONDS, across every
web process (the report and a refresh lock live in the shared cache), runs the checks of hubsync.health; every
other request answers at once from the last report. A request that finds another one refreshing answers from the
previous report while it is at most HEALTH_STALE_SECONDS old, and otherwise waits for the refresh (bounded by the
checks' own timeouts). When the cache itself is unreachable (Redis down is also a broker down) a per-process
copy does the same job, so the answer still comes, and says what is failing.

The internet sees only the overall state ({"status", "failing", and "ok" per part}); worker names, the broker
transport and error texts are for operators: a staff user, or a request with `Authorization: Bearer
<HUBSYNC_HEALTH_TOKEN>`.
"""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any, TypeGuard

from django.conf import settings
from django.core.cache import cache

from . import health

REPORT_KEY = "hubsync:healthz:report"
LOCK_KEY = "hubsync:healthz:refreshing"
PARTS = ("database", "broker", "workers")

# Used only when the shared cache cannot be reached.
_local: dict[str, Any] = {}
_local_lock = threading.Lock()


def _checks_budget() -> float:
    """The longest one refresh can take: broker connect, then worker ping, plus a margin."""
    return settings.HEALTH_BROKER_TIMEOUT + settings.HEALTH_WORKER_TIMEOUT + 2


def _refresh() -> dict[str, Any]:
    report, ok = health.check_all()
    return {"at": time.time(), "report": report, "ok": ok}


def _usable(entry: Any, max_age: float) -> TypeGuard[dict[str, Any]]:
    return isinstance(entry, dict) and time.time() - entry.get("at", 0) < max_age


def _from_local() -> dict[str, Any]:
    entry = _local.get(REPORT_KEY)
    if _usable(entry, settings.HEALTH_CACHE_SECONDS):
        return entry
    if not _local_lock.acquire(blocking=False):
        if _usable(entry, settings.HEALTH_STALE_SECONDS):
            return entry
        if _local_lock.acquire(timeout=_checks_budget()):
            _local_lock.release()
        return _local.get(REPORT_KEY) or _refresh()
    try:
        _local[REPORT_KEY] = entry = _refresh()
        return entry
    finally:
        _local_lock.release()


def current() -> dict[str, Any]:
    """The latest health report: {"at": epoch seconds, "report": {...}, "ok": bool}."""
    try:
        entry = cache.get(REPORT_KEY)
        if _usable(entry, settings.HEALTH_CACHE_SECONDS):
            return entry
        refreshing = not cache.add(LOCK_KEY, 1, timeout=int(_checks_budget()) + 1)
    except Exception:  # the shared cache is down: answer per process
        return _from_local()
    if not refreshing:
        try:
            entry = _refresh()
            cache.set(REPORT_KEY, entry, timeout=int(max(settings.HEALTH_STALE_SECONDS, 60)))
            return entry
        finally:
            cache.delete(LOCK_KEY)
    if _usable(entry, settings.HEALTH_STALE_SECONDS):
        return entry
    # First request after a quiet spell while another one refreshes: wait for its answer, not for a ping of our own.
    deadline = time.monotonic() + _checks_budget()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        entry = cache.get(REPORT_KEY)
        if _usable(entry, settings.HEALTH_STALE_SECONDS):
            return entry
    return _refresh()  # the other refresh died with its process: do it here


def is_operator(request: Any) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and (user.is_staff or user.is_superuser):
        return True
    token = getattr(settings, "HUBSYNC_HEALTH_TOKEN", "")
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def body_for(request: Any, entry: dict[str, Any]) -> dict[str, Any]:
    report = entry["report"]
    if is_operator(request):
        return {**report, "checked_at": entry["at"], "age_seconds": round(max(0.0, time.time() - entry["at"]), 1)}
    return {
        "status": report["status"],
        "failing": report["failing"],
        **{part: {"ok": bool(report[part]["ok"])} for part in PARTS},
    }

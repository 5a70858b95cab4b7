"""The beat dispatcher's hook list.

Beat fires `hubsync.dispatch` every minute (exactly one beat runs); the task calls every registered
dispatcher, and each one enqueues whatever work of its app is due (sources: syncs whose next_sync_at has
passed). Apps register from their AppConfig.ready() so every worker has the full list:

    from hubsync.dispatch import register
    register(dispatch_due_syncs)

A dispatcher must be cheap and idempotent: it runs every minute, and a missed or doubled tick must neither lose
nor double work (the "one run at a time" constraints in the database decide that, not the dispatcher).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

Dispatcher = Callable[[], Any]
_dispatchers: list[Dispatcher] = []


def register(dispatcher: Dispatcher) -> Dispatcher:
    """Add a dispatcher (usable as a decorator). Registering the same function twice keeps one entry."""
    if dispatcher not in _dispatchers:
        _dispatchers.append(dispatcher)
    return dispatcher


def unregister(dispatcher: Dispatcher) -> None:
    if dispatcher in _dispatchers:
        _dispatchers.remove(dispatcher)


def dispatchers() -> list[Dispatcher]:
    # HUBSYNC_DISPATCHERS (dotted paths) lets a deployment or a test add dispatchers without an app.
    extra = [import_string(path) for path in getattr(settings, "HUBSYNC_DISPATCHERS", [])]
    return [*_dispatchers, *(d for d in extra if d not in _dispatchers)]


def _name(dispatcher: Dispatcher) -> str:
    return f"{getattr(dispatcher, '__module__', '?')}.{getattr(dispatcher, '__qualname__', repr(dispatcher))}"


def dispatch_due() -> dict[str, Any]:
    """Call every dispatcher; one that fails is logged and the others still run (next tick retries it)."""
    results: dict[str, Any] = {}
    for dispatcher in dispatchers():
        name = _name(dispatcher)
        try:
            results[name] = dispatcher()
        except Exception as exc:
            logger.exception("dispatcher %s failed", name)
            results[name] = {"error": type(exc).__name__}
    return results

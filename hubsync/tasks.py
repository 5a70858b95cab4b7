"""Core tasks. Thin: the work lives in hubsync.dispatch."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .dispatch import dispatch_due


@shared_task(name="hubsync.dispatch", ignore_result=True)
def dispatch() -> dict[str, Any]:
    """Fired by beat every minute: enqueue whatever is due (each app registers its dispatcher)."""
    return dispatch_due()

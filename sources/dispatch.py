"""The beat dispatcher: every minute, enqueue the syncs that are due (wired into the `hubsync.dispatch` task)."""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone

from . import live
from .models import Source, SyncRun
from .tasks import enqueue_sync

logger = logging.getLogger(__name__)


def dispatch_due_syncs() -> int:
    """Enqueue a run for every enabled, connected source whose next sync is due. Returns how many were queued.

    Sources that still have an active run are skipped by enqueue_sync (the database decides); an active run
    whose worker died is taken over there, so a dead worker never stops a schedule for longer than the
    heartbeat timeout. A source that never synced (next_sync_at unset) counts as due."""
    now = timezone.now()
    due = Source.objects.filter(enabled=True, status=Source.Status.OK).filter(
        Q(next_sync_at__lte=now) | Q(next_sync_at__isnull=True)
    )
    queued = 0
    for source in due.order_by("next_sync_at", "pk").iterator():
        trigger = SyncRun.Trigger.FIRST if source.first_synced_at is None else SyncRun.Trigger.SCHEDULED
        if enqueue_sync(source=source, trigger=trigger) is not None:
            queued += 1
    if queued:
        logger.info("dispatcher queued %d sync(s)", queued)
    return queued


def dispatch_live() -> dict[str, int]:
    """Live updates' safety net (sources.live): events left pending or claimed by a dead worker are scheduled
    again; applied events past their retention leave."""
    return {"scheduled": live.sweep(), "pruned": live.prune()}

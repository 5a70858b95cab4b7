"""Sync run rows: creation, staleness, takeover (the task is sent by sources.tasks.enqueue_sync).

One run per source at a time is decided by the database: SyncRun's partial unique constraint allows a single
queued-or-running row per source. A run whose worker died (no heartbeat for HUBSYNC_RUN_STALE_SECONDS) would
block its source forever, so every path that finds the slot taken checks for that and takes the slot over:
the dead run is marked failed ("worker lost") and a new run starts from the committed cursors.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Source, SourceCollection, SyncRun


def create_run(
    *, source: Source, trigger: str, status: str = SyncRun.Status.QUEUED, reset_cursors: bool | None = None
) -> SyncRun | None:
    """Insert the run row (no task). A full sync resets the cursors in the same transaction, so a full run that
    is killed and taken over resumes its re-read instead of starting it again (a takeover passes
    reset_cursors=False)."""
    if reset_cursors is None:
        reset_cursors = trigger == SyncRun.Trigger.FULL
    for attempt in range(2):
        try:
            with transaction.atomic():
                run = SyncRun.objects.create(source=source, trigger=trigger, status=status)
                if reset_cursors:
                    SourceCollection.objects.filter(source=source).update(cursor={})
                return run
        except IntegrityError:
            # The slot is taken. If its holder is dead, free the slot once and try again.
            if attempt or not fail_stale_active_run(source_id=source.pk):
                return None
    return None


def is_stale(run: SyncRun, now=None) -> bool:
    return run.is_stale(
        running_after=timedelta(seconds=settings.HUBSYNC_RUN_STALE_SECONDS),
        queued_after=timedelta(seconds=settings.HUBSYNC_RUN_QUEUED_STALE_SECONDS),
        now=now,
    )


def fail_stale_active_run(*, source_id: int) -> bool:
    """Mark the source's active run failed if its worker is gone. True when the slot was freed."""
    now = timezone.now()
    with transaction.atomic():
        run = (
            SyncRun.objects.select_for_update()
            .filter(source_id=source_id, status__in=SyncRun.ACTIVE)
            .order_by("-id")
            .first()
        )
        if run is None:
            return True  # finished in the meantime
        if not is_stale(run, now):
            return False
        mark_lost(run, now=now)
        return True


def mark_lost(run: SyncRun, *, now=None) -> None:
    """The worker of `run` is gone: fail the run. Its committed pages stay; the cursors carry the progress."""
    now = now or timezone.now()
    if run.status == SyncRun.Status.QUEUED:
        run.error = "never started: its task was lost; replaced by a new run"
    else:
        seen = run.heartbeat_at or run.started_at
        run.error = (
            f"worker lost (no heartbeat since {seen:%Y-%m-%d %H:%M:%S} UTC); the next run resumes from its last page"
        )
    run.status = SyncRun.Status.FAILED
    run.finished_at = now
    run.save(update_fields=["status", "error", "finished_at"])
    Source.objects.filter(pk=run.source_id).update(last_run=run)

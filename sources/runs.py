"""Starting sync runs: one typed function used by views, the dispatcher, commands and tests."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from .models import Source, SyncRun


def enqueue_sync(*, source: Source, trigger: str) -> SyncRun | None:
    """Create a queued SyncRun and enqueue its task after commit. Returns None when the source already has an
    active (queued or running) run: the database's partial unique constraint decides, not a lock."""
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(source=source, trigger=trigger, status=SyncRun.Status.QUEUED)
    except IntegrityError:
        return None
    from .tasks import run_sync

    run_sync.delay_on_commit(run.pk)
    return run

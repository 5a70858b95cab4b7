"""The sync task, and the one way to start it: a run row first, then the task by id after commit. And the helper
task of partitioned reads."""

from __future__ import annotations

from celery import shared_task

from .extraction import execute_partitions, execute_run
from .extraction.partitions import READ_PARTITIONS
from .live import apply_pending
from .models import Source, SyncRun
from .runs import create_run


@shared_task(name="sources.run_sync", acks_late=True)
def run_sync(run_id: int) -> None:
    execute_run(run_id=run_id)


@shared_task(name="sources.apply_live", acks_late=True, queue="extract")
def apply_live(source_id: int, collection: str) -> dict[str, int]:
    """Apply the pending webhook events of one source's collection (sources.live)."""
    return apply_pending(source_id=source_id, collection=collection).as_dict()


@shared_task(name=READ_PARTITIONS, acks_late=True)
def read_partitions(run_id: int) -> None:
    """Help a running sync with the id ranges of its partitioned reads (sources.extraction.partitions)."""
    execute_partitions(run_id=run_id)


def enqueue_sync(*, source: Source, trigger: str) -> SyncRun | None:
    """Create a queued SyncRun and enqueue its task after commit. Returns None when the source already has an
    active (queued or running) run: the database's partial unique constraint decides, not a lock."""
    run = create_run(source=source, trigger=trigger)
    if run is None:
        return None
    run_sync.delay_on_commit(run.pk)
    return run

"""Thin tasks: take an id, call the engine."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="mappings.deliver_mapping", acks_late=True, queue="deliver")
def deliver_mapping(mapping_id: int, sync_run_id: int | None = None) -> int | None:
    from .deliver import deliver

    run = deliver(mapping_id=mapping_id, sync_run_id=sync_run_id)
    return run.pk if run is not None else None

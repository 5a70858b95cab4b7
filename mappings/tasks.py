"""Thin tasks: take ids, call the engine or a service."""

from __future__ import annotations

from celery import shared_task

from hubsync import handoff

from .delivery import deliver, deliveries_after_sync
from .services import DELIVER_MAPPING


@shared_task(name=DELIVER_MAPPING, acks_late=True, queue="deliver")
def deliver_mapping(mapping_id: int, sync_run_id: int | None = None) -> int | None:
    run = deliver(mapping_id=mapping_id, sync_run_id=sync_run_id)
    return run.pk if run is not None else None


@shared_task(name=handoff.MIRROR_CHANGED, acks_late=True, queue="deliver", ignore_result=True)
def mirror_changed(*, source_id: int, collections: list[str], sync_run_id: int | None = None) -> int:
    """Extraction changed the mirror of these collections: start the deliveries that read them, and those of
    collections whose deliveries are behind."""
    return deliveries_after_sync(source_id=source_id, collections=collections, sync_run_id=sync_run_id)

"""Which deliveries start: after a sync (enqueued, through `services.request_delivery`), or one after the other in
this process (`manage.py sync`, tests)."""

from __future__ import annotations

from typing import Any

from sources.extraction import execute_run_foreground
from sources.models import Source, SourceCollection, SyncRun

from ..models import DeliveryRun, Mapping
from ..services import request_delivery
from .engine import deliver
from .pending import mapping_behind


def enqueue_deliveries(
    *, source: Any, collections: list[str] | tuple[str, ...] | set[str], sync_run: Any = None
) -> int:
    """Enqueue (after commit) a delivery of every enabled mapping whose data model reads one of `collections`
    of `source`. The extraction engine calls this after merging pages, also during long backfills. Returns the
    number of deliveries enqueued."""
    mapping_ids = list(
        Mapping.objects.filter(
            enabled=True, paused_reason="", data_model__source=source, data_model__collection__in=list(collections)
        ).values_list("pk", flat=True)
    )
    sync_run_id = getattr(sync_run, "pk", None)
    for mapping_id in mapping_ids:
        request_delivery(mapping_id=mapping_id, sync_run_id=sync_run_id)
    return len(mapping_ids)


def deliveries_after_sync(*, source_id: int, collections: list[str], sync_run_id: int | None = None) -> int:
    """The reaction to extraction's "mirror changed": enqueue a delivery of every enabled mapping of the source
    that has something to deliver, whether the run changed its collection (`collections`) or its deliveries are
    behind (a failed or killed delivery, a mapping enabled or edited since), so the next run resends them even
    when HubSpot had no change. A mapping with nothing to deliver gets no delivery: the run's changes may
    already have been delivered by a delivery started during the run. Returns the number enqueued."""
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return 0
    sync_run_id = sync_run_id if sync_run_id is None or SyncRun.objects.filter(pk=sync_run_id).exists() else None
    schemas: dict[str, dict] = {}
    enqueued = 0
    for mapping in _enabled_mappings(source).filter(paused_reason=""):
        collection = mapping.data_model.collection
        if collection not in schemas:
            schemas[collection] = _schema(source, collection)
        if mapping_behind(mapping, schemas[collection]):
            enqueued += int(request_delivery(mapping_id=mapping.pk, sync_run_id=sync_run_id))
    return enqueued


def collections_behind(source: Any) -> set[str]:
    """The collections of `source` with an enabled mapping that has not delivered everything in the mirror
    (`pending.mapping_behind`). `sync_in_foreground` adds them to the collections it delivers after a run, so a
    delivery that did not finish is resent by the next run even when HubSpot had no change."""
    behind: set[str] = set()
    for mapping in _enabled_mappings(source):
        collection = mapping.data_model.collection
        if collection not in behind and mapping_behind(mapping, _schema(source, collection)):
            behind.add(collection)
    return behind


def _enabled_mappings(source: Any) -> Any:
    return Mapping.objects.filter(enabled=True, data_model__source=source).select_related("data_model", "destination")


def _schema(source: Any, collection: str) -> dict:
    return (
        SourceCollection.objects.filter(source=source, collection=collection)
        .values_list("properties", flat=True)
        .first()
    ) or {}


def sync_in_foreground(*, run_id: int, progress: Any = None) -> tuple[SyncRun | None, set[str]]:
    """One sync run executed in this process, which then delivers by itself (`manage.py sync`, tests): returns
    the finished run (None when another worker owns it) and the collections to deliver, those the run changed
    and those whose deliveries are behind."""
    finished, changed = execute_run_foreground(run_id=run_id, progress=progress)
    if finished is None:
        return None, changed
    return finished, changed | collections_behind(finished.source)


def deliver_collections(
    *, source: Any, collections: list[str] | tuple[str, ...] | set[str], sync_run_id: int | None = None
) -> list[tuple[Mapping, DeliveryRun | None]]:
    """Deliver, in this process and one after the other, every enabled mapping on `collections` of `source`
    that has something to deliver (what deliveries_after_sync would queue). For `manage.py sync` and tests;
    (mapping, run or None) each: None when it had nothing to deliver, or was disabled or busy."""
    mappings = (
        Mapping.objects.filter(enabled=True, data_model__source=source, data_model__collection__in=list(collections))
        .select_related("data_model")
        .order_by("pk")
    )
    return [
        (mapping, deliver(mapping_id=mapping.pk, sync_run_id=sync_run_id) if mapping_behind(mapping) else None)
        for mapping in mappings
    ]

"""Reads of the delivery bookkeeping: what views, the delivery engine and the record debugger ask about a mapping's
records."""

from __future__ import annotations

from django.db.models import QuerySet

from sources.models import Record

from .models import DeliveryState, Mapping


def delivered_before(state: DeliveryState | None) -> bool:
    """Segment took a message for this record from this mapping at some point (also after a "Resync all")."""
    return state is not None and bool(state.delivered_hash or state.delivered_at)


def sample_cutoff(mapping: Mapping) -> int | None:
    """Sample mode: the highest object id in the sample (the N-th lowest id of the collection, archived records
    included), or None when every record is in it (no sample mode, or fewer than N records so far). Records
    arrive with growing ids, so the cutoff only moves down, except when records HubSpot deleted for good leave
    the mirror: the extraction engine then sends these mappings back to watermark 0. One index scan on the
    mirror's unique (source, collection, object_id)."""
    size = mapping.sample_size
    if not size:
        return None
    model = mapping.data_model
    return (
        Record.objects.filter(source_id=model.source_id, collection=model.collection)
        .order_by("object_id")
        .values_list("object_id", flat=True)[size - 1 : size]
        .first()
    )


def rejected_states(mapping: Mapping) -> QuerySet[DeliveryState]:
    """The mapping's rejected records (the list users filter and retry from)."""
    return DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.REJECTED)

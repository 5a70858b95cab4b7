"""Whether a mapping has anything to deliver, so that nothing starts a delivery that would consider 0 records."""

from __future__ import annotations

from typing import Any

from sources.models import Record, SourceCollection

from ..models import DeliveryState, Mapping
from .messages import MessageBuilder


def mapping_behind(mapping: Mapping, schema: dict[str, Any] | None = None) -> bool:
    """Whether `mapping` has not delivered everything in the mirror: rows past its watermark (a failed, partial or
    killed delivery holds the watermark back), a configuration changed since its watermark was set, or records
    waiting for a retry (they wait below the watermark). `schema` is its collection's property schema (read here
    when not given)."""
    model = mapping.data_model
    if schema is None:
        schema = (
            SourceCollection.objects.filter(source_id=model.source_id, collection=model.collection)
            .values_list("properties", flat=True)
            .first()
        ) or {}
    if mapping.watermark_config_hash != MessageBuilder(mapping, schema).config_hash:
        return True
    pending = Record.objects.filter(
        source_id=model.source_id, collection=model.collection, change_seq__gt=mapping.watermark
    )
    retrying = DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.RETRY)
    return pending.exists() or retrying.exists()

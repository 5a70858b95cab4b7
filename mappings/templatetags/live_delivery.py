"""The source page's "Live" panel, its last figure: HubSpot's occurredAt -> Segment accepted. It lives here, above
sources, because it reads the mappings' delivery states (sources' template names this library by string)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django import template

from sources.models import LiveEvent
from sources.selectors import LIVE_LAG_SAMPLE, lag_figures

from ..models import DeliveryState

register = template.Library()

# A delivery this long after the mirror commit is not counted as that event's (a later change's, perhaps).
DELIVERY_WINDOW = timedelta(minutes=5)


def delivery_lags(source: Any, *, recent: int = LIVE_LAG_SAMPLE) -> list[float]:
    """Seconds from HubSpot's occurredAt to Segment's acceptance, for the `recent` latest applied events whose
    record a mapping delivered within DELIVERY_WINDOW of the mirror commit (where known: a record whose payload did
    not change is not sent, and a later delivery replaces the time)."""
    events = list(
        LiveEvent.objects.filter(source=source, state=LiveEvent.State.APPLIED)
        .order_by("-applied_at")
        .values_list("collection", "object_id", "occurred_at", "applied_at")[:recent]
    )
    by_collection: dict[str, set[int]] = defaultdict(set)
    for collection, object_id, _o, _a in events:
        by_collection[collection].add(object_id)
    delivered: dict[tuple[str, int], list] = defaultdict(list)
    for collection, ids in by_collection.items():
        rows = DeliveryState.objects.filter(
            mapping__data_model__source=source,
            mapping__data_model__collection=collection,
            object_id__in=list(ids),
            delivered_at__isnull=False,
        ).values_list("object_id", "delivered_at")
        for object_id, at in rows:
            delivered[(collection, object_id)].append(at)
    lags = []
    for collection, object_id, occurred, applied in events:
        if applied is None:
            continue
        times = [t for t in delivered.get((collection, object_id), []) if applied <= t <= applied + DELIVERY_WINDOW]
        if times:
            lags.append(max(0.0, (min(times) - occurred).total_seconds()))
    return lags


@register.inclusion_tag("mappings/_live_delivery.html")
def live_delivery_lag(source: Any) -> dict[str, Any]:
    return {"lag": lag_figures(delivery_lags(source))}

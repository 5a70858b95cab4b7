"""Reads about a source's setup: its checklist (the steps of this and the higher apps, hubsync.hooks.setup_steps)
and whether it may be enabled.

The product enforces a setup order: a source is created disabled, then a Segment Profiles destination, a data
model, a mapping, the mapping enabled; only then may the source be enabled. The later steps belong to higher apps
(models_app, mappings), which contribute them through the registry; a step no app contributes is missing, so the
source cannot be enabled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count
from django.urls import reverse

from hubsync import hooks
from hubsync.hooks import SetupStep

from . import oauth
from .models import LiveCounter, LiveEvent, ReadPartition, Source, SyncRun

# Checklist keys that enabling a source needs; the others are implied by an enabled mapping.
REQUIRED_TO_ENABLE = ("connected", "mapping_enabled")
# Applied live events the lag figures are computed over.
LIVE_LAG_SAMPLE = 200


def connection_step(source: Source) -> list[SetupStep]:
    """This app's contribution to the checklist (registered in SourcesConfig.ready)."""
    connected = source.status == Source.Status.OK and bool(source.token)
    return [
        SetupStep(
            10,
            "connected",
            "Connect HubSpot",
            connected,
            "Log in to HubSpot again: the connection no longer works." if not connected else "",
            reverse("sources:settings", args=[source.pk]) + "#reconnect",
        )
    ]


def checklist(source: Source) -> list[SetupStep]:
    steps = [step for contribute in hooks.setup_steps.receivers for step in contribute(source)]
    return sorted(steps, key=lambda step: step.order)


def can_enable(source: Source) -> tuple[bool, list[str]]:
    """(allowed, the steps still to do). Enabling needs a working connection and at least one enabled mapping
    that uses one of this source's models; the earlier steps are implied by that mapping."""
    steps = checklist(source)
    missing = [s.title for s in steps if not s.done]
    done = {s.key for s in steps if s.done}
    allowed = all(key in done for key in REQUIRED_TO_ENABLE)
    return allowed, ([] if allowed else missing)


def collections_last_synced(source: Source, *, runs_examined: int = 50) -> dict[str, datetime]:
    """{collection: when a sync last read it completely}: the end of the latest succeeded or partial run whose
    counts hold the collection without an error. A collection missing from the answer was never synced."""
    if source.first_synced_at is None:
        return {}
    runs = (
        source.runs.filter(status__in=[SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL], finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", "counts")[:runs_examined]
    )
    synced: dict[str, datetime] = {}
    for finished_at, counts in runs:
        for collection, numbers in (counts or {}).items():
            if finished_at is not None and isinstance(numbers, dict) and not numbers.get("error"):
                synced.setdefault(collection, finished_at)
    return synced


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def lag_figures(seconds: list[float]) -> dict[str, float | int | None]:
    """{"n", "p50", "p95"} of a list of lags in seconds (None when empty)."""
    return {"n": len(seconds), "p50": _percentile(seconds, 0.5), "p95": _percentile(seconds, 0.95)}


def live_summary(source: Source, *, recent: int = LIVE_LAG_SAMPLE) -> dict[str, Any]:
    """The source page's "Live" figures: whether live updates are on, the counters (received, applied, duplicates,
    pending), the last event's time, and the lag HubSpot occurredAt -> mirror commit over the `recent` latest
    applied events."""
    counter = LiveCounter.objects.filter(source=source).first()
    lags = [
        (applied - occurred).total_seconds()
        for occurred, applied in LiveEvent.objects.filter(source=source, state=LiveEvent.State.APPLIED)
        .order_by("-applied_at")
        .values_list("occurred_at", "applied_at")[:recent]
        if applied is not None
    ]
    pending = LiveEvent.objects.filter(source=source).exclude(state=LiveEvent.State.APPLIED).count()
    return {
        "on": source.live_enabled,
        "received": counter.received if counter else 0,
        "applied": counter.applied if counter else 0,
        "duplicates": counter.duplicates if counter else 0,
        "pending": pending,
        "last_event_at": counter.last_event_at if counter else None,
        "last_applied_at": counter.last_applied_at if counter else None,
        "mirror_lag": lag_figures([max(0.0, x) for x in lags]),
    }


def collection_choices(source: Source) -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]]]:
    """The collections the selective sync offers, as (choices, {name: {"count", "error"}}): what HubSpot offers
    now (oauth.available_collections), plus every collection chosen before (so that one HubSpot no longer offers
    can still be removed), in the product's order."""
    available = {d.name: d for d in oauth.available_collections(source)}
    names = set(available) | {sc.collection for sc in source.collections.all()}
    order = {c.name: i for i, c in enumerate(oauth.COLLECTIONS)}
    ordered = sorted(names, key=lambda n: (order.get(n, len(order)), n))
    counts = {n: {"count": available[n].property_count, "error": available[n].error} for n in available}
    return [(n, oauth.COLLECTION_LABELS.get(n, n)) for n in ordered], counts


def partition_progress(source_id: int) -> dict[str, dict[str, int]]:
    """{collection: {"done", "running", "pending", "total"}} of the partitioned reads in progress of a source (the
    id ranges of sources.extraction.partitions; none once a read is finished): one grouped query, for run pages
    and dashboards."""
    out: dict[str, dict[str, int]] = {}
    rows = (
        ReadPartition.objects.filter(collection__source_id=source_id)
        .values_list("collection__collection", "status")
        .annotate(n=Count("id"))
    )
    for collection, status, n in rows:
        entry = out.setdefault(collection, {"done": 0, "running": 0, "pending": 0, "total": 0})
        entry[status] = entry.get(status, 0) + n
        entry["total"] += n
    return out

"""Reads about a source's setup: its checklist (the steps of this and the higher apps, hubsync.hooks.setup_steps)
and whether it may be enabled.

The product enforces a setup order: a source is created disabled, then a Segment Profiles destination, a data
model, a mapping, the mapping enabled; only then may the source be enabled. The later steps belong to higher apps
(models_app, mappings), which contribute them through the registry; a step no app contributes is missing, so the
source cannot be enabled.
"""

from __future__ import annotations

from django.db.models import Count
from django.urls import reverse

from hubsync import hooks
from hubsync.hooks import SetupStep

from .models import ReadPartition, Source

# Checklist keys that enabling a source needs; the others are implied by an enabled mapping.
REQUIRED_TO_ENABLE = ("connected", "mapping_enabled")


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

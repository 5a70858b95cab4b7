"""The receiver's work after the signature check: route the events to their sources, store them, schedule the
live task. No HubSpot or Segment I/O: a request costs a handful of queries whatever its size (one bulk INSERT
for up to 100 events), so a flood after an outage is absorbed at the database's insert rate.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from ..models import LiveCounter, LiveEvent, Source, SourceCollection
from .wire import Event, parse_event

logger = logging.getLogger(__name__)

LIVE_TASK = "sources.apply_live"
SCHEDULE_KEY = "hubsync:live:scheduled:{source_id}:{collection}"
REPLAY_KEY = "hubsync:live:seen:{digest}"


@dataclass
class Received:
    events: int = 0  # events in the body
    routed: int = 0  # event x source pairs for live sources
    stored: int = 0  # of those, new (not a duplicate eventId)
    ignored: int = 0  # not a record change, an unknown portal, live updates off, a collection not synced

    @property
    def duplicates(self) -> int:
        return self.routed - self.stored

    def as_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
        }


def seen_before(digest: str) -> bool:
    """Whether this exact signed request (its signature) arrived in the last 5 minutes: a replay. A retry by
    HubSpot has a new timestamp, so a new signature, and is not one."""
    return not cache.add(REPLAY_KEY.format(digest=digest), 1, timeout=6 * 60)


def _targets(portal_ids: set[int]) -> dict[int, dict[int, set[str]]]:
    """{portal id: {source id: the collections it syncs}} for the enabled sources with live updates on."""
    out: dict[int, dict[int, set[str]]] = defaultdict(dict)
    rows = SourceCollection.objects.filter(
        source__hub_id__in=portal_ids,
        source__enabled=True,
        source__live_enabled=True,
        source__status=Source.Status.OK,
        selected=True,
    ).values_list("source__hub_id", "source_id", "collection")
    for hub_id, source_id, collection in rows:
        if hub_id is not None:
            out[hub_id].setdefault(source_id, set()).add(collection)
    return out


def store_events(payload: Any) -> Received:
    """Route and store one request's events; schedule the live task of every (source, collection) that got new
    ones. `payload` is the parsed JSON body (a list of events; a single object is taken as a list of one)."""
    items = payload if isinstance(payload, list) else [payload]
    now = timezone.now()
    result = Received(events=len(items))
    events = [e for e in (parse_event(raw, now=now) for raw in items) if e is not None]
    result.ignored = len(items) - len(events)
    targets = _targets({e.portal_id for e in events})
    rows: list[tuple[int, Event]] = []
    for event in events:
        sources = [sid for sid, colls in targets.get(event.portal_id, {}).items() if event.collection in colls]
        if not sources:
            result.ignored += 1
        rows += [(source_id, event) for source_id in sources]
    result.routed = len(rows)
    if not rows:
        return result
    with transaction.atomic():
        inserted = _insert(rows, now)
        result.stored = len(inserted)
        per_source: dict[int, list[Event]] = defaultdict(list)
        for source_id, event in rows:
            per_source[source_id].append(event)
        new_per_source = Counter(source_id for source_id, _e in inserted)
        for source_id, source_events in per_source.items():
            _count(
                source_id,
                received=len(source_events),
                duplicates=len(source_events) - new_per_source[source_id],
                now=now,
                newest=max(e.occurred_at for e in source_events),
            )
        # Scheduled after commit (the task must find the rows), for what is new only: duplicates change nothing.
        wanted = sorted({(source_id, e.collection) for source_id, e in inserted})
        transaction.on_commit(lambda: schedule(wanted))
    return result


def _insert(rows: list[tuple[int, Event]], now: datetime) -> list[tuple[int, Event]]:
    """One INSERT ... ON CONFLICT DO NOTHING RETURNING for the request: the rows that were new (an eventId twice in
    one request is inserted once)."""
    unique = {(sid, e.event_id): e for sid, e in rows}
    rows = [(sid, e) for (sid, _eid), e in unique.items()]
    ops = connection.ops
    table = LiveEvent._meta.db_table
    json_slot = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    row_sql = f"(%s, %s, %s, %s, %s, {json_slot}, %s, %s, %s, %s)"
    params: list[Any] = []
    stamp = ops.adapt_datetimefield_value(now)
    for source_id, e in rows:
        params += [
            source_id,
            e.event_id,
            e.collection,
            e.object_id,
            e.kind,
            "[" + ",".join(str(i) for i in e.related) + "]",
            ops.adapt_datetimefield_value(e.occurred_at),
            stamp,
            e.attempt,
            LiveEvent.State.PENDING,
        ]
    sql = (
        f"INSERT INTO {table} (source_id, event_id, collection, object_id, kind, related, occurred_at, received_at, "
        f"attempt, state) VALUES {', '.join([row_sql] * len(rows))} "
        f"ON CONFLICT (source_id, event_id) DO NOTHING RETURNING source_id, event_id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        new = {(int(s), int(e)) for s, e in cur.fetchall()}
    return [(sid, e) for (sid, _eid), e in unique.items() if (sid, e.event_id) in new]


def _count(source_id: int, *, received: int, duplicates: int, now: datetime, newest: datetime) -> None:
    def bump() -> int:
        return LiveCounter.objects.filter(source_id=source_id).update(
            received=F("received") + received,
            duplicates=F("duplicates") + duplicates,
            last_event_at=now,
            last_occurred_at=Greatest(F("last_occurred_at"), newest),
        )

    if bump():
        return
    # The source's first events: a concurrent request may create the row first, then ours adds to it.
    _row, created = LiveCounter.objects.get_or_create(
        source_id=source_id,
        defaults={"received": received, "duplicates": duplicates, "last_event_at": now, "last_occurred_at": newest},
    )
    if not created:
        bump()


def schedule(pairs: list[tuple[int, str]], *, countdown: float | None = None) -> int:
    """Send the live task for each (source, collection), at most once per coalescing window: events arriving
    while one is scheduled ride with it (the key expires before the task runs, so an event stored after the key
    is gone schedules a task of its own). Returns how many were sent."""
    window = float(countdown if countdown is not None else settings.HUBSYNC_LIVE_COALESCE_SECONDS)
    ttl = max(1, math.ceil(window))  # whole seconds (the cache's expiry); the task runs after the key is gone
    sent = 0
    for source_id, collection in pairs:
        if window > 0 and not cache.add(SCHEDULE_KEY.format(source_id=source_id, collection=collection), 1, ttl):
            continue
        kwargs = {"source_id": source_id, "collection": collection}
        delay = ttl + 0.1 if window > 0 else 0
        # By name (tasks imports this package): the registered task when this process has it, else the broker.
        task = current_app.tasks.get(LIVE_TASK)
        if task is not None:
            task.apply_async(kwargs=kwargs, countdown=delay)
        else:
            current_app.send_task(LIVE_TASK, kwargs=kwargs, countdown=delay)
        sent += 1
    return sent

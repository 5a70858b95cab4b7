"""The live task's work: claim a (source, collection)'s pending events, read their records, commit them.

Events say which records changed, never what they are now, so every event id is **read again** with batch read
(100 ids per request, through the account's shared limiter, archived=false, every property the scheduled engine
reads). What comes back is committed through the scheduled engine's own page transaction
(mirror.MirrorWrites.commit_page without a cursor: change_seq block, history, merged-away ids) together with the
events' "applied" mark; a row is never overwritten by an older read (the upsert compares HubSpot's updatedAt), so
a scheduled sync reading at the same time cannot undo a newer live read, nor the other way round. Ids the read
does not return go through the full read's deletion confirmation (deletions.Deletions.confirm_gone): archived,
deleted for good (GDPR), or merged into another record. Then the "mirror changed" hand-off, so the mappings of
the collection deliver at once.

Claims are rows: pending -> claimed (SELECT ... FOR UPDATE SKIP LOCKED), up to CLAIM_LIMIT events at a time, so two
tasks of one collection share the work (a full claim, a burst, asks for a second task at once), and a worker that
dies leaves claims that the minute's sweep hands out again; a claim HubSpot fails on goes back to pending. The
hand-off follows every claim, so a burst's first records are delivered while the rest is read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..extraction import MERGED_IDS, merged_away, notify_changes, store_schema
from ..extraction.base import empty_counts
from ..extraction.deletions import BATCH_READ_LIMIT, Deletions
from ..hubspot import HubSpotClient
from ..models import ChangeCounter, LiveCounter, LiveEvent, Source, SourceCollection, SyncRun
from .receive import schedule

logger = logging.getLogger(__name__)

CLAIM_LIMIT = 1000


class LiveWrites(Deletions):
    """The engine's mirror writes and deletion confirmation, without a run: the live path commits pages that no
    SyncRun owns (history rows get no run id)."""

    def __init__(self, source: Source) -> None:
        # An unsaved run stands for "no run" (pk None): the layers below only read its id.
        super().__init__(SyncRun(source=source, trigger=SyncRun.Trigger.MANUAL), "live", None, announce=False)

    def heartbeat(self, *, with_counts: bool = True) -> None:
        """No run to prove ownership of: the event claims and the updatedAt guard of the upsert fence instead."""


@dataclass
class Applied:
    events: int = 0
    read: int = 0
    written: int = 0
    gone: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"events": self.events, "read": self.read, "written": self.written, "gone": self.gone}


def claim(source_id: int, collection: str, *, limit: int | None = None) -> list[tuple[int, int, list[int]]]:
    """Take up to `limit` pending events (and claims older than HUBSYNC_LIVE_CLAIM_SECONDS: their worker died):
    [(event pk, object id, related ids)], oldest first."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.HUBSYNC_LIVE_CLAIM_SECONDS)
    with transaction.atomic():
        rows = list(
            LiveEvent.objects.select_for_update(skip_locked=True)
            .filter(source_id=source_id, collection=collection)
            .filter(Q(state=LiveEvent.State.PENDING) | Q(state=LiveEvent.State.CLAIMED, claimed_at__lt=stale))
            .order_by("id")
            .values_list("pk", "object_id", "related")[: limit or CLAIM_LIMIT]
        )
        if rows:
            LiveEvent.objects.filter(pk__in=[r[0] for r in rows]).update(state=LiveEvent.State.CLAIMED, claimed_at=now)
    return [(pk, object_id, list(related or [])) for pk, object_id, related in rows]


def groups(events: list[tuple[int, int, list[int]]]) -> Iterator[tuple[list[int], list[int]]]:
    """(event pks, distinct ids) per batch read: at most BATCH_READ_LIMIT ids, an event's ids never split."""
    pks: list[int] = []
    ids: dict[int, None] = {}
    for pk, object_id, related in events:
        mine = [object_id, *related]
        if ids and len(ids.keys() | set(mine)) > BATCH_READ_LIMIT:
            yield pks, list(ids)
            pks, ids = [], {}
        pks.append(pk)
        ids.update(dict.fromkeys(mine))
    if pks:
        yield pks, list(ids)


def apply_pending(*, source_id: int, collection: str) -> Applied:
    """Apply every pending event of (source, collection); returns what was done."""
    result = Applied()
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return result
    sc = SourceCollection.objects.filter(source=source, collection=collection, selected=True).first()
    if sc is None or not (source.enabled and source.live_enabled) or source.status != Source.Status.OK:
        # Live updates went off (or the collection is no longer synced) since the events came: the scheduled
        # syncs carry on alone.
        LiveEvent.objects.filter(source=source, collection=collection).exclude(state=LiveEvent.State.APPLIED).delete()
        return result
    ChangeCounter.objects.get_or_create(source=source)
    engine = LiveWrites(source)
    engine.counts[collection] = empty_counts()
    with HubSpotClient(source) as client:
        engine.client = client
        names = _names(engine, sc)
        helped = False
        while events := claim(source.pk, collection):
            if not helped and len(events) == CLAIM_LIMIT:
                # A burst: another worker takes the next claim meanwhile (claims never overlap).
                helped = bool(schedule([(source.pk, collection)], countdown=0))
            try:
                for pks, ids in groups(events):
                    _apply_group(engine, sc, names, pks, ids, result)
            except Exception:
                # HubSpot failed for good (retries spent) or the worker is stopping: what this claim did not
                # apply goes back to pending, for the next event's task or the minute's sweep.
                LiveEvent.objects.filter(pk__in=[e[0] for e in events], state=LiveEvent.State.CLAIMED).update(
                    state=LiveEvent.State.PENDING, claimed_at=None
                )
                raise
            if engine.changed_collections:
                # After every claim, not once at the end: a burst's first records are delivered while the rest
                # is read (a delivery that finds another running leaves a request for it).
                notify_changes(source, sorted(engine.changed_collections))
                engine.changed_collections.clear()
    return result


def _names(engine: LiveWrites, sc: SourceCollection) -> list[str]:
    """The properties the scheduled engine reads: the schema it discovered last (discovered now if never)."""
    schema = sc.properties or store_schema(sc, engine.hubspot.get_properties(sc.collection))
    return sorted({*schema, MERGED_IDS})


def _apply_group(
    engine: LiveWrites, sc: SourceCollection, names: list[str], pks: list[int], ids: list[int], result: Applied
) -> None:
    records = engine.hubspot.batch_read(sc.collection, [str(i) for i in ids], names, archived=False)
    unique = {str(r.get("id")): r for r in records if str(r.get("id") or "").isdigit()}
    answered = {int(i) for i in unique} | set(merged_away(list(unique.values())))
    unanswered = [i for i in ids if i not in answered]
    gone = engine.confirm_gone(sc, unanswered, mirror_archived=False) if unanswered else None
    before = engine.counts[sc.collection].copy()
    with transaction.atomic():
        engine.commit_page(sc, list(unique.values()), None, gone)
        now = timezone.now()  # the mirror commit, for the lag figures
        LiveEvent.objects.filter(pk__in=pks).update(state=LiveEvent.State.APPLIED, applied_at=now)
        LiveCounter.objects.filter(source_id=engine.source.pk).update(
            applied=F("applied") + len(pks), last_applied_at=now
        )
    after = engine.counts[sc.collection]
    result.events += len(pks)
    result.read += len(unique)
    result.written += (after["new"] - before["new"]) + (after["updated"] - before["updated"])
    result.gone += sum(after.get(k, 0) - before.get(k, 0) for k in ("archived", "deleted", "merged"))
    if gone:
        engine.changed_collections.add(sc.collection)


def sweep() -> int:
    """The minute's safety net: schedule the live task of every (source, collection) with events pending for more
    than a coalescing window, or claimed by a worker that died. Returns how many were scheduled."""
    now = timezone.now()
    late = now - timedelta(seconds=max(settings.HUBSYNC_LIVE_COALESCE_SECONDS * 5, 30))
    stale = now - timedelta(seconds=settings.HUBSYNC_LIVE_CLAIM_SECONDS)
    pairs = sorted(
        set(
            LiveEvent.objects.filter(
                Q(state=LiveEvent.State.PENDING, received_at__lt=late)
                | Q(state=LiveEvent.State.CLAIMED, claimed_at__lt=stale)
            ).values_list("source_id", "collection")
        )
    )
    return schedule(pairs, countdown=0)


def prune() -> int:
    """Applied events older than HUBSYNC_LIVE_EVENT_DAYS leave (the counters keep the totals)."""
    cutoff = timezone.now() - timedelta(days=settings.HUBSYNC_LIVE_EVENT_DAYS)
    deleted, _ = LiveEvent.objects.filter(state=LiveEvent.State.APPLIED, applied_at__lt=cutoff).delete()
    return deleted

"""The reads: the list endpoint, search windows, batch reads, the archived list.

The collection's cursor says where to go on:

- ``{}`` (first run, or reset by a full sync): every record through the list endpoint (100 per request, all
  properties; no 10,000 cap), cursor ``{"mode": "list", "after": ..., "started_ms": ...}``. With a start date,
  a search window [start date, now] instead (below).
- ``{"mode": "idle", "modified_since_ms": W}``: incremental. Records whose last-modified date lies in
  [W - overlap, now] (the overlap covers HubSpot's search-index lag), read with search sorted by
  ``hs_object_id`` ascending. Every query carries ``hs_object_id > last id seen`` (keyset paging) instead of
  an ``after`` offset: the 10,000-result cap never applies, any number of equal timestamps is fine, and a
  record that leaves the window while we page (modified again) cannot shift the offsets and make us skip
  others. Search asks for two properties only (its body is limited to 3,000 characters); the full records
  come from batch read, 100 ids per call. Cursor ``{"mode": "search", "window_start_ms", "window_end_ms",
  "last_id", ...}``.

When the read completes the cursor becomes ``idle`` with the window end (the list read's start time) as the
new watermark; records changed during the read fall into the next window. A "Full sync" of a source with a
start date whose mirror holds records goes on from the search read to the **ids-only pass**
(sources.extraction.deletions; cursor ``{"mode": "ids", "after", "covered", "pending", "watermark_ms"}``; the
search cursor carries ``ids_pass`` so that a run resuming it, whatever its trigger, does the pass too), then to
``idle``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

from django.db import transaction

from hubsync.querylog import forget_queries

from ..hubspot import HubSpotError
from ..models import Record, RecordCount, Source, SourceCollection, SyncRun
from .cursor import Cursor, IdsPass, ListRead, SearchRead
from .deletions import ORDER_NOTE, Deletions, ascending, ready_chunks
from .mirror import Gone
from .prefetch import prefetched
from .records import after_token, lastmod_property

logger = logging.getLogger(__name__)

LIST_LIMIT = 100
SEARCH_LIMIT = 200


class Reads(Deletions):
    """HubSpot's pages, handed to the mirror one transaction each (through the prefetch thread when they are
    checkpointed in the cursor)."""

    def estimate(self, sc: SourceCollection) -> int:
        """Records a full read will see: one search request (limit 1) for its `total`, else the mirror count. Sorted
        by id, the same request tells a partitioned read's plan the smallest id (`first_ids`)."""
        try:
            page = self.hubspot.search_page(
                sc.collection,
                {
                    "filterGroups": [],
                    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    "properties": ["hs_object_id"],
                    "limit": 1,
                },
            )
            results = page.get("results") or []
            if results:
                self.first_ids[sc.pk] = int(results[0]["id"])
            return int(page.get("total") or 0)
        except HubSpotError:
            return Record.objects.filter(source=self.source, collection=sc.collection, archived=False).count()

    def read_list(
        self, sc: SourceCollection, cursor: ListRead, names: list[str], *, estimate: int | None = None
    ) -> None:
        if estimate is None:
            estimate = self.estimate(sc)
        if cursor.after:
            # Resuming: what the mirror already holds (the pages before the checkpoint) is not read again.
            held = Record.objects.filter(source=self.source, collection=sc.collection, archived=False).count()
            estimate = max(0, estimate - held)
        self.total += estimate
        self.consume(sc, self.list_pages(sc, cursor, names))

    def read_ids(self, sc: SourceCollection, cursor: IdsPass) -> None:
        """The ids-only pass of a Full sync with a start date (sources.extraction.deletions): the list endpoint
        with `hs_object_id` only, for the deletion check alone; what it returns is neither read nor written (the
        search read did that for the window). Cost: ceil(N / 100) requests, N = HubSpot's live records."""
        counts = self.counts[sc.collection]
        counts.setdefault("listed", 0)  # before the prefetch thread adds to it
        # The progress bar moves with the ids listed, against what the last pass listed (else the mirror's count):
        # no extra request to ask HubSpot for its total.
        self.total += ids_pass_estimates(self.source, [sc.collection], exclude_run=self.run_row.pk)[sc.collection][0]
        self.say(f"{sc.collection}: looking for records deleted in HubSpot (ids only)")
        seen = counts["listed"]
        for records, new_cursor, gone in prefetched(self.list_pages(sc, cursor, None), on_idle=self.heartbeat):
            listed = counts["listed"]
            self.done += listed - seen
            seen = listed
            self.commit_page(sc, records, new_cursor, gone)

    def list_pages(
        self, sc: SourceCollection, cursor: ListRead | IdsPass, names: list[str] | None
    ) -> Iterator[tuple[list, Cursor, Gone | None]]:
        """(records, cursor after them, what the deletion check found) for every page of the list endpoint, from
        the cursor on; and, when a batch of candidates has been confirmed, ([], the cursor *before* the page,
        that batch's Gone) first. Runs in the prefetch thread: the deletion check's range query and batch reads
        overlap the writing of the previous page (sources.extraction.deletions).

        Candidates are collected across pages and confirmed BATCH_READ_LIMIT at a time (and all of them at the
        end), so scattered deletions cost two batch reads per 100 deletions, not per page. The ones not yet
        confirmed ride in the cursor (`pending`, fewer than BATCH_READ_LIMIT ids) so a resumed read loses none.

        `names` None: the ids-only pass (cursor mode "ids"): pages ask for `hs_object_id` only and yield no
        records, and the pass ends as soon as the check stops (nothing else to do with the pages)."""
        ids_only = names is None
        after = cursor.after
        # A checkpoint without `covered` (written before the check existed) cannot say what was checked.
        checking = cursor.covered is not None
        covered = cursor.covered or 0
        pending = list(cursor.pending or ())
        done_cursor = cursor.finished()
        counts = self.counts[sc.collection]
        while True:
            page = self.hubspot.list_page(
                sc.collection, properties=["hs_object_id"] if names is None else names, after=after, limit=LIST_LIMIT
            )
            results = page.get("results") or []
            next_after = after_token(page)
            note = None
            if ids_only:
                counts["listed"] += len(results)  # an existing key: no resize while the heartbeat serialises
                results = []  # the search read wrote the window's records; the others are not mirrored
            if checking:
                ids = [int(r["id"]) for r in page.get("results") or []]
                last = not next_after
                if not ascending(ids, covered):
                    checking = False
                    logger.warning(
                        "sync run %s: %s: list page not in ascending id order after id %s; deletion check stopped",
                        self.run_row.pk,
                        sc.collection,
                        covered,
                    )
                    note = Gone(note=ORDER_NOTE)
                    last = True  # the candidates found so far are still confirmed (nothing is removed unasked)
                    ids = []
                before = replace(cursor, after=after, covered=covered)
                if checking and (ids or last):
                    # The range this page covers: (covered, its last id], or to the end on the last page.
                    top = ids[-1] if not last else None
                    batches = self.candidate_batches(sc, archived=False, low=covered, high=top, exclude=ids)
                    for batch in batches:
                        pending += batch
                        for chunk in ready_chunks(pending):
                            yield self.confirm_pending(sc, chunk, pending, before)
                    covered = top if top is not None else covered
                if last:
                    for chunk in ready_chunks(pending, everything=True):
                        yield self.confirm_pending(sc, chunk, pending, before)
            if ids_only and not checking:
                next_after = None  # the check stopped (order broken): the pass has nothing else to do
            if next_after:
                after = next_after
                # Without `covered` a resumed read does not check (the order broke, or an old checkpoint).
                new_cursor = replace(
                    cursor,
                    after=after,
                    covered=covered if checking else None,
                    pending=tuple(pending) if checking else None,
                )
                yield results, new_cursor, note
            else:
                yield results, done_cursor, note
                return

    def read_search(self, sc: SourceCollection, cursor: SearchRead, names: list[str]) -> None:
        start, end = cursor.window_start_ms, cursor.window_end_ms
        if end < start:
            # A cursor in the future (clock skew, hand-edited): nothing can be in the window; keep the cursor.
            self.commit_page(sc, [], cursor.finished(cursor.previous_ms or start))
            return
        self.consume(sc, self.search_pages(sc, cursor, names))

    def search_pages(
        self, sc: SourceCollection, cursor: SearchRead, names: list[str]
    ) -> Iterator[tuple[list, Cursor, None]]:
        """(records, cursor after them, None) for the window [window_start_ms, window_end_ms], in id order."""
        lastmod = lastmod_property(sc.collection)
        start, end = cursor.window_start_ms, cursor.window_end_ms
        done_cursor = cursor.finished(max(end, cursor.previous_ms or 0))
        last_id = cursor.last_id
        first = True
        while True:
            filters = [
                {"propertyName": lastmod, "operator": "GTE", "value": str(start)},
                {"propertyName": lastmod, "operator": "LTE", "value": str(end)},
            ]
            if last_id:
                # Keyset paging: never an `after` offset, so never the 10,000 cap (see this module's docstring).
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)})
            body = {
                "filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": ["hs_object_id", lastmod],
                "limit": SEARCH_LIMIT,
            }
            page = self.hubspot.search_page(sc.collection, body)
            if first:
                self.total += int(page.get("total") or 0)
                first = False
            ids = sorted({int(r["id"]) for r in page.get("results") or []})
            more = bool(after_token(page)) and bool(ids)
            records: list[dict] = []
            if ids:
                # Full records by id (the search asked for two properties only). Ids gone meanwhile (archived)
                # are simply not returned; the archived scan takes care of them.
                records = self.hubspot.batch_read(sc.collection, [str(x) for x in ids], names)
                last_id = max(last_id, ids[-1])
            yield records, (replace(cursor, last_id=last_id) if more else done_cursor), None
            if not more:
                return

    def consume(self, sc: SourceCollection, pages: Iterator[tuple[list, Cursor, Gone | None]]) -> None:
        # While HubSpot is slow (429 storm, retries with backoff) the heartbeat goes on, so a live run is never
        # mistaken for a dead one; a dead process stops beating and is taken over.
        for records, new_cursor, gone in prefetched(pages, on_idle=self.heartbeat):
            self.commit_page(sc, records, new_cursor, gone)

    def scan_archived(self, sc: SourceCollection, *, check_deleted: bool = False) -> None:
        """Write HubSpot's archived records into the mirror as archived, with their final values.

        Search never returns archived records and the list endpoint only returns them when asked, so each run
        pages through ``GET /crm/v3/objects/{type}?archived=true`` (ids and the last-modified date) and writes the
        mirror rows of those ids archived **with the record's final values** (a real change: new hash, new
        change_seq): an update made just before the archive was seen by no search, so the ids the mirror holds
        live, or archived with another last-modified date than the list's, are read in full with a batch read
        (archived=true; read_final). Cost: ceil(A / 100) GET requests per collection per run, A = the archived
        records HubSpot still keeps (about 90 days' worth), so a portal with nothing archived pays one request,
        plus ceil(K / 100) batch reads, K = the records archived since the previous run (none: no request). A
        record that comes back (restored) is read again by the next incremental window (restoring bumps its
        last-modified date) and written with archived = False.

        With `check_deleted` (a full run), also remove the mirror's archived rows that HubSpot no longer has
        archived nor live: purged from its recycle bin (sources.extraction.deletions). The archived list is short
        (about 90 days' worth) and not checkpointed, so this runs in the calling thread, one transaction per page or
        batch."""
        after = None
        covered = 0
        checking = check_deleted
        pending: list[int] = []  # candidates not confirmed yet (fewer than BATCH_READ_LIMIT between pages)
        lastmod = lastmod_property(sc.collection)
        while True:
            page = self.hubspot.list_page(
                sc.collection, properties=["hs_object_id", lastmod], after=after, limit=LIST_LIMIT, archived=True
            )
            results = page.get("results") or []
            after = after_token(page)
            last = not after
            if checking:
                ids = [int(r["id"]) for r in results]
                if not ascending(ids, covered):
                    checking = False
                    logger.warning(
                        "sync run %s: %s: archived list not in ascending id order after id %s; deletion check stopped",
                        self.run_row.pk,
                        sc.collection,
                        covered,
                    )
                    self.add_note(sc, ORDER_NOTE)
                    last = True  # confirm what was found so far
                elif ids or last:
                    top = ids[-1] if not last else None
                    for batch in self.candidate_batches(sc, archived=True, low=covered, high=top, exclude=ids):
                        pending += batch
                        for chunk in ready_chunks(pending):
                            self.commit_gone(sc, self.confirm_gone(sc, chunk, mirror_archived=True))
                    covered = top if top is not None else covered
            for chunk in ready_chunks(pending, everything=last):
                self.commit_gone(sc, self.confirm_gone(sc, chunk, mirror_archived=True))
            final = self.read_final(sc, results)
            with transaction.atomic():
                self.write_final(sc, final)
                self.heartbeat()
            forget_queries()
            if not after:
                return

    def read_final(self, sc: SourceCollection, listed: list[dict]) -> list[dict]:
        """The archived records of one archived-list page whose final values the mirror lacks, read in full.

        A record's last update before its archive is seen by no search (search never returns archived records),
        so the mirror holds what the previous sync read. The ids the mirror has live (archived since), or has
        archived with another last-modified date than HubSpot lists (archived from the old values by the
        deletion check, or by an earlier version), are read with archived=true and every property: one batch
        read per 100 such records, nothing when there are none (the usual case)."""
        if not listed:
            return []
        lastmod = lastmod_property(sc.collection)
        listed_mod = {int(r["id"]): (r.get("properties") or {}).get(lastmod) for r in listed}
        stale: list[int] = []
        for object_id, archived, stored in Record.objects.filter(
            source_id=self.source.pk, collection=sc.collection, object_id__in=list(listed_mod)
        ).values_list("object_id", "archived", f"properties__{lastmod}"):
            if not archived or (listed_mod[object_id] is not None and stored != listed_mod[object_id]):
                stale.append(object_id)
        if not stale:
            return []
        names = self.names.get(sc.collection) or ["hs_object_id", lastmod]
        records = self.hubspot.batch_read(sc.collection, [str(i) for i in sorted(stale)], names, archived=True)
        # Only records still archived under their own id (one restored or merged meanwhile is read as such later).
        wanted = set(stale)
        return [r for r in records if r.get("archived", True) and int(r["id"]) in wanted]


def ids_pass_estimates(
    source: Source, collections: list[str], *, exclude_run: int | None = None
) -> dict[str, tuple[int, bool]]:
    """{collection: (records the ids-only pass will list, measured?)}: what the last pass listed (`listed` in its
    run's counts; measured), else the mirror's count (a lower bound: the window's records only). For the engine's
    progress bar and the Full sync confirmation page's cost."""
    listed: dict[str, int] = {}
    runs = SyncRun.objects.filter(source=source).order_by("-id")
    if exclude_run is not None:
        runs = runs.exclude(pk=exclude_run)
    for counts in runs.values_list("counts", flat=True)[:50]:
        for name, c in (counts or {}).items():
            if name in collections and name not in listed and isinstance(c, dict) and isinstance(c.get("listed"), int):
                listed[name] = c["listed"]
        if len(listed) == len(collections):
            break
    mirrored = dict(
        RecordCount.objects.filter(source=source, collection__in=collections).values_list("collection", "n")
    )
    return {name: (listed[name], True) if name in listed else (mirrored.get(name, 0), False) for name in collections}

"""Partitioned reads: a collection's id space split into ranges read concurrently, through both of HubSpot's
budgets at once, each range checkpointed on its own row (sources.ReadPartition).

**Why.** One request in flight reads at HubSpot's latency (~4 pages/s at 250 ms); the account's budget is 110
list/read/batch requests per 10 s (100 records a page, ~1,100 records/s) plus 5 search requests per second (200 a
page, ~1,000 records/s). Only several requests in flight, on both budgets, fill it. The shared limiter
(sources/ratelimit.py) stays the one place that decides when a request may go: concurrency fills the budget,
never exceeds it.

**Plan** (`plan_partitions`, sources.extraction.plan): HubSpot's search `total`, the smallest and largest ids (search
sorted by hs_object_id, limit 1), and counts of id ranges (search `total`, limit 1), capped; on a Full sync of a
held mirror the mirror's own id quantiles (one SQL query) instead. Each range is read through the list or through
search, the split chosen from the two budgets; the split is corrected as the read goes: SEARCH_RANGES search ranges
at once fill its budget (more only while the list holds the longer read), an unbegun search range is claimed
through the list when the list would otherwise run out first (never after HubSpot did not honour an id `after`),
and an unbegun list range through search when search would (where the properties fit a search body). The list
never holds every fetcher: SEARCH_FETCHERS stay for search, which would otherwise idle whenever the list's
10-s window is spent and every fetcher waits for it. While the plan counts, the
list reads ahead from id 0 and from the first cuts the counts find (`Heads`): the ranges that start there take those
pages (`head_pages`) instead of asking again, and each stream's first id, against the smallest id above its cut that
the count saw, proves (or disproves) that HubSpot takes an id `after`: the list ranges then start proven (or go
straight to search) without a count of their own.

**Splits.** When a fetcher would idle (nothing left to claim), the running range with the most records ahead is
cut in two at the middle of what it has not read (`split_partition`): its row's high bound is lowered and the upper
half becomes a new pending range (through search while that budget has room or the list holds the longer read), in
one transaction. The writer
trims what the fetcher had already read above the cut; the fetcher ends the range there and confirms its last
deletion candidates (`_split_end`). So an uneven plan, and the read's end, never leave a budget idle.

**List ranges** start with `after` at the range's low bound (HubSpot's list pages in ascending id order and its
`after` is the next id in practice, but it is documented as opaque; a first record at the low bound itself is the
previous range's): the first page is verified (its first id above the low bound, and one search count of the ids
between the two says nothing was skipped; once two ranges of the collection proved it, the first id alone); a
range whose `after` is not honoured (or a page out of order) is read through search instead, with a note in the run. The
range ends at the first id above its high bound. **Search ranges** are keyset-paged: `hs_object_id` GT the last
id read and LTE the high bound, sorted ascending, never an `after` offset (so never the 10,000 cap), carrying the
properties themselves (those that do not fit in the 3,000-character body are read by batch read: the client does
that, and the run's notes say what it cost). A search range's rest that fits one list page (the page's `total` says
it) is read through the list from the last id read, once the list's `after` is proven and while its window has room:
a list slot costs half what a search slot does.

**Deletion check** per range, exactly as a list read does it (sources.extraction.deletions): pages come in
ascending id order, so every mirror id in (covered, last id of the page] the page did not return is a candidate,
confirmed by batch reads; the last page of a range covers up to its high bound (the last range: to the end).

**Concurrency.** `HUBSYNC_FETCHERS` fetcher threads, one HubSpotClient each, produce the pages of every claimed
range of every collection of the run into one bounded queue; the calling thread is the single writer: the pages
waiting in the queue when it is free (up to GROUP_PAGES) are one transaction (a group commit: one change_seq block,
one fence; each page's rows and deletion-check outcome, each range's row with its last position and counts), then
`forget_queries()`. A group never holds one id twice, and a range taken over rolls its group back, whose other pages
then commit one by one.

**Across workers.** Ranges are claimed with `select_for_update(skip_locked=True)` (a no-op on SQLite, whose single
writer is enough) and heartbeated with each page; a range whose heartbeat is older than HUBSYNC_RUN_STALE_SECONDS is
taken over by whoever claims next. The run's own task coordinates: it plans, sends `sources.read_partitions`
helper tasks (queue `extract`) that claim, read and commit ranges with their own writer, reads ranges itself, waits
for the helpers' ranges (taking over stale ones), and finishes the collection when its last range is done: the
cursor becomes idle at the read's start and the rows go.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from hubsync import handoff
from hubsync.querylog import forget_queries

from ..hubspot import AuthError, BadRequest, HubSpotClient, HubSpotError, NeedsReconnect
from ..hubspot.wire import _dumps
from ..models import ReadPartition, Record, RecordCount, SourceCollection, SyncRun
from ..ratelimit import GENERAL
from . import plan
from .base import COUNT_KEYS, SPENT_KEYS, RunLost, add_counts, describe
from .cursor import LIST_RECORDS_PER_S, SEARCH_RECORDS_PER_S, Idle, Partitioned
from .deletions import ORDER_NOTE, ascending, ready_chunks
from .mirror import Gone, PageCommit
from .reads import LIST_LIMIT, SEARCH_LIMIT, Reads
from .records import after_token

logger = logging.getLogger(__name__)

# The helper task (sources.tasks.read_partitions), sent by name: extraction does not import its own tasks module.
READ_PARTITIONS = "sources.read_partitions"
# Pages committed in one transaction at most (a group commit: the pages waiting when the writer is free).
GROUP_PAGES = 16
# Search ranges read at once, at most: a few fill the search budget (5 pages/s; one range reads a page per
# round trip), and more would only leave search holding the most work at the read's end while the list idles.
SEARCH_RANGES = 4
# Fetchers kept for search ranges while search can carry a collection (of more than twice as many): list ranges
# never hold every fetcher (when the list's 10-s window is spent, list fetchers wait for it, and search would idle
# with work left).
SEARCH_FETCHERS = 2
# Search requests a plan may spend counting ranges (each is 0.2 s of the 5/s search budget).
MAX_PLAN_COUNTS = 6
# List ranges of a collection whose first page a search count verified (HubSpot honoured the id `after`: nothing
# between the low bound and the first id returned, and that id not low + 1); the run's other list ranges then
# check the first id only. Were `after` an offset, two such proofs cannot happen: the first needs every id up to
# its low bound present, which makes the other's first id low + 1. (Read as the next id to return or as the last
# id returned, `after` = the low bound skips nothing.)
AFTER_PROOFS = 2
# Ranges planned per fetcher, at least (fewer: splits keep the fetchers busy at the end; more: each range costs a
# part-filled last page).
RANGES_PER_FETCHER = 1.5
# A running range is split (its upper half becomes a new pending range) when a fetcher would idle otherwise and the
# range still holds at least this many records: both budgets stay full to the read's end.
SPLIT_MIN_RECORDS = 300
# A range whose upper half would go through search is split from this share of that already while the list holds
# the longer read: at the read's end the list's window is often spent while search idles (with more search work
# left, a split-off range of less than two search pages would only cost search a part-filled page).
SPLIT_SEARCH_SHARE = 0.4
# A range split off for search is sized in whole pages less this share (what the estimate may be off by).
WHOLE_PAGE_MARGIN = 0.02
# List streams read ahead while a plan counts (from id 0 and the first cuts found), and pages each at most.
HEADS = 8
HEAD_PAGES = 20
# Counts of one planning round sent at once (the search budget's requests per second: a round fills one second).
PLAN_ROUND = 5
# Requests per second of each budget (110 per 10 s, 5 per s), and the list requests whose send times a balance
# works out one by one from the held slots (beyond: at the budget's rate).
LIST_PAGES_PER_S = LIST_RECORDS_PER_S // LIST_LIMIT
SEARCH_PAGES_PER_S = SEARCH_RECORDS_PER_S // SEARCH_LIMIT
LIST_PAGES_EXACT = 1_000
AFTER_NOTE = (
    "HubSpot's list did not start at the id asked for, so {n} id range(s) were read through search instead "
    "(same records, search budget)."
)
LIST_ORDER_NOTE = (
    "HubSpot's list did not come in id order, so the id range(s) concerned were read through search instead "
    "(sorted by id; same records, search budget)."
)
WIDE_NOTE = (
    "{n} of {m} properties do not fit in a search request (3,000 characters): search pages would need a batch "
    "read for them, which spends the list budget, so every range was read through the list."
)


class PartitionLost(RunLost):
    """This worker no longer holds the range (taken over as stale, or the run was replaced)."""


@dataclass(frozen=True)
class Position:
    """A range's read position, as its row stores it."""

    via: str
    after: str = ""
    last_id: int = 0
    verified: bool = False
    covered: int | None = None
    pending: tuple[int, ...] = ()
    done: bool = False
    note: str = ""


@dataclass
class Part:
    """A claimed range: its row's fixed fields, its position, and what its pages counted."""

    pk: int
    sc: SourceCollection
    low: int
    high: int | None  # lowered by a split (the writer's thread); the fetcher reads it before every page
    position: Position
    counts: dict = field(default_factory=dict)
    estimate: int = 0
    fetched_to: int = 0  # the last id the fetcher has read (its pages may still wait for the writer)
    ended: bool = False  # the fetcher has read the range's last page (it may still wait for the writer)
    pace: tuple[int, int] | None = None  # the fetcher's last page: (records after its first, their id span)
    left: int | None = None  # what a search page's `total` said the range still holds above the fetcher

    def begun(self) -> bool:
        """Whether the fetcher read a page of the range (before that, a split-off range's estimate is a guess)."""
        return max(self.position.last_id, self.fetched_to) > self.low

    def remaining(self, top: int | None) -> int:
        """Records still to read, about: what the last search page's `total` said; else the plan's estimate less
        what was read, or the estimate's share of the id span still ahead when larger (an estimate can be low),
        but no more than the density read so far over that span (ids are uneven: a range across a gap of
        millions of ids would otherwise seem to hold millions of records)."""
        if self.left is not None:
            return self.left
        high = self.high if self.high is not None else top
        at = max(self.position.last_id, self.fetched_to, self.low)
        read = int(self.counts.get("read") or 0)
        by_count = self.estimate - read
        if high is None or high <= self.low:
            return max(0, by_count)
        ahead = max(0, high - at)
        by_span = int(self.estimate * ahead / (high - self.low))
        if read and at > self.low:
            by_span = min(by_span, int(read * ahead / (at - self.low)))
        return max(0, by_count, by_span)

    @classmethod
    def of(cls, row: ReadPartition, sc: SourceCollection) -> Part:
        position = Position(
            via=row.via,
            after=row.after,
            last_id=row.last_id,
            verified=row.verified,
            covered=row.covered,
            pending=tuple(int(i) for i in row.pending or ()),
            done=row.status == ReadPartition.Status.DONE,
        )
        counts = {**dict.fromkeys(COUNT_KEYS, 0), **(row.counts or {})}
        return cls(row.pk, sc, row.low, row.high, position, counts, estimate=row.estimate, fetched_to=row.last_id)


@dataclass
class Balance:
    """What each budget still has to read (records, and the ranges holding them), and the list's held slots:
    the seconds until each frees, soonest first, and how long a slot is held (None: unknown)."""

    left: dict[str, int]
    ranges: dict[str, int]
    list_slots: tuple[list[float], float, int] | None = None  # (seconds until each frees, hold, budget)
    after: int = 0  # list requests owed once every range is read (each collection's scan of archived records)

    def moved(self, records: int, via: str, to: str) -> Balance:
        """The same with a range of `records` read through `to` instead of `via`."""
        left, ranges = dict(self.left), dict(self.ranges)
        left[via] -= records
        left[to] += records
        ranges[via] -= 1
        ranges[to] += 1
        return Balance(left, ranges, self.list_slots, self.after)

    def seconds(self) -> dict[str, float]:
        """How long each budget takes to send the requests for what it holds (every range ends on a part-filled
        page, half a page on average)."""
        guard = max(0, int(settings.HUBSPOT_RATE_LIMIT_GUARD_MS))
        pages = {
            via: self.left[via] / limit + self.ranges[via] / 2
            for via, limit in ((plan.LIST, LIST_LIMIT), (plan.SEARCH, SEARCH_LIMIT))
        }
        pages[plan.LIST] += self.after
        # Search also pays a count for a list range's first page now and then.
        search = pages[plan.SEARCH] / (SEARCH_PAGES_PER_S * 1_000 / (1_000 + guard) * 0.95)
        return {plan.LIST: self._list_seconds(pages[plan.LIST], guard), plan.SEARCH: search}

    def _list_seconds(self, pages: float, guard: int) -> float:
        """When the list can send the last of `pages` requests: a slot frees a window after it was taken, so
        the list's requests keep the rhythm of the last window's (a read that spent its window early waits for
        it; a burst now means a burst a window later)."""
        n = math.ceil(pages)
        if self.list_slots is None or n > LIST_PAGES_EXACT:
            return pages / (LIST_PAGES_PER_S * 10_000 / (10_000 + guard))
        frees, hold, limit = self.list_slots
        frees = frees[-limit:]
        now = max(0, limit - len(frees))  # slots free now
        times: list[float] = []
        for j in range(n):
            if j < now:
                times.append(0.0)
            elif j - now < len(frees):
                times.append(frees[j - now])
            else:
                times.append(times[j - limit] + hold)
        return times[-1] if times else 0.0


@dataclass
class Work:
    """A collection whose partitioned read this run takes part in."""

    sc: SourceCollection
    names: list[str]
    read: Partitioned
    failed: bool = False
    carries: bool | None = None  # whether a search body holds every property (decided on first use)


class Partitions(Reads):
    """Planning, reading and committing the ranges of partitioned reads (the coordinator and helpers alike)."""

    helper = False  # a helper commits into ranges of a run it does not own
    ranges_done = 0

    # --- threads ----------------------------------------------------------------------------------------------
    def thread_reader(self) -> Partitions:
        """A copy of this engine with a HubSpot client of its own (HubSpotClient is not thread-safe) for one
        thread: under the shared limiter, in the run's meter."""
        reader = copy.copy(self)
        reader.client = HubSpotClient(copy.copy(self.source), meter=self.meter)
        return reader

    def retire(self, client: HubSpotClient) -> None:
        """A thread's client is done: its calls and retries stay in the run's figures."""
        self.retired_calls += client.api_calls
        self.retired_retries += client.retries
        client.close()

    # --- planning ---------------------------------------------------------------------------------------------
    def count_range(self, sc: SourceCollection, low: int, high: int | None) -> int:
        """Records with an id in (low, high]: one search request (limit 1), its `total`."""
        return self.count_and_first(sc, low, high)[0]

    def count_and_first(self, sc: SourceCollection, low: int, high: int | None) -> tuple[int, int | None]:
        """(records with an id in (low, high], the smallest of their ids): one search request sorted by id, limit 1."""
        filters = [{"propertyName": "hs_object_id", "operator": "GT", "value": str(low)}]
        if high is not None:
            filters.append({"propertyName": "hs_object_id", "operator": "LTE", "value": str(high)})
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": ["hs_object_id"],
            "limit": 1,
        }
        page = self.hubspot.search_page(sc.collection, body)
        results = page.get("results") or []
        return int(page.get("total") or 0), (int(results[0]["id"]) if results else None)

    def edge_id(self, sc: SourceCollection, direction: str) -> int | None:
        body = {
            "filterGroups": [],
            "sorts": [{"propertyName": "hs_object_id", "direction": direction}],
            "properties": ["hs_object_id"],
            "limit": 1,
        }
        results = self.hubspot.search_page(sc.collection, body).get("results") or []
        return int(results[0]["id"]) if results else None

    def search_carries_all(self, names: list[str]) -> bool:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "hs_object_id", "operator": "GT", "value": "99999999999"},
                        {"propertyName": "hs_object_id", "operator": "LTE", "value": "99999999999"},
                    ]
                }
            ],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": names,
            "limit": SEARCH_LIMIT,
        }
        return len(_dumps(body)) <= settings.HUBSPOT_SEARCH_MAX_BODY

    def plan_partitions(self, sc: SourceCollection, read: Partitioned, names: list[str], estimate: int) -> None:
        """Write the collection's ranges and its partitioned cursor in one transaction."""
        # Ranges of about HUBSYNC_PARTITION_RECORDS, but at least RANGES_PER_FETCHER per fetcher (while a range
        # keeps 1,000 records): a range is read one page after another, so only as many requests are in flight as
        # ranges are being read; the last ones are split while they run (`split_partition`). Every range costs a
        # part-filled last page, so no more than that.
        parts = max(
            -(-estimate // settings.HUBSYNC_PARTITION_RECORDS),
            min(int(RANGES_PER_FETCHER * settings.HUBSYNC_FETCHERS), estimate // 1000),
        )
        target = max(1, -(-estimate // max(1, min(parts, settings.HUBSYNC_PARTITION_MAX))))
        ranges = self._quantile_plan(sc, estimate, target)
        if ranges is None and estimate >= settings.HUBSYNC_PARTITION_MIN_RECORDS:
            first = self.first_ids.get(sc.pk)
            if first is None:
                first = self.edge_id(sc, "ASCENDING")
            last = self.last_ids.pop(sc.pk) if sc.pk in self.last_ids else self.edge_id(sc, "DESCENDING")
            if last is not None:
                self.top_ids[sc.pk] = last
            if first is not None and last is not None:
                with Counters(self) as counters:
                    # While the plan counts (search budget), the list reads ahead from id 0 and from the first cuts
                    # the counts find (each will start a range): their pages wait in memory until the ranges are
                    # written (`head_pages`), and their first ids prove whether HubSpot takes an id `after`.
                    heads = Heads(self, counters, sc, names, pages=min(HEAD_PAGES, -(-target // LIST_LIMIT)))
                    heads.start(0)
                    self.read_ahead[sc.pk] = heads.started
                    ranges = plan.split(
                        lambda low, high: self.count_and_first(sc, low, high),
                        first_id=first,
                        last_id=last,
                        total=estimate,
                        target=target,
                        max_parts=settings.HUBSYNC_PARTITION_MAX,
                        max_counts=MAX_PLAN_COUNTS,
                        count_many=lambda pairs: counters.count(sc, pairs),
                        parallel=PLAN_ROUND,
                        on_cut=heads.start,
                    )
                    heads.stop.set()
                self.after_checked[sc.pk] = heads.verdict()  # the heads' first pages are in (Counters waited)
        if not ranges:
            ranges = [plan.Range(0, None, estimate)]
        carries = self.search_carries_all(names)
        vias = plan.assign(ranges, search_carries_all=carries)
        # The ranges whose first pages were read ahead go through the list (they start where those pages do).
        ahead = self.read_ahead.get(sc.pk, set())
        vias = [plan.LIST if r.low in ahead else via for r, via in zip(ranges, vias, strict=True)]
        if not carries and len(ranges) > 1:
            properties = self._fitting(names)
            self.add_note(sc, WIDE_NOTE.format(n=len(names) - properties, m=len(names)))
        rows = [
            ReadPartition(
                collection=sc,
                index=index,
                low=r.low,
                high=r.high,
                via=via,
                estimate=r.estimate,
                after="" if r.low <= 0 else str(r.low),
                last_id=r.low,
                verified=r.low <= 0 or via == plan.SEARCH,
                covered=r.low if read.check else None,
            )
            for index, (r, via) in enumerate(zip(ranges, vias, strict=True))
        ]
        stored = replace(read, after=self.after_checked.get(sc.pk)).to_json()
        with transaction.atomic():
            ReadPartition.objects.filter(collection=sc).delete()
            ReadPartition.objects.bulk_create(rows)
            SourceCollection.objects.filter(pk=sc.pk).update(cursor=stored)
            self.heartbeat()
        sc.cursor = stored
        by_via = {v: sum(1 for x in vias if x == v) for v in (plan.LIST, plan.SEARCH)}
        self.counts[sc.collection]["partitions"] = {"done": 0, "total": len(rows)}
        self.say(
            f"{sc.collection}: ~{estimate} records in {len(rows)} id ranges "
            f"({by_via[plan.LIST]} through the list, {by_via[plan.SEARCH]} through search)"
        )

    def _fitting(self, names: list[str]) -> int:
        for n in range(len(names), 0, -1):
            if self.search_carries_all(names[:n]):
                return n
        return 0

    def _quantile_plan(self, sc: SourceCollection, estimate: int, target: int) -> list[plan.Range] | None:
        """A Full sync of a held mirror: cut at the mirror's own id quantiles (one SQL query; no request)."""
        held = RecordCount.objects.filter(source=self.source, collection=sc.collection).values_list("n", flat=True)
        n = held.first() or 0
        if n < settings.HUBSYNC_PARTITION_MIN_RECORDS or estimate < settings.HUBSYNC_PARTITION_MIN_RECORDS:
            return None
        parts = max(2, min(settings.HUBSYNC_PARTITION_MAX, -(-estimate // target)))
        step = max(1, n // parts)
        table = Record._meta.db_table
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT object_id FROM (SELECT object_id, ROW_NUMBER() OVER (ORDER BY object_id) AS rn FROM {table} "
                "WHERE source_id = %s AND collection = %s) AS q WHERE rn %% %s = 0 ORDER BY object_id",
                [self.source.pk, sc.collection, step],
            )
            ids = [row[0] for row in cur.fetchall()][: parts - 1]
        top = Record.objects.filter(source=self.source, collection=sc.collection).order_by("-object_id").first()
        if top is not None:
            self.top_ids[sc.pk] = top.object_id
        return plan.from_quantiles(ids, total=estimate)

    # --- one range's pages (in a fetcher thread, with that thread's client) ------------------------------------
    def partition_pages(self, part: Part, names: list[str]) -> Iterator[tuple[list, Position, Gone | None]]:
        """(records, position after them, what the deletion check found) for every page of the range from its
        position on; and, when a batch of candidates is confirmed, ([], the position before the page, Gone)."""
        sc, low = part.sc, part.low
        pos = part.position
        checking = pos.covered is not None
        covered = pos.covered if pos.covered is not None else low
        pending = list(pos.pending)
        while not pos.done:
            high = part.high  # a split may have lowered it (the writer trims the pages already read above it)
            if high is not None and pos.last_id >= high:
                # What was read reaches the new high bound: the range ends here (its last candidates confirmed).
                yield from self._split_end(part, pos, checking, covered, pending)
                return
            before = replace(pos, covered=covered if checking else None, pending=tuple(pending), note="")
            if pos.via == plan.LIST:
                results, next_pos, fallback = self._list_step(sc, low, high, pos, names)
                if fallback:
                    if self.pool is not None:
                        self.pool.after_broken = True
                    # Read the range again through search from its low bound (records already written are
                    # unchanged: no new change_seq), the deletion check from the low bound too.
                    covered = low
                    pos = replace(pos, via=plan.SEARCH, last_id=low, verified=True, note=fallback)
                    yield (
                        [],
                        replace(pos, covered=low if checking else None, pending=tuple(pending)),
                        Gone(note=fallback),
                    )
                    continue
            else:
                results, next_pos, part.left = self._search_step(sc, low, high, pos, names)
            ids = [int(r["id"]) for r in results]
            part.fetched_to = max(part.fetched_to, next_pos.last_id)
            if len(ids) > 1 and ids[-1] > ids[0]:
                part.pace = (len(ids) - 1, ids[-1] - ids[0])
            part.ended = next_pos.done
            last = next_pos.done
            if checking and not ascending(ids, covered):
                checking = False
                logger.warning(
                    "sync run %s: %s: range (%s, %s] not in ascending id order after id %s; deletion check stopped",
                    self.run_row.pk,
                    sc.collection,
                    low,
                    high,
                    covered,
                )
                next_pos = replace(next_pos, note=ORDER_NOTE)
                last = True  # confirm the candidates found so far
                ids = []
            if checking and (ids or last):
                top = high if last else ids[-1]
                for batch in self.candidate_batches(sc, archived=False, low=covered, high=top, exclude=ids):
                    pending += batch
                    for chunk in ready_chunks(pending):
                        yield self._confirm(sc, chunk, pending, before)
                covered = top if top is not None else covered
            if last and pending:
                for chunk in ready_chunks(pending, everything=True):
                    yield self._confirm(sc, chunk, pending, before)
            pos = replace(next_pos, covered=covered if checking else None, pending=tuple(pending) if checking else ())
            yield results, pos, (Gone(note=pos.note) if pos.note else None)

    def _split_end(
        self, part: Part, pos: Position, checking: bool, covered: int, pending: list[int]
    ) -> Iterator[tuple[list, Position, Gone | None]]:
        before = replace(pos, covered=covered if checking else None, pending=tuple(pending), note="")
        if checking:
            for chunk in ready_chunks(pending, everything=True):
                yield self._confirm(part.sc, chunk, pending, before)
        yield [], replace(before, pending=(), done=True), None

    def _confirm(
        self, sc: SourceCollection, chunk: list[int], pending: list[int], before: Position
    ) -> tuple[list, Position, Gone]:
        gone = self.confirm_gone(sc, chunk, mirror_archived=False)
        kept = tuple(i for i in pending if before.covered is not None and i <= before.covered)
        return [], replace(before, pending=kept), gone

    def _list_step(
        self, sc: SourceCollection, low: int, high: int | None, pos: Position, names: list[str]
    ) -> tuple[list, Position, str]:
        """One list page of the range: (its records up to `high`, the position after it, a fallback note when
        HubSpot did not honour the id `after`)."""
        pool = self.pool
        if not pos.verified and pool is not None and pool.after_broken:
            return [], pos, AFTER_NOTE.format(n=1)  # HubSpot did not honour an id `after` in this run already
        try:
            page = self.head_pages.pop((sc.pk, pos.after), None) if self.head_pages else None
            if page is None:
                page = self.hubspot.list_page(
                    sc.collection, properties=names, after=pos.after or None, limit=LIST_LIMIT
                )
        except BadRequest:
            if pos.verified:
                raise
            return [], pos, AFTER_NOTE.format(n=1)
        results = page.get("results") or []
        if results and pos.after == str(pos.last_id) and int(results[0]["id"]) == pos.last_id:
            # `after` is the last id already read (a range's low bound, the previous range's; or the last id a search
            # page of this range read, `_search_step`): where HubSpot takes it as the next id to return, the first
            # record is that one again; where as the last id returned, it is not.
            results = results[1:]
        ids = [int(r["id"]) for r in results]
        if not pos.verified:
            honoured = self._after_honoured(sc, low, high, ids)
            if not honoured:
                logger.warning(
                    "sync run %s: %s: the list did not start after id %s; reading (%s, %s] through search",
                    self.run_row.pk,
                    sc.collection,
                    low,
                    low,
                    high,
                )
                return [], pos, AFTER_NOTE.format(n=1)
        if not ascending(ids, max(pos.last_id, low)):
            # The range's end is only known in id order: read it through search (sorted by us) instead.
            logger.warning(
                "sync run %s: %s: list page of (%s, %s] not in ascending id order; reading it through search",
                self.run_row.pk,
                sc.collection,
                low,
                high,
            )
            return [], pos, LIST_ORDER_NOTE
        kept = results if high is None else [r for r in results if int(r["id"]) <= high]
        nxt = after_token(page)
        done = not nxt or len(kept) < len(results) or (high is not None and bool(ids) and ids[-1] >= high)
        last_id = ids[-1] if ids else pos.last_id
        return kept, replace(pos, after=nxt or "", last_id=last_id, verified=True, done=done, note=""), ""

    def _after_honoured(self, sc: SourceCollection, low: int, high: int | None, ids: list[int]) -> bool:
        """Whether a list range's first page started where it should: its first id above the low bound, and a
        search count of the ids between says none was skipped; once the collection has AFTER_PROOFS such proofs
        in this run, the first id alone (a range whose first page comes while enough checks are in flight waits
        for them rather than spending a search request of its own)."""
        pool = self.pool
        if ids and ids[0] <= low:
            return False
        if pool is None:
            return self.count_range(sc, low, ids[0] - 1 if ids else high) == 0
        if ids and pool.await_proof(sc.pk):
            return True
        try:
            honoured = self.count_range(sc, low, ids[0] - 1 if ids else high) == 0
        except BaseException:
            pool.proved(sc.pk, honoured=False, gap=0)
            raise
        pool.proved(sc.pk, honoured=honoured, gap=ids[0] - low if ids else 0)
        return honoured

    def _search_step(
        self, sc: SourceCollection, low: int, high: int | None, pos: Position, names: list[str]
    ) -> tuple[list, Position, int | None]:
        """One search page of the range above the last id read: its records, the position after it, and what the
        range still holds above it (HubSpot's `total`; None once the rest goes through the list)."""
        last_id = max(pos.last_id, low)
        filters = [{"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
        if high is not None:
            filters.append({"propertyName": "hs_object_id", "operator": "LTE", "value": str(high)})
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "properties": names,
            "limit": SEARCH_LIMIT,
        }
        page = self.hubspot.search_page(sc.collection, body)
        results = page.get("results") or []
        ids = [int(r["id"]) for r in results]
        more = bool(after_token(page)) and bool(ids)
        last_id = max([last_id, *ids])
        rest = int(page.get("total") or 0) - len(results)
        if (
            more
            and 0 < rest <= LIST_LIMIT - 2
            and self.pool is not None
            and self.pool.after_proven(sc.pk)
            and self._list_has_room()
        ):
            # What the range still holds fits in one list page: a search page would carry it in a slot worth 200
            # records (5/s), a list page in one worth 100 (11/s), while the list's window has room (spent, its
            # ranges wait and search would idle). The list goes on from the last id read (the page may start with
            # it, and must reach past the range's end to say it ended: 2 records of room).
            return (
                results,
                replace(pos, via=plan.LIST, after=str(last_id), last_id=last_id, verified=True, note=""),
                None,
            )
        return results, replace(pos, last_id=last_id, done=not more, note=""), max(0, rest)

    def _list_has_room(self) -> bool:
        """Whether the account's list window has a tenth of its budget free now (every worker's requests)."""
        limiter, account = self.hubspot.limiter, self.hubspot.account
        budget = limiter.budget(account, GENERAL)
        used = limiter.used(account, GENERAL, budget.window_ms)
        return used is None or used <= budget.limit * 0.9

    # --- claims -------------------------------------------------------------------------------------------------
    def claim_partition(
        self,
        collection_ids: list[int],
        prefer: list[str],
        *,
        search_full: bool = False,
        only: str | None = None,
        searchable: frozenset[int] = frozenset(),
        left: Balance,
    ) -> ReadPartition | None:
        """A pending range (or one whose reader stopped beating) of these collections, now ours. `search_full`:
        enough ranges already go through search to fill its budget (an unbegun search range goes through the
        list instead). `only`: a range read through that budget or none (an unbegun one of the other may be
        turned). `searchable`: the collections whose properties a search body carries. `left`: what each budget
        still has to read (`_records_left`)."""
        stale = timezone.now() - timedelta(seconds=settings.HUBSYNC_RUN_STALE_SECONDS)
        claimable = Q(status=ReadPartition.Status.PENDING) | Q(
            status=ReadPartition.Status.RUNNING, heartbeat_at__lt=stale
        )
        with transaction.atomic():
            base = ReadPartition.objects.select_for_update(skip_locked=True).filter(
                claimable, collection_id__in=collection_ids
            )
            row = None
            for via in [only] if only else prefer:
                row = base.filter(via=via).order_by("-estimate", "index").first()
                if row is not None:
                    break
            if row is None:
                row = base.order_by("-estimate", "index").first()
            if row is None:
                return None
            turn = (only or prefer[0]) == plan.SEARCH and self._may_turn(row, left, searchable, search_full)
            if only and row.via != only and not turn:
                return None
            if row.status == ReadPartition.Status.RUNNING:
                logger.warning("partition %s of %s taken over from %s", row.index, row.collection_id, row.worker)
            fields = ["status", "worker", "heartbeat_at"]
            if turn:
                # Search is short of ranges (its fetchers idle) and this list range is not begun: read it through
                # search, while what search then holds still runs out no later than what the list holds.
                row.via = plan.SEARCH
                row.verified = True
                fields += ["via", "verified"]
            elif (
                row.via == plan.SEARCH
                and not only
                and not (self.pool is not None and self.pool.after_broken)
                and _unstarted(row)
                and (search_full or self._finishes_first(left, row, plan.LIST))
            ):
                # The plan's split was a guess (the search budget also pays the plan's counts and the list ranges'
                # checks): when what the list ranges still hold would run out before what search still holds,
                # this search range (not begun) is read through the list instead, so both budgets stay full
                # until the read's end. (The other way only where the collection's properties fit a search body.)
                row.via = plan.LIST
                row.after = "" if row.low <= 0 else str(row.low)
                row.verified = row.low <= 0
                fields += ["via", "after", "verified"]
            row.status = ReadPartition.Status.RUNNING
            row.worker = self.worker
            row.heartbeat_at = timezone.now()
            row.save(update_fields=fields)
        return row

    def _may_turn(self, row: ReadPartition, left: Balance, searchable: frozenset[int], search_full: bool) -> bool:
        """Whether a pending list range may be read through search instead (the other way is decided in
        `claim_partition`): not begun, its pages not read ahead, its collection's properties fit a search body,
        search has room, and search would still finish first."""
        return (
            row.via == plan.LIST
            and not search_full
            and row.collection_id in searchable
            and _unstarted(row)
            and row.low not in self.read_ahead.get(row.collection_id, ())
            and self._finishes_first(left, row, plan.SEARCH)
        )

    def _records_left(self, collection_ids: list[int], active: dict[int, Part] | None = None) -> Balance:
        """What each budget still has to read in the ranges of these collections (every worker's; this worker's
        running ranges as their fetchers know it), and when the list's held slots free."""
        left = {plan.LIST: 0, plan.SEARCH: 0}
        ranges = {plan.LIST: 0, plan.SEARCH: 0}
        active = active or {}
        for pk, via, estimate, counts in (
            ReadPartition.objects.filter(collection_id__in=collection_ids)
            .exclude(status=ReadPartition.Status.DONE)
            .values_list("pk", "via", "estimate", "counts")
        ):
            part = active.get(pk)
            if part is not None:
                if part.ended or part.position.done:
                    continue
                via, records = part.position.via, part.remaining(self.top_ids.get(part.sc.pk))
            else:
                records = max(0, estimate - int((counts or {}).get("read") or 0))
            left[via] = left.get(via, 0) + records
            ranges[via] = ranges.get(via, 0) + 1
        limiter, account = self.hubspot.limiter, self.hubspot.account
        held = limiter.held_slots(account, GENERAL)
        budget = limiter.budget(account, GENERAL).limit
        # The scan of archived records that follows the read (a list request per collection at least) needs a
        # list slot when the last range is done: the list's read ends that much sooner.
        return Balance(left, ranges, None if held is None else (*held, budget), after=len(collection_ids))

    def _finishes_first(self, left: Balance, row: ReadPartition, to: str) -> bool:
        """Whether, with `row` (pending, counted in `left`) read through `to`, what that budget then holds would
        run out no later than what the other holds."""
        seconds = left.moved(max(row.estimate, 1), row.via, to).seconds()
        other = plan.SEARCH if to == plan.LIST else plan.LIST
        return seconds[to] <= seconds[other]

    def _carries(self, work: Work) -> bool:
        if work.carries is None:
            work.carries = self.search_carries_all(work.names)
        return work.carries

    @staticmethod
    def _list_behind(left: Balance) -> bool:
        """Whether what the list holds takes longer to read than what search holds."""
        seconds = left.seconds()
        return seconds[plan.LIST] > seconds[plan.SEARCH]

    def split_partition(
        self,
        active: dict[int, Part],
        by_id: dict[int, Work],
        busy: dict[str, int],
        *,
        only: str | None = None,
        to_search: bool = False,
    ) -> bool:
        """Split the running range with the most records ahead (with a known upper id): its upper half becomes a
        new pending range (through search when that budget has room or `to_search`, and the properties fit, else
        the list; `only`: through that budget or no split), in one transaction with its row's lowered high bound.
        Whether one was split."""
        candidates = [
            p
            for p in active.values()
            if not (p.position.done or p.ended or by_id[p.sc.pk].failed)
            and (p.high is not None or p.sc.pk in self.top_ids)
            and p.begun()
        ]
        if not candidates:
            return False
        part = max(candidates, key=lambda p: p.remaining(self.top_ids.get(p.sc.pk)))
        top = part.high if part.high is not None else self.top_ids[part.sc.pk]
        ahead = part.remaining(self.top_ids.get(part.sc.pk))
        start = max(part.position.last_id, part.fetched_to, part.low)
        if ahead < SPLIT_MIN_RECORDS * SPLIT_SEARCH_SHARE or top - start < 2:
            return False
        room = to_search or busy.get(plan.SEARCH, 0) < SEARCH_RANGES
        # Less than two search pages ahead: through search only while the list holds the longer read (a part-filled
        # search page is a page less for a range that fills it).
        whole = ahead >= 2 * SEARCH_LIMIT or to_search
        via = plan.SEARCH if self._carries(by_id[part.sc.pk]) and room and whole else plan.LIST
        if (via == plan.LIST and ahead < SPLIT_MIN_RECORDS) or (only and via != only):
            return False
        share = ahead // 2
        if via == plan.SEARCH and share >= SEARCH_LIMIT:
            # Whole search pages (less a margin for the estimate): a range's last page is part-filled, and a search
            # page is worth two of the list's.
            share = int(share // SEARCH_LIMIT * SEARCH_LIMIT * (1 - WHOLE_PAGE_MARGIN))
        kept_ahead = ahead - share
        cut = start + (top - start) * kept_ahead // ahead
        if part.pace is not None:
            # Where the ids the fetcher reads now put what the range keeps (ids are uneven: lengths of 1 to 11
            # digits, big gaps); the span's share could leave the upper part empty (a search page of nothing, and
            # the next split of the same range the same).
            records, span = part.pace
            cut = min(cut, start + max(1, span * kept_ahead // records))
        with transaction.atomic():
            kept = int(part.counts.get("read") or 0) + ahead - share
            if not ReadPartition.objects.filter(
                pk=part.pk, worker=self.worker, status=ReadPartition.Status.RUNNING
            ).update(high=cut, estimate=kept):
                return False
            index = ReadPartition.objects.filter(collection=part.sc).order_by("-index").values_list("index", flat=True)
            ReadPartition.objects.create(
                collection=part.sc,
                index=(index.first() or 0) + 1,
                low=cut,
                high=part.high,
                via=via,
                estimate=share,
                after=str(cut),
                last_id=cut,
                verified=via == plan.SEARCH,
                covered=cut if part.position.covered is not None else None,
            )
        part.high, part.estimate = cut, kept  # the writer trims what the fetcher already read above the cut
        part.left = None  # a search page's `total` counted up to the old high bound
        planned = self.counts[part.sc.collection].get("partitions")
        if isinstance(planned, dict):
            planned["total"] = int(planned.get("total") or 0) + 1
        return True

    def release_partitions(self, collection_ids: list[int]) -> None:
        """Give back the ranges this worker holds (a failed collection, or stopping): pending again."""
        ReadPartition.objects.filter(
            collection_id__in=collection_ids, worker=self.worker, status=ReadPartition.Status.RUNNING
        ).update(status=ReadPartition.Status.PENDING, worker="")

    # --- the writer ---------------------------------------------------------------------------------------------
    def fence(self) -> None:
        """Inside a range's page transaction: this worker still runs the run (the coordinator's heartbeat), or
        the run it helps is still running."""
        if not self.helper:
            self.heartbeat(with_counts=False)
            return
        if not SyncRun.objects.filter(pk=self.run_row.pk, status=SyncRun.Status.RUNNING).exists():
            raise RunLost(f"run {self.run_row.pk} is no longer running")

    def commit_partition_pages(self, items: list[tuple[Part, list, Position, Gone | None]]) -> None:
        """Pages of one or several ranges in ONE transaction (a group commit: one change_seq block, one counter
        update, one fence): each range's row saved once with its last position and counts. Raises
        PartitionLost when a range is no longer ours (the whole group rolls back)."""
        last = {id(part): n for n, (part, _records, _pos, _gone) in enumerate(items)}
        spent = self.spent() if self.helper else {}
        first = items[0][0]
        for key, value in spent.items():
            # A helper's requests, retries and 429s reach the run's figures through its ranges' rows (the run's
            # worker sums them).
            if value > self.reported[key]:
                first.counts[key] = int(first.counts.get(key) or 0) + value - self.reported[key]
        pages = []
        for n, (part, records, pos, gone) in enumerate(items):
            save = self._saver(part, pos) if last[id(part)] == n else None
            pages.append(PageCommit(part.sc, records, gone, counts=part.counts, checkpoint=save))
        reads_before = {id(part): int(part.counts.get("read") or 0) for part, *_rest in items}
        self.commit_pages(pages, fence=self.fence)
        for key, value in spent.items():
            self.reported[key] = max(self.reported[key], value)
        for part, _records, pos, _gone in items:
            part.position = pos
        for part, *_rest in {id(item[0]): item for item in items}.values():
            sc = part.sc
            self.own_partition_reads[sc.pk] = (
                self.own_partition_reads.get(sc.pk, 0) + int(part.counts.get("read") or 0) - reads_before[id(part)]
            )

    def _saver(self, part: Part, pos: Position):
        def save() -> None:
            status = ReadPartition.Status.DONE if pos.done else ReadPartition.Status.RUNNING
            updated = ReadPartition.objects.filter(
                pk=part.pk, worker=self.worker, status=ReadPartition.Status.RUNNING
            ).update(
                via=pos.via,
                after=pos.after,
                last_id=pos.last_id,
                verified=pos.verified,
                covered=pos.covered,
                pending=list(pos.pending),
                counts=part.counts,
                status=status,
                heartbeat_at=timezone.now(),
            )
            if not updated:
                raise PartitionLost(f"partition {part.pk} is no longer held by {self.worker}")

        return save

    def partition_totals(self, collection_ids: list[int]) -> dict[int, dict]:
        """{collection id: the counts of its ranges, summed} as committed (every worker's); the requests helpers
        made for them, their retries and 429s are noted on the way (`helper_spent`)."""
        out: dict[int, dict] = {}
        spent: dict[int, dict[str, int]] = {}
        for collection_id, counts in ReadPartition.objects.filter(collection_id__in=collection_ids).values_list(
            "collection_id", "counts"
        ):
            add_counts(out.setdefault(collection_id, {}), counts or {})
            into = spent.setdefault(collection_id, dict.fromkeys(SPENT_KEYS, 0))
            for key in SPENT_KEYS:
                into[key] += int((counts or {}).get(key) or 0)
        if not self.helper:
            self.helper_spent.update(spent)
        return out

    def run_partitions(self, works: list[Work], *, coordinate: bool) -> None:
        """Claim, read and commit ranges of these collections until none is left to claim; the coordinator then
        waits for the ranges other workers hold (taking over stale ones) until every range is done."""
        by_id = {w.sc.pk: w for w in works}
        pool = FetcherPool(self, settings.HUBSYNC_FETCHERS)
        self.pool = pool
        self.partitioned_ids.update(by_id)
        active: dict[int, Part] = {}
        last_beat = time.monotonic()
        weights = {plan.LIST: 11, plan.SEARCH: 5}  # requests per second of each budget
        try:
            while True:
                live = [pk for pk, w in by_id.items() if not w.failed]
                searchable = frozenset(pk for pk in live if self._carries(by_id[pk]))
                list_room = pool.size - (SEARCH_FETCHERS if searchable and pool.size > 2 * SEARCH_FETCHERS else 0)
                while live and len(active) < pool.size:
                    busy = {v: sum(1 for p in active.values() if p.position.via == v) for v in weights}
                    prefer = sorted(weights, key=lambda v: busy[v] / weights[v])
                    # Enough search ranges fill its budget; more only while the list holds the longer read (then
                    # search takes ranges split from the list's, so both budgets run to the end).
                    left = self._records_left(live, active)  # one query serves the claim's balance checks
                    behind = bool(searchable) and self._list_behind(left)
                    search_full = busy[plan.SEARCH] >= SEARCH_RANGES and not behind
                    if search_full:
                        prefer = [plan.LIST]
                    # The list holds all the fetchers it may: a free one reads through search or waits.
                    only = plan.SEARCH if busy[plan.LIST] >= list_room and not search_full else None
                    row = self.claim_partition(
                        live, prefer, search_full=search_full, only=only, searchable=searchable, left=left
                    )
                    if (
                        row is None
                        and not self.helper
                        and self.split_partition(active, by_id, busy, only=only, to_search=behind)
                    ):
                        continue  # the new range is claimed next
                    if row is None:
                        break
                    part = Part.of(row, by_id[row.collection_id].sc)
                    active[part.pk] = part
                    pool.submit(part, by_id[row.collection_id].names)
                if not active:
                    if not live or not coordinate or self._all_done(live):
                        return
                    time.sleep(1.0)
                    self.beat()
                    continue
                item = pool.get(timeout=1.0)
                if time.monotonic() - last_beat >= 2.0 or item is None:
                    self.beat()
                    last_beat = time.monotonic()
                if item is None:
                    continue
                # Group commit: every page already waiting joins this one's transaction.
                items = [item, *pool.drain(GROUP_PAGES - 1)]
                self._commit_items(items, by_id, active, pool)
        finally:
            pool.close()
            self.pool = None
            self.head_pages.clear()  # pages read ahead that no range took (a cut the plan joined away)
            try:
                self.release_partitions(list(by_id))
            except Exception:  # the rows go stale and are taken over anyway
                logger.exception("releasing the partitions of run %s failed", self.run_row.pk)

    def _commit_items(
        self, items: list[tuple], by_id: dict[int, Work], active: dict[int, Part], pool: FetcherPool
    ) -> None:
        """The fetchers' items in order: pages grouped into as few transactions as possible (a group ends before
        a page holding an id the group already holds, and at a range's failure)."""
        group: list[tuple[Part, list, Position, Gone | None]] = []
        ids: set[tuple[int, int]] = set()
        for pk, payload, exc in items:
            held = active.get(pk)
            if held is None or by_id[held.sc.pk].failed:
                continue
            if exc is not None:
                self._commit_group(group, active, pool)
                group, ids = [], set()
                self._range_failed(held, exc, by_id, active, pool)
                continue
            records, pos, gone = payload
            records = _within(held, records)
            page_ids = {(held.sc.pk, i) for i in PageCommit(held.sc, records, gone).ids()}
            if ids & page_ids:
                self._commit_group(group, active, pool)
                group, ids = [], set()
            group.append((held, records, pos, gone))
            ids |= page_ids
        self._commit_group(group, active, pool)

    def _commit_group(
        self, group: list[tuple[Part, list, Position, Gone | None]], active: dict[int, Part], pool: FetcherPool
    ) -> None:
        group = [g for g in group if g[0].pk in active]
        if not group:
            return
        counts = {part.pk: dict(part.counts) for part, *_rest in group}
        done = self.done
        try:
            self.commit_partition_pages(group)
        except PartitionLost:
            if len(group) == 1:
                self._lost(group[0][0], active, pool)
                return
            # One range was taken over as stale: the group rolled back; commit its pages one by one instead
            # (what they counted is counted again).
            for part, *_rest in group:
                part.counts.clear()
                part.counts.update(counts[part.pk])
            self.done = done
            for page in group:
                if page[0].pk in active:
                    self._commit_group([page], active, pool)
            return
        for part, _records, pos, _gone in group:
            if pos.done and part.pk in active:
                del active[part.pk]
                self.ranges_done += 1

    def _lost(self, part: Part, active: dict[int, Part], pool: FetcherPool) -> None:
        # Taken over as stale (this worker was slow, not dead): the taker reads it; go on with the rest.
        logger.warning("sync run %s: range %s taken over; leaving it", self.run_row.pk, part.pk)
        pool.skip_part(part.pk)
        active.pop(part.pk, None)

    def _range_failed(
        self, part: Part, exc: BaseException, by_id: dict[int, Work], active: dict[int, Part], pool: FetcherPool
    ) -> None:
        if isinstance(exc, NeedsReconnect | AuthError) or not isinstance(exc, HubSpotError):
            raise exc
        # One collection failing (missing scope, bad request) must not stop the others: its ranges go back to
        # pending, its cursor stays partitioned, and the next run resumes them.
        work = by_id[part.sc.pk]
        work.failed = True
        pool.skip(part.sc.pk)
        for pk in [pk for pk, p in active.items() if p.sc.pk == part.sc.pk]:
            del active[pk]
        self.release_partitions([part.sc.pk])
        self.collection_failed(part.sc, exc)

    def collection_failed(self, sc: SourceCollection, exc: HubSpotError) -> None:
        message = describe(exc)
        logger.warning("sync run %s: %s failed: %s", self.run_row.pk, sc.collection, message)
        self.counts[sc.collection]["error"] = message
        SourceCollection.objects.filter(pk=sc.pk).update(last_error=message)
        self.say(f"{sc.collection}: failed: {message}")

    def _all_done(self, collection_ids: list[int]) -> bool:
        return (
            not ReadPartition.objects.filter(collection_id__in=collection_ids)
            .exclude(status=ReadPartition.Status.DONE)
            .exists()
        )

    def beat(self) -> None:
        """The idle heartbeat: the run (with the counts and progress of every range, every worker's) and the
        ranges this worker holds."""
        ReadPartition.objects.filter(worker=self.worker, status=ReadPartition.Status.RUNNING).update(
            heartbeat_at=timezone.now()
        )
        if not self.helper:
            self.heartbeat()

    def finish_partitioned(self, work: Work) -> None:
        """The collection's last range is done: its counts join the run's, the cursor goes idle at the read's
        start, the rows go (one transaction)."""
        sc = work.sc
        stored = Idle(work.read.started_ms).to_json()
        with transaction.atomic():
            totals = self.partition_totals([sc.pk]).get(sc.pk, {})
            add_counts(self.counts[sc.collection], totals)
            planned = self.counts[sc.collection].get("partitions")
            if isinstance(planned, dict):  # every range is done (a resumed read planned them in an earlier run)
                planned["done"] = planned["total"]
            # Pages other workers read count in the progress from now on through the collection's counts.
            self.done += int(totals.get("read") or 0) - self.own_partition_reads.pop(sc.pk, 0)
            self.partitioned_ids.discard(sc.pk)
            ReadPartition.objects.filter(collection=sc).delete()
            SourceCollection.objects.filter(pk=sc.pk).update(cursor=stored)
            self.heartbeat()
        sc.cursor = stored

    def send_helpers(self) -> None:
        """Ask other workers to help with this run's ranges (PostgreSQL: several writers)."""
        helpers = settings.HUBSYNC_PARTITION_HELPERS
        if helpers <= 0 or connection.vendor != "postgresql" or settings.CELERY_TASK_ALWAYS_EAGER:
            return
        if not self.announce:
            return  # a foreground run (manage.py sync) needs no broker, so it sends nothing
        for _ in range(helpers):
            handoff.send(READ_PARTITIONS, run_id=self.run_row.pk)


def _within(part: Part, records: list) -> list:
    """A page's records as its range now stands: a split may have lowered the range's high bound after the page
    was read; the records above the cut are the new range's (the fetcher then ends the range: `_split_end`)."""
    high = part.high
    if high is None or not records or int(records[-1]["id"]) <= high:
        return records
    return [r for r in records if int(r["id"]) <= high]


def is_proof(honoured: bool, gap: int) -> bool:
    """Whether a check of the list's id `after` (its first id `gap` above the id asked after, and nothing skipped)
    proves it: only where an offset would have skipped records (see AFTER_PROOFS)."""
    return honoured and gap > 1


def _unstarted(row: ReadPartition) -> bool:
    """Whether no page of the range was committed yet (its position is still the plan's)."""
    return row.last_id == row.low and not row.pending and row.covered in (None, row.low) and not row.counts.get("read")


class Heads:
    """List pages read ahead while a plan counts: from id 0 and from the first cuts found (at most HEADS streams,
    a range's worth of pages each, HEAD_PAGES at most), into the engine's `head_pages` {(collection id, after):
    page}, where the range that starts there takes them instead of asking again (`_list_step`).

    A stream from a cut also checks HubSpot's id `after` for free: the count that found the cut (search, sorted by
    id) told the smallest id above it, and the list's first id after the cut must be that one (else the list
    skipped records, or returned some below the cut). Where the two ids are more than 1 apart it is a proof (see
    AFTER_PROOFS); `verdict()`: proven, broken, or not decided (the list ranges then check their first pages)."""

    def __init__(
        self, engine: Partitions, counters: Counters, sc: SourceCollection, names: list[str], *, pages: int
    ) -> None:
        self.engine, self.counters, self.sc, self.names = engine, counters, sc, names
        self.pages = pages  # no more than a range's worth: a stream must not run into the next one's
        self.stop = threading.Event()
        self.started: set[int] = set()
        self.lock = threading.Lock()
        self.proofs = 0
        self.broken = False

    def start(self, low: int, first: int | None = None) -> None:
        """Read ahead from `low` (a cut; `first`: the smallest id above it, as the count that found it said)."""
        if len(self.started) >= HEADS or low in self.started or self.stop.is_set():
            return
        self.started.add(low)
        self.counters.background(lambda reader: self._read(reader, low, first))

    def verdict(self) -> bool | None:
        with self.lock:
            return False if self.broken else (True if self.proofs >= AFTER_PROOFS else None)

    def _read(self, reader: Partitions, low: int, first: int | None) -> None:
        pages = self.engine.head_pages
        after = "" if low <= 0 else str(low)
        for n in range(self.pages):
            if self.stop.is_set():
                return
            page = reader.hubspot.list_page(
                self.sc.collection, properties=self.names, after=after or None, limit=LIST_LIMIT
            )
            if n == 0 and after and first is not None:
                ids = [int(r["id"]) for r in page.get("results") or [] if int(r["id"]) != low]
                if ids:
                    with self.lock:
                        self.broken = self.broken or ids[0] != first
                        self.proofs += is_proof(ids[0] == first, first - low)
            pages[(self.sc.pk, after)] = page
            nxt = after_token(page)
            if not nxt:
                return
            after = nxt


def _closing(job: Callable[[], Any]) -> Any:
    """Run job in a worker thread, then close that thread's own database connections (a token refresh)."""
    try:
        return job()
    finally:
        connections.close_all()


class Counters:
    """Clients for the plan's counting rounds and its background jobs (the read-ahead): one thread and
    one client each (`Partitions.thread_reader`); the clients are retired (their calls in the run's figures) on
    exit, after the background threads are done."""

    def __init__(self, engine: Partitions) -> None:
        self.engine = engine
        self.counters: list[Partitions] = []
        self.readers: list[Partitions] = []
        self.futures: list[Future] = []

    def __enter__(self) -> Counters:
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self.futures:
            with contextlib.suppress(Exception):  # a failed read-ahead decided nothing (the ranges check themselves)
                future.result()
        for reader in self.readers:
            if reader.client is not None:
                self.engine.retire(reader.client)
        self.readers, self.counters, self.futures = [], [], []

    def _reader(self) -> Partitions:
        reader = self.engine.thread_reader()
        self.readers.append(reader)
        return reader

    def background(self, job: Callable[[Partitions], Any]) -> Future:
        """job(reader) in a thread of its own, with its own client."""
        reader = self._reader()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubsync-ahead")
        try:
            future = executor.submit(_closing, lambda: job(reader))
        finally:
            executor.shutdown(wait=False)
        self.futures.append(future)
        return future

    def count(self, sc: SourceCollection, pairs: list[tuple[int, int]]) -> list[tuple[int, int | None]]:
        if len(pairs) <= 1:
            return [self.engine.count_and_first(sc, low, high) for low, high in pairs]
        while len(self.counters) < len(pairs):
            self.counters.append(self._reader())
        jobs = [
            (lambda reader=reader, low=low, high=high: reader.count_and_first(sc, low, high))
            for reader, (low, high) in zip(self.counters, pairs, strict=False)
        ]
        with ThreadPoolExecutor(max_workers=len(pairs), thread_name_prefix="hubsync-plan") as executor:
            return list(executor.map(_closing, jobs))


class FetcherPool:
    """Fetcher threads, each with its own HubSpot client (HubSpotClient is not thread-safe) on the shared
    limiter, reading claimed ranges page by page into one bounded queue (memory holds a few pages)."""

    def __init__(self, engine: Partitions, size: int) -> None:
        self.engine = engine
        self.size = max(1, size)
        self.work: queue.Queue = queue.Queue()
        self.out: queue.Queue = queue.Queue(maxsize=2 * self.size)  # bounded: a few pages in memory
        self.stop = threading.Event()
        self.skipped: set[int] = set()
        self.skipped_parts: set[int] = set()
        self.threads: list[threading.Thread] = []
        self.clients: list[HubSpotClient] = []
        self.lock = threading.Lock()
        self.after_broken = False  # a list range fell back to search: no more search ranges move to the list
        # {collection id: list ranges whose id `after` a search count proved honoured, with records skipped had it
        # been an offset}: after AFTER_PROOFS of them, a range's first page above its low bound is proof enough.
        self.proofs: dict[int, int] = {}
        for collection_id, proven in engine.after_checked.items():
            if proven:
                self.proofs[collection_id] = AFTER_PROOFS
            elif proven is False:
                self.after_broken = True
        self.proving: dict[int, int] = {}  # {collection id: checks in flight}
        self.checks = threading.Condition(self.lock)

    def await_proof(self, collection_id: int) -> bool:
        """True when the collection's id `after` is proven (AFTER_PROOFS checks passed), waiting while enough
        checks are in flight to decide it; False: the caller checks its own first page (and reports to
        `proved`)."""
        with self.checks:
            while True:
                if self.after_broken or self.stop.is_set():
                    break
                if self.proofs.get(collection_id, 0) >= AFTER_PROOFS:
                    return True
                if self.proving.get(collection_id, 0) < AFTER_PROOFS - self.proofs.get(collection_id, 0):
                    break
                self.checks.wait(timeout=0.5)
            self.proving[collection_id] = self.proving.get(collection_id, 0) + 1
            return False

    def after_proven(self, collection_id: int) -> bool:
        """Whether the collection's id `after` is proven in this run (without waiting)."""
        with self.lock:
            return not self.after_broken and self.proofs.get(collection_id, 0) >= AFTER_PROOFS

    def proved(self, collection_id: int, *, honoured: bool, gap: int) -> None:
        with self.checks:
            self.proving[collection_id] = max(0, self.proving.get(collection_id, 0) - 1)
            self.proofs[collection_id] = self.proofs.get(collection_id, 0) + is_proof(honoured, gap)
            self.checks.notify_all()

    def submit(self, part: Part, names: list[str]) -> None:
        if len(self.threads) < self.size:
            thread = threading.Thread(target=self._fetch, name=f"hubsync-fetch-{len(self.threads)}", daemon=True)
            self.threads.append(thread)
            thread.start()
        self.work.put((part, names))

    def skip(self, collection_id: int) -> None:
        self.skipped.add(collection_id)

    def skip_part(self, pk: int) -> None:
        self.skipped_parts.add(pk)

    def get(self, timeout: float) -> tuple | None:
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, most: int) -> list[tuple]:
        """Up to `most` items already waiting, without waiting."""
        items: list[tuple] = []
        while len(items) < most:
            try:
                items.append(self.out.get_nowait())
            except queue.Empty:
                break
        return items

    def _put(self, item: tuple) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _fetch(self) -> None:
        reader = self.engine.thread_reader()
        client = reader.hubspot
        with self.lock:
            self.clients.append(client)
        try:
            while not self.stop.is_set():
                try:
                    item = self.work.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    break  # closing
                part, names = item
                try:
                    for page in reader.partition_pages(part, names):
                        # This thread's own connection (the deletion check's candidates) logs its statements
                        # with DEBUG on, up to 9,000 of them: one page's worth is kept.
                        forget_queries()
                        if part.sc.pk in self.skipped or part.pk in self.skipped_parts:
                            break
                        if not self._put((part.pk, page, None)):
                            break
                except BaseException as exc:  # handed to the writer, which decides
                    self._put((part.pk, None, exc))
        finally:
            connections.close_all()  # this thread's own connections (candidates, token refresh)

    def close(self) -> None:
        self.stop.set()
        for _thread in self.threads:
            self.work.put(None)  # an idle fetcher leaves at once (the read's end waits for every one)
        deadline = time.monotonic() + 45
        for thread in self.threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        for client in self.clients:
            self.engine.retire(client)
        self.clients = []

    def stats(self) -> tuple[int, int]:
        with self.lock:
            return sum(c.api_calls for c in self.clients), sum(c.retries for c in self.clients)

"""What a run carries through its collections, and its bookkeeping: progress, the heartbeat (which is also the
fence against a worker that was presumed dead), the "mirror changed" hand-off, the mirror's statistics.

The engine is one class assembled from a stack of layers, each in its module and each using only the ones below
it: `EngineBase` (here) < `mirror.MirrorWrites` < `deletions.Deletions` < `reads.Reads` < `partitions.Partitions`
< `engine.Engine`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from hubsync import handoff
from hubsync.redact import redact

from ..hubspot import HubSpotClient
from ..hubspot.meter import WINDOWS_MS, RequestMeter
from ..models import ReadPartition, Record, Source, SourceCollection, SyncRun

logger = logging.getLogger(__name__)

ANALYZE_EVERY = 20_000
# The mirror's columns whose statistics the per-page lookup, the deletion check and the delivery's reads need.
ANALYZE_COLUMNS = ("source_id", "collection", "object_id", "archived", "change_seq")

Progress = Callable[[str], None]


class RunLost(Exception):
    """This worker no longer owns the run (it was presumed dead and taken over): stop without writing."""


def notify_changes(source: Source, collections: list[str], sync_run: SyncRun | None = None) -> None:
    """Hand-off: the mirror of `collections` changed. `mappings` (handoff.MIRROR_CHANGED) decides which
    deliveries to start, adding the collections whose deliveries are behind.

    Called when a run ends, whatever its status (committed pages are in the mirror), with the collections whose
    mirror rows changed in that run (possibly none), and during long reads at least every HUBSYNC_NOTIFY_EVERY
    changed records with the collection being read. `sync_run` is the run that changed them (the deliveries
    point to it).

    Deliveries read mirror rows past their own watermark, so calling this too often is harmless (a delivery that
    finds another one running leaves a request for it) and a missed call only delays."""
    handoff.send(
        handoff.MIRROR_CHANGED,
        source_id=source.pk,
        collections=sorted(collections),
        sync_run_id=sync_run.pk if sync_run is not None else None,
    )


def describe(exc: BaseException) -> str:
    # Redacted here too: per-collection errors also live in SyncRun.counts (JSON) and the progress output.
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")[:1000]


def empty_counts() -> dict:
    return {"read": 0, "new": 0, "updated": 0, "unchanged": 0, "archived": 0, "deleted": 0, "error": ""}


COUNT_KEYS = ("read", "new", "updated", "unchanged", "archived", "deleted", "merged")
# What a helper spent for a run's ranges, reported in the rows of the ranges it commits (`counts`).
SPENT_KEYS = ("calls", "retries", "limited")


def add_counts(into: dict, counts: dict) -> None:
    """Add one set of a collection's counts (numbers and notes) into another."""
    for key in COUNT_KEYS:
        if counts.get(key):
            into[key] = into.get(key, 0) + int(counts[key])
    for note in counts.get("notes") or []:
        notes = into.setdefault("notes", [])
        if note not in notes:
            notes.append(note)


class EngineBase:
    """The run's state and bookkeeping, shared by every layer of the engine."""

    def __init__(self, run: SyncRun, worker: str, progress: Progress | None, *, announce: bool = True) -> None:
        self.run_row = run
        self.announce = announce
        self.worker = worker
        self.progress = progress
        self.source = Source.objects.get(pk=run.source_id)
        self.client: HubSpotClient | None = None
        # Shared by every client the run opens: the run's true use of the account's rate-limit budget.
        self.meter = RequestMeter()
        self.counts: dict[str, dict] = {}
        self.done = 0
        self.total = 0
        self.changed_collections: set[str] = set()
        self.unnotified = 0
        self.last_print = 0.0
        self.inserted = 0  # new mirror rows since the last ANALYZE
        self.names: dict[str, list[str]] = {}  # the properties read, per collection
        # (collection, id) of the rows mark_archived archived in this run, with their old values.
        self.archived_now: set[tuple[str, int]] = set()
        # Partitioned reads (sources.extraction.partitions): the fetcher threads' clients (live and closed), the
        # collections whose ranges count in ReadPartition rows, and the records this worker read of them.
        self.pool: Any = None
        self.retired_calls = 0
        self.retired_retries = 0
        self.partitioned_ids: set[int] = set()
        self.own_partition_reads: dict[int, int] = {}
        self.first_ids: dict[int, int] = {}  # {collection id: HubSpot's smallest id}, seen by `estimate`
        self.last_ids: dict[int, int | None] = {}  # {collection id: HubSpot's largest id}, asked beside `estimate`
        self.top_ids: dict[int, int] = {}  # {collection id: the largest id when its ranges were planned}
        # What other workers (helpers) spent for this run's ranges, per collection: {collection id: {"calls",
        # "retries", "limited" (429s)}}; and what this helper reported so far through its ranges' rows.
        self.helper_spent: dict[int, dict[str, int]] = {}
        self.reported = dict.fromkeys(SPENT_KEYS, 0)
        # {collection id: whether HubSpot's list takes an id `after` (None: undecided)}, seen while planning
        self.after_checked: dict[int, bool | None] = {}
        # {(collection id, after): list page} read ahead while a plan counted (partitions.Heads)
        self.head_pages: dict[tuple[int, str], dict] = {}
        self.read_ahead: dict[int, set[int]] = {}  # {collection id: the ids the read-ahead started after}

    @property
    def hubspot(self) -> HubSpotClient:
        """The run's client: set when the run starts, before any read."""
        if self.client is None:
            raise RuntimeError("the run's HubSpot client is not open yet")
        return self.client

    def say(self, message: str, *, force: bool = True) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self.last_print >= 1.0:
            self.last_print = now
            self.progress(message)

    def _helpers(self, key: str) -> int:
        return sum(spent.get(key, 0) for spent in self.helper_spent.values())

    def spent(self) -> dict[str, int]:
        """This worker's own requests, retries and 429s in this run (every thread's)."""
        calls, retries = self._client_stats(own=True)
        return {"calls": calls, "retries": retries, "limited": self.meter.snapshot().rate_limited}

    def _client_stats(self, *, own: bool = False) -> tuple[int, int]:
        calls, retries = self.retired_calls, self.retired_retries
        if not own:
            calls, retries = calls + self._helpers("calls"), retries + self._helpers("retries")
        if self.pool is not None:
            more_calls, more_retries = self.pool.stats()
            calls, retries = calls + more_calls, retries + more_retries
        if self.client is None:
            return calls, retries
        return calls + int(getattr(self.client, "api_calls", 0)), retries + int(getattr(self.client, "retries", 0))

    def run_counts(self) -> tuple[dict[str, dict], int]:
        """The run's counts and records read: this engine's own, plus what the ranges of partitioned reads in
        progress committed (every worker's, from their rows)."""
        if not self.partitioned_ids:
            return self.counts, self.done
        counts = {name: dict(c) for name, c in self.counts.items()}
        done = self.done - sum(self.own_partition_reads.values())
        names = dict(SourceCollection.objects.filter(pk__in=self.partitioned_ids).values_list("pk", "collection"))
        for collection_id, totals in self.partition_totals(list(self.partitioned_ids)).items():
            into = counts.setdefault(names[collection_id], empty_counts())
            add_counts(into, totals)
            done += int(totals.get("read") or 0)
        # The ranges done / planned of each read in progress (its rows go when the read ends), for the run page.
        ranges: dict[int, dict[str, int]] = {}
        for collection_id, status in ReadPartition.objects.filter(collection_id__in=self.partitioned_ids).values_list(
            "collection_id", "status"
        ):
            entry = ranges.setdefault(collection_id, {"done": 0, "total": 0})
            entry["total"] += 1
            entry["done"] += status == ReadPartition.Status.DONE
        for collection_id, entry in ranges.items():
            counts.setdefault(names[collection_id], empty_counts())["partitions"] = entry
        return counts, done

    def partition_totals(self, collection_ids: list[int]) -> dict[int, dict]:
        raise NotImplementedError

    def run_fields(self, *, with_counts: bool = True) -> dict[str, Any]:
        """The SyncRun fields a heartbeat and the finish write: calls, the budget used and, `with_counts`, the
        counts and progress."""
        api_calls, retries = self._client_stats()
        self._sample_account_windows()
        reading = self.meter.snapshot()
        fields: dict[str, Any] = {
            "api_calls": api_calls,
            "retries": retries,
            "peak_requests_10s": reading.peak_requests_10s,
            "peak_search_1s": reading.peak_search_1s,
            "rate_limited": reading.rate_limited + self._helpers("limited"),
            "requests_in_flight": self._in_flight(reading.in_flight),
            "budget_10s": reading.budget_10s,
            "search_budget_1s": reading.search_budget_1s,
        }
        if with_counts:
            counts, done = self.run_counts()
            fields.update(counts=counts, progress_done=done, progress_total=self.total or None)
        return fields

    def _sample_account_windows(self) -> None:
        """The account's requests in each of HubSpot's windows ending now, as the shared limiter holds them (every
        worker's), into the run's peaks; only the part of a window since the run began (not the requests the
        set-up pages made just before it)."""
        if self.client is None:
            return
        age = self.meter.age_ms()
        for kind, window_ms in WINDOWS_MS.items():
            used = self.client.limiter.used(self.client.account, kind, min(window_ms, age))
            if used:
                self.meter.account_used(kind, used)

    def _in_flight(self, own: int) -> int:
        """Requests of the account in flight now, every worker's (the shared limiter's count), or this worker's."""
        if self.client is None:
            return own
        shared = self.client.limiter.in_flight(self.client.account)
        return own if shared is None else max(own, shared)

    def heartbeat(self, *, with_counts: bool = True) -> None:
        """Save progress and prove ownership; inside a page transaction this is the fence. `with_counts` False:
        the fence only (a range's page, whose counts live in its row; the idle beat writes them)."""
        updated = SyncRun.objects.filter(pk=self.run_row.pk, status=SyncRun.Status.RUNNING, worker=self.worker).update(
            heartbeat_at=timezone.now(), **self.run_fields(with_counts=with_counts)
        )
        if not updated:
            raise RunLost(f"run {self.run_row.pk} is no longer owned by {self.worker}")

    def maybe_analyze(self, *, at_least: int = ANALYZE_EVERY) -> None:
        """Refresh PostgreSQL's statistics of the mirror after large loads.

        The per-page lookup (which of these ids do we have?) is only fast when the planner knows how many rows
        a source has; with the statistics of an empty table it scans the source's whole collection on every
        page (100k rows: 40x slower, quadratic overall). Autovacuum fixes that eventually, if it runs at all,
        so the engine asks for it after every ANALYZE_EVERY new rows and at the end of a run that loaded much.

        Only the columns the engine's and the delivery's queries filter on (ANALYZE_COLUMNS; the row count is
        refreshed whatever the columns): the properties documents' statistics cost as much again (0.26 against
        0.14 s of the database's CPU at 100k rows, five times in a 100k first sync), and autovacuum gathers them."""
        if self.inserted < at_least or connection.vendor != "postgresql":
            return
        self.inserted = 0
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {Record._meta.db_table} ({', '.join(ANALYZE_COLUMNS)})")

    def notify(self, *, final: bool = False, collection: str | None = None) -> None:
        if not self.announce:
            return
        if final:
            try:
                notify_changes(self.source, sorted(self.changed_collections), self.run_row)
            except Exception:  # the mirror is committed; a failing hand-off must not fail the run
                logger.exception("notify_changes failed for source %s", self.source.pk)
            return
        if self.unnotified >= settings.HUBSYNC_NOTIFY_EVERY and collection:
            self.unnotified = 0
            try:
                notify_changes(self.source, [collection], self.run_row)
            except Exception:
                logger.exception("notify_changes failed for source %s", self.source.pk)

    def add_note(self, sc: SourceCollection, note: str) -> None:
        notes = self.counts[sc.collection].setdefault("notes", [])
        if note not in notes:
            notes.append(note)

"""The extraction engine: HubSpot pages -> mirror, the cursor saved in the same transaction as each page.

A run, per selected collection:

1. **Discovery.** The property schema is read on every run and stored on SourceCollection.properties; added,
   removed and changed properties are appended to SourceCollection.schema_changes with a timestamp. Every
   discovered property is read, so a new property is picked up by the next run.
2. **Read.** The collection's cursor says where to go on:
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
   start date whose mirror holds records goes on from the search read to the **ids-only pass** of step 4
   (cursor ``{"mode": "ids", "after", "covered", "pending", "watermark_ms"}``; the search cursor carries
   ``ids_pass`` so that a run resuming it, whatever its trigger, does the pass too), then to ``idle``.
3. **Archived records.** Search never returns archived records and the list endpoint only returns them when
   asked, so each run pages through ``GET /crm/v3/objects/{type}?archived=true`` (ids and the last-modified
   date) and writes the mirror rows of those ids archived **with the record's final values** (a real change:
   new hash, new change_seq): an update made just before the archive was seen by no search, so the ids the
   mirror holds live, or archived with another last-modified date than the list's, are read in full with a
   batch read (archived=true). Cost: ceil(A / 100) GET requests per collection per run, A = the archived
   records HubSpot still keeps (about 90 days' worth), so a portal with nothing archived pays one request,
   plus ceil(K / 100) batch reads, K = the records archived since the previous run (none: no request). A
   record that comes back (restored) is read again by the next incremental window (restoring bumps its
   last-modified date) and written with archived = False.
   **Merged records.** HubSpot merges two contacts (or companies) into a record with a new id (or the primary's
   id); the ids merged away answer reads with the merged record, under its id, and appear in no list. Every
   read asks for ``hs_merged_object_ids``: a record that names mirror ids there replaced them, so those rows
   leave the mirror in the page's transaction, and a MergedRecord row keeps what they were merged into (counted
   as "merged"). A full read's check (step 4) finds the same through its batch reads: an id answered under
   another id was merged away.
4. **Permanently deleted records** (HubSpot's "permanently delete", a GDPR delete, an archived record purged from the
   recycle bin after 90 days) vanish from the list, the archived list, search and reads: nothing announces them. A
   **full read** (the list mode above, and so the first sync and a "Full sync" of a source without a start date)
   looks for them, page by page, without ever holding a set of ids: the list returns records in ascending id order
   (in practice; ``after`` is documented as opaque, so the order is *checked*, never trusted), so after a page whose
   ids end at M, every id in (previous page's M, M] that the mirror holds as live but the page did not return is a
   **candidate**; the last page's range runs to the end of the mirror. Candidates are only confirmed, never trusted,
   100 at a time (collected across pages, so scattered deletions do not cost a confirmation per page): a batch read
   with archived=false and one with archived=true (ids only). Found live: nothing happens. Found archived: the row is
   marked archived (as in 3; the archived scan then reads its final values). Answered under another id: merged away
   (as in 3; a batch read asking for ``hs_merged_object_ids`` says into which record). Reported missing by both
   reads: the record is gone for good, and so is everything hubsync holds of it (it was personal data the user
   deleted in HubSpot): its mirror row, its history (RecordChange), and the `last_payload` of its DeliveryState rows
   (their ids and hashes stay). The deletions count as "deleted" in the run's counts. The cursor carries the check's
   progress with each page (``covered``: the id range checked; ``pending``: the fewer than 100 candidates not
   confirmed yet), so a resumed read loses nothing. The archived list of a full run is checked the same way against
   the mirror's archived rows (archived records purged after 90 days). A page that is not in ascending order (or
   comes below the covered id) stops the check for the rest of that read (the candidates found so far are still
   confirmed), and the run's counts carry a note saying so; incremental runs never delete. Cost: one indexed range
   query per page (in the prefetch thread, overlapping HubSpot's answer), plus two batch reads per 100 candidates
   when there are any.
   A "Full sync" of a source **with a start date** reads its window through search, which cannot tell a
   deleted record from one outside the window; so after the search read it makes an **ids-only pass**: the same
   list pages with ``hs_object_id`` only, through the same check (same order check, candidates, confirmations,
   cursor with ``covered``/``pending``). The ids it returns are neither read nor written (the search read wrote
   the window's records; the others are not mirrored): only mirror rows HubSpot no longer lists are candidates.
   Cost: ceil(N / 100) requests, N = *all* of HubSpot's live records of the collection (not only the window's),
   plus the confirmations; counted as ``listed`` in the run's counts. A broken order ends the pass at once. The
   archived list is then checked as for a full read. The first sync (empty mirror), incremental and scheduled
   syncs make no pass.

Every page is one transaction: upsert of the changed rows (unchanged content hash = not rewritten), a block
of change_seq numbers from the source's ChangeCounter row (so pages commit in sequence order), the cursor,
and the run's heartbeat. The heartbeat update is also the fence: it only matches while this worker still owns
the run, so a worker that was presumed dead and replaced rolls its page back and stops.
A page costs a constant number of queries whatever its size; memory holds one page at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from hubsync import handoff, hooks
from hubsync.redact import redact

from . import history
from .hubspot import AuthError, HubSpotClient, HubSpotError, NeedsReconnect
from .models import ChangeCounter, MergedRecord, Record, RecordChange, Source, SourceCollection, SyncRun
from .runs import create_run, is_stale, mark_lost

logger = logging.getLogger(__name__)

LIST_LIMIT = 100
SEARCH_LIMIT = 200
BATCH_READ_LIMIT = 100
SCHEMA_KEYS = ("label", "type", "fieldType", "groupName", "hidden", "calculated", "hubspotDefined")
SCHEMA_CHANGES_KEPT = 50
ANALYZE_EVERY = 20_000
# HubSpot's "Merged ... IDs" property: the `;`-separated ids merged into a record. Always read (HubSpot ignores
# a requested property an object type lacks), so that every read of a merged record names the ids it replaced.
MERGED_IDS = "hs_merged_object_ids"
RECORD_UPDATE_FIELDS = [
    "properties", "created_at", "updated_at", "archived", "archived_update", "content_hash", "change_seq", "synced_at",
]

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


def execute_run_foreground(*, run_id: int, progress: Progress | None = None) -> tuple[SyncRun | None, set[str]]:
    """`execute_run` for a caller that delivers by itself (`manage.py sync`, tests): the engine announces
    nothing. Returns (the finished run or None, the collections whose mirror rows changed)."""
    run, worker = _claim(run_id)
    if run is None:
        return None, set()
    engine = _Engine(run, worker, progress, announce=False)
    return engine.run(), engine.changed_collections


def lastmod_property(collection: str) -> str:
    return "lastmodifieddate" if collection == "contacts" else "hs_lastmodifieddate"


def properties_json(properties: dict) -> str:
    """The canonical JSON of a record's properties: hashed, and stored as is (serialised once per record)."""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(properties: dict | str, archived: bool) -> str:
    """Hash over properties + archived flag: equal hash = nothing to write, nothing to deliver."""
    text = properties if isinstance(properties, str) else properties_json(properties)
    return hashlib.sha256(f"{text}|{int(archived)}".encode()).hexdigest()


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _parse_dt(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _next_after(page: dict) -> str | None:
    return ((page.get("paging") or {}).get("next") or {}).get("after")


def _describe(exc: BaseException) -> str:
    # Redacted here too: per-collection errors also live in SyncRun.counts (JSON) and the progress output.
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")[:1000]


def _empty_counts() -> dict:
    return {"read": 0, "new": 0, "updated": 0, "unchanged": 0, "archived": 0, "deleted": 0, "error": ""}


def _ints(values: Iterable) -> set[int]:
    return {int(v) for v in values if str(v).isdigit()}


def _ascending(ids: list[int], covered: int) -> bool:
    """Whether a page's ids are strictly ascending and all above the id range covered so far."""
    previous = covered
    for object_id in ids:
        if object_id <= previous:
            return False
        previous = object_id
    return True


def _without(props: dict, name: str) -> dict:
    return {k: v for k, v in (props or {}).items() if k != name}


def merged_away(records: Iterable[dict]) -> dict[int, int]:
    """{merged-away id: the record's id} from the records' `hs_merged_object_ids` (HubSpot's own id excluded:
    a merge that keeps the primary's id may list it)."""
    out: dict[int, int] = {}
    for r in records:
        value = (r.get("properties") or {}).get(MERGED_IDS)
        if not value:
            continue
        own = int(r["id"])
        for part in str(value).split(";"):
            part = part.strip()
            if part.isdigit() and int(part) != own:
                out[int(part)] = own
    return out


@dataclass
class Gone:
    """Mirror rows HubSpot no longer lists, sorted out by batch reads (a full read's deletion check, step 4 of
    the module docstring): archived in HubSpot (with archivedAt), or deleted for good."""

    archived: dict[int, datetime | None] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    merged: dict[int, int] = field(default_factory=dict)  # merged-away id -> the merged record's id
    note: str = ""  # why the check stopped, for the run's counts

    def __bool__(self) -> bool:
        return bool(self.archived or self.deleted or self.merged or self.note)


ORDER_NOTE = (
    "HubSpot's list did not come in id order, so the check for records deleted in HubSpot stopped at that page "
    "(no record was removed on a guess); the next full sync checks again."
)


# --- claiming runs ---------------------------------------------------------------------------------------


def claim_run(*, run_id: int, worker: str) -> SyncRun | None:
    """queued -> running for this worker. A run still `running` whose heartbeat is stale had a worker that died
    (the broker re-delivered its task to us): it is marked failed and a new run takes over from the cursors.
    Returns None when there is nothing to do (finished, unknown, or alive in another worker)."""
    now = timezone.now()
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return None
        if run.status == SyncRun.Status.RUNNING and is_stale(run, now):
            mark_lost(run, now=now)
            source = Source.objects.get(pk=run.source_id)
            # Same trigger, but a full sync's cursors are not reset again: the new run resumes the re-read.
            run = create_run(source=source, trigger=run.trigger, reset_cursors=False)
            if run is None:
                return None
        if run.status != SyncRun.Status.QUEUED:
            return None
        run.status = SyncRun.Status.RUNNING
        run.worker = worker
        run.started_at = now
        run.heartbeat_at = now
        run.save(update_fields=["status", "worker", "started_at", "heartbeat_at"])
        Source.objects.filter(pk=run.source_id).update(last_run=run)
        return run


def execute_run(*, run_id: int, progress: Progress | None = None) -> SyncRun | None:
    """Run one sync to its end. Returns the finished run, or None when this worker had nothing to do."""
    run, worker = _claim(run_id)
    if run is None:
        return None
    return _Engine(run, worker, progress).run()


def _claim(run_id: int) -> tuple[SyncRun | None, str]:
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    run = claim_run(run_id=run_id, worker=worker)
    if run is None:
        logger.info("sync run %s: nothing to do (finished, unknown or owned by a live worker)", run_id)
    return run, worker


# --- the engine ------------------------------------------------------------------------------------------


class _Engine:
    def __init__(self, run: SyncRun, worker: str, progress: Progress | None, *, announce: bool = True) -> None:
        self.run_row = run
        self.announce = announce
        self.worker = worker
        self.progress = progress
        self.source = Source.objects.get(pk=run.source_id)
        self.client: HubSpotClient | None = None
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

    # -- bookkeeping --

    def say(self, message: str, *, force: bool = True) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self.last_print >= 1.0:
            self.last_print = now
            self.progress(message)

    def _client_stats(self) -> tuple[int, int]:
        if self.client is None:
            return 0, 0
        return int(getattr(self.client, "api_calls", 0)), int(getattr(self.client, "retries", 0))

    def heartbeat(self) -> None:
        """Save progress and prove ownership; inside a page transaction this is the fence."""
        api_calls, retries = self._client_stats()
        updated = SyncRun.objects.filter(
            pk=self.run_row.pk, status=SyncRun.Status.RUNNING, worker=self.worker
        ).update(
            heartbeat_at=timezone.now(),
            counts=self.counts,
            api_calls=api_calls,
            retries=retries,
            progress_done=self.done,
            progress_total=self.total or None,
        )
        if not updated:
            raise RunLost(f"run {self.run_row.pk} is no longer owned by {self.worker}")

    def finish(self, status: str, error: str = "", *, again_soon: bool = False) -> SyncRun:
        now = timezone.now()
        api_calls, retries = self._client_stats()
        updated = SyncRun.objects.filter(
            pk=self.run_row.pk, status=SyncRun.Status.RUNNING, worker=self.worker
        ).update(
            status=status,
            error=error,
            finished_at=now,
            heartbeat_at=now,
            counts=self.counts,
            api_calls=api_calls,
            retries=retries,
            progress_done=self.done,
            progress_total=self.total or None,
        )
        if not updated:
            raise RunLost(f"run {self.run_row.pk} is no longer owned by {self.worker}")
        source_fields: dict = {"last_run_id": self.run_row.pk}
        current = Source.objects.filter(pk=self.source.pk).values("status", "first_synced_at").first() or {}
        if current.get("status") == Source.Status.NEEDS_RECONNECT:
            # The client stopped the schedule (revoked token): leave it stopped until the admin reconnects.
            source_fields["next_sync_at"] = None
        else:
            source_fields["next_sync_at"] = now if again_soon else now + self.source.sync_interval
        if status != SyncRun.Status.FAILED and current.get("first_synced_at") is None:
            source_fields["first_synced_at"] = now
        Source.objects.filter(pk=self.source.pk).update(**source_fields)
        self.run_row.refresh_from_db()
        self.say(f"run {self.run_row.pk} {status}: {self.done} records read" + (f" ({error})" if error else ""))
        handoff.send(handoff.RUN_FINISHED, workspace_id=self.source.workspace_id)
        return self.run_row

    def maybe_analyze(self, *, at_least: int = ANALYZE_EVERY) -> None:
        """Refresh PostgreSQL's statistics of the mirror after large loads.

        The per-page lookup (which of these ids do we have?) is only fast when the planner knows how many rows
        a source has; with the statistics of an empty table it scans the source's whole collection on every
        page (100k rows: 40x slower, quadratic overall). Autovacuum fixes that eventually, if it runs at all,
        so the engine asks for it after every ANALYZE_EVERY new rows and at the end of a run that loaded much."""
        if self.inserted < at_least or connection.vendor != "postgresql":
            return
        self.inserted = 0
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {Record._meta.db_table}")

    # -- the run --

    def run(self) -> SyncRun | None:
        try:
            return self._run()
        except RunLost as exc:
            logger.warning("sync run %s: %s; stopping", self.run_row.pk, exc)
            return None
        finally:
            try:
                self.maybe_analyze(at_least=1000)
            except Exception:  # statistics are an optimisation; never fail a run for them
                logger.exception("ANALYZE of the mirror failed")
            try:
                history.prune()
            except Exception:  # history is for the debugger; never fail a run for it
                logger.exception("pruning the record history failed")
            if self.client is not None:
                self.client.close()
            self.notify(final=True)

    def _run(self) -> SyncRun:
        if self.source.status == Source.Status.NEEDS_RECONNECT:
            return self.finish(SyncRun.Status.FAILED, "HubSpot access was revoked: reconnect the source")
        collections = list(SourceCollection.objects.filter(source=self.source, selected=True))
        if not collections:
            return self.finish(SyncRun.Status.SUCCEEDED)
        ChangeCounter.objects.get_or_create(source=self.source)
        failed = 0
        try:
            self.client = HubSpotClient(self.source)
            for sc in collections:
                self.counts[sc.collection] = _empty_counts()
                try:
                    self.sync_collection(sc)
                except (NeedsReconnect, AuthError):
                    raise
                except HubSpotError as exc:
                    # One collection failing (missing scope, bad request, HubSpot down for it) must not stop
                    # the others: the run becomes partial, the collection keeps its cursor for next time.
                    failed += 1
                    message = _describe(exc)
                    logger.warning("sync run %s: %s failed: %s", self.run_row.pk, sc.collection, message)
                    self.counts[sc.collection]["error"] = message
                    SourceCollection.objects.filter(pk=sc.pk).update(last_error=message)
                    self.say(f"{sc.collection}: failed: {message}")
                    self.heartbeat()
        except (NeedsReconnect, AuthError) as exc:
            return self.finish(SyncRun.Status.FAILED, f"HubSpot refused the credentials: {_describe(exc)}")
        except SoftTimeLimitExceeded:
            # Everything up to the last page is committed; the dispatcher picks the source up again at once.
            return self.finish(
                SyncRun.Status.PARTIAL, "time limit reached; the next run continues from the last page", again_soon=True
            )
        except RunLost:
            raise
        except Exception as exc:
            logger.exception("sync run %s failed", self.run_row.pk)
            self.finish(SyncRun.Status.FAILED, _describe(exc))
            raise
        if failed == 0:
            status = SyncRun.Status.SUCCEEDED
        elif failed == len(collections):
            status = SyncRun.Status.FAILED
        else:
            status = SyncRun.Status.PARTIAL
        errors = "; ".join(f"{c}: {n['error']}" for c, n in self.counts.items() if n["error"])
        return self.finish(status, errors)

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

    # -- one collection --

    def sync_collection(self, sc: SourceCollection) -> None:
        names = self.discover(sc)
        self.names[sc.collection] = names
        cursor = dict(sc.cursor or {})
        now_ms = _ms(timezone.now())
        if cursor.get("mode") not in ("list", "search", "ids"):
            watermark = cursor.get("modified_since_ms")
            if watermark is None:
                if self.source.start_date:
                    start = datetime.combine(self.source.start_date, datetime.min.time(), tzinfo=UTC)
                    cursor = {"mode": "search", "window_start_ms": _ms(start), "window_end_ms": now_ms, "last_id": 0}
                    if self.run_row.trigger == SyncRun.Trigger.FULL and Record.objects.filter(
                        source_id=self.source.pk, collection=sc.collection
                    ).exists():
                        # A Full sync of a mirror that holds records: after the window, the ids-only pass over
                        # the list looks for records deleted in HubSpot (step 4 of the module docstring). Kept in
                        # the cursor, so a run that resumes this read (whatever its trigger) does the pass too.
                        cursor["ids_pass"] = True
                else:
                    # `covered`: the deletion check's progress (see the module docstring, step 4).
                    cursor = {"mode": "list", "after": None, "started_ms": now_ms, "covered": 0}
            else:
                overlap = settings.HUBSYNC_SEARCH_OVERLAP_SECONDS * 1000
                cursor = {
                    "mode": "search",
                    "window_start_ms": max(0, int(watermark) - overlap),
                    "window_end_ms": now_ms,
                    "last_id": 0,
                    "previous_ms": int(watermark),
                }
        self.say(f"{sc.collection}: {len(names)} properties, reading ({cursor['mode']})")
        full = cursor["mode"] == "list"
        if full:
            self.read_list(sc, cursor, names)
        elif cursor["mode"] == "search":
            self.read_search(sc, cursor, names)
        if (sc.cursor or {}).get("mode") == "ids":
            # The search read of a Full sync ended (now or in the run that was killed): the ids-only pass.
            self.read_ids(sc, sc.cursor)
            full = True
        # Only a full read has seen every live record, so only then may archived rows HubSpot purged be removed.
        self.scan_archived(sc, check_deleted=full)
        c = self.counts[sc.collection]
        if c["deleted"]:
            logger.info("sync run %s: %s: %s records deleted in HubSpot removed from the mirror",
                        self.run_row.pk, sc.collection, c["deleted"])
        self.say(
            f"{sc.collection}: done: {c['read']} read, {c['new']} new, {c['updated']} updated, "
            f"{c['unchanged']} unchanged, {c['archived']} archived, {c['deleted']} deleted"
        )

    def discover(self, sc: SourceCollection) -> list[str]:
        return sorted({*store_schema(sc, self.client.get_properties(sc.collection)), MERGED_IDS})

    def estimate(self, sc: SourceCollection) -> int:
        """Records a full read will see: one search request (limit 1) for its `total`, else the mirror count."""
        try:
            page = self.client.search_page(
                sc.collection, {"filterGroups": [], "properties": ["hs_object_id"], "limit": 1}
            )
            return int(page.get("total") or 0)
        except HubSpotError:
            return Record.objects.filter(source=self.source, collection=sc.collection, archived=False).count()

    def read_list(self, sc: SourceCollection, cursor: dict, names: list[str]) -> None:
        estimate = self.estimate(sc)
        if cursor.get("after"):
            # Resuming: what the mirror already holds (the pages before the checkpoint) is not read again.
            held = Record.objects.filter(source=self.source, collection=sc.collection, archived=False).count()
            estimate = max(0, estimate - held)
        self.total += estimate
        self.consume(sc, self.list_pages(sc, cursor, names))

    def read_ids(self, sc: SourceCollection, cursor: dict) -> None:
        """The ids-only pass of a Full sync with a start date (step 4 of the module docstring): the list endpoint
        with `hs_object_id` only, for the deletion check alone; what it returns is neither read nor written (the
        search read did that for the window). Cost: ceil(N / 100) requests, N = HubSpot's live records."""
        counts = self.counts[sc.collection]
        counts.setdefault("listed", 0)  # before the prefetch thread adds to it
        # The progress bar moves with the ids listed, against what the last pass listed (else the mirror's count):
        # no extra request to ask HubSpot for its total.
        self.total += ids_pass_estimates(self.source, [sc.collection], exclude_run=self.run_row.pk)[sc.collection][0]
        self.say(f"{sc.collection}: looking for records deleted in HubSpot (ids only)")
        seen = counts["listed"]
        for records, new_cursor, gone in _prefetched(self.list_pages(sc, cursor, None), on_idle=self.heartbeat):
            listed = counts["listed"]
            self.done += listed - seen
            seen = listed
            self.commit_page(sc, records, new_cursor, gone)

    def list_pages(
        self, sc: SourceCollection, cursor: dict, names: list[str] | None
    ) -> Iterator[tuple[list, dict, Gone | None]]:
        """(records, cursor after them, what the deletion check found) for every page of the list endpoint, from
        the cursor on; and, when a batch of candidates has been confirmed, ([], the cursor *before* the page,
        that batch's Gone) first. Runs in the prefetch thread: the deletion check's range query and batch reads
        overlap the writing of the previous page (step 4 of the module docstring).

        Candidates are collected across pages and confirmed BATCH_READ_LIMIT at a time (and all of them at the
        end), so scattered deletions cost two batch reads per 100 deletions, not per page. The ones not yet
        confirmed ride in the cursor (`pending`, fewer than BATCH_READ_LIMIT ids) so a resumed read loses none.

        `names` None: the ids-only pass (cursor mode "ids"): pages ask for `hs_object_id` only and yield no
        records, and the pass ends as soon as the check stops (nothing else to do with the pages)."""
        ids_only = names is None
        after = cursor.get("after")
        # A checkpoint without `covered` (written before the check existed) cannot say what was checked.
        checking = cursor.get("covered") is not None
        covered = int(cursor.get("covered") or 0)
        pending = [int(i) for i in cursor.get("pending") or []]
        done_cursor = {
            "mode": "idle", "modified_since_ms": cursor["watermark_ms"] if ids_only else cursor["started_ms"],
        }
        counts = self.counts[sc.collection]
        while True:
            page = self.client.list_page(
                sc.collection, properties=["hs_object_id"] if ids_only else names, after=after, limit=LIST_LIMIT
            )
            results = page.get("results") or []
            next_after = _next_after(page)
            note = None
            if ids_only:
                counts["listed"] += len(results)  # an existing key: no resize while the heartbeat serialises
                results = []  # the search read wrote the window's records; the others are not mirrored
            if checking:
                ids = [int(r["id"]) for r in page.get("results") or []]
                last = not next_after
                if not _ascending(ids, covered):
                    checking = False
                    logger.warning(
                        "sync run %s: %s: list page not in ascending id order after id %s; deletion check stopped",
                        self.run_row.pk, sc.collection, covered,
                    )
                    note = Gone(note=ORDER_NOTE)
                    last = True  # the candidates found so far are still confirmed (nothing is removed unasked)
                    ids = []
                before = {**cursor, "after": after, "covered": covered}
                if checking and (ids or last):
                    # The range this page covers: (covered, its last id], or to the end on the last page.
                    top = ids[-1] if not last else None
                    batches = self.candidate_batches(sc, archived=False, low=covered, high=top, exclude=ids)
                    for batch in batches:
                        pending += batch
                        while len(pending) >= BATCH_READ_LIMIT:
                            yield self._confirmed(sc, pending, before)
                    covered = top if top is not None else covered
                while last and pending:
                    yield self._confirmed(sc, pending, before)
            if ids_only and not checking:
                next_after = None  # the check stopped (order broken): the pass has nothing else to do
            if next_after:
                after = next_after
                # Without `covered` a resumed read does not check (the order broke, or an old checkpoint).
                new_cursor = {k: v for k, v in cursor.items() if k not in ("covered", "pending")}
                new_cursor["after"] = after
                if checking:
                    new_cursor["covered"] = covered
                    # A copy: the consumer commits this cursor while this thread goes on changing `pending`.
                    new_cursor["pending"] = list(pending)
                yield results, new_cursor, note
            else:
                yield results, done_cursor, note
                return

    def _confirmed(self, sc: SourceCollection, pending: list[int], before: dict) -> tuple[list, dict, Gone]:
        """Confirm the first BATCH_READ_LIMIT pending candidates (taken off `pending`), as an item of list_pages
        committed on its own with `before`, the cursor before the current page: a crash re-reads that page and
        finds its range's candidates again, while the earlier ranges' unconfirmed ones stay in the cursor."""
        chunk = pending[:BATCH_READ_LIMIT]
        del pending[:BATCH_READ_LIMIT]
        gone = self.confirm_gone(sc, chunk, mirror_archived=False)
        return [], {**before, "pending": [i for i in pending if i <= before["covered"]]}, gone

    def candidate_batches(
        self, sc: SourceCollection, *, archived: bool, low: int, high: int | None, exclude: list[int]
    ) -> Iterator[list[int]]:
        """The deletion check's candidates for one id range: the mirror's rows with this `archived` flag and an id
        in (low, high] (high None: no upper end) that are not in `exclude` (what HubSpot returned for the range),
        in ascending batches of at most BATCH_READ_LIMIT (keyset on the unique index: bounded memory whatever the
        number; one query when there are none, the usual case)."""
        after = low
        while True:
            qs = Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, archived=archived, object_id__gt=after
            )
            if high is not None:
                qs = qs.filter(object_id__lte=high)
            if exclude:
                qs = qs.exclude(object_id__in=exclude)
            batch = list(qs.order_by("object_id").values_list("object_id", flat=True)[:BATCH_READ_LIMIT])
            if batch:
                yield batch
            if len(batch) < BATCH_READ_LIMIT:
                return
            after = batch[-1]

    def confirm_gone(self, sc: SourceCollection, ids: list[int], *, mirror_archived: bool) -> Gone:
        """Ask HubSpot about candidate ids (a batch read live, one archived): archived ones (unless the mirror
        has them archived already), those *both* reads report missing, which are deleted for good, and those
        answered under another id, which HubSpot merged into that record. Ids found live under their own id are
        left alone (the list skipped them for a reason of its own; the next read sees them)."""
        keys = [str(i) for i in ids]
        live, live_missing = self.client.batch_read_found(sc.collection, keys, ["hs_object_id"], archived=False)
        held, held_missing = self.client.batch_read_found(sc.collection, keys, ["hs_object_id"], archived=True)
        found_live: set[int] = set()
        archived_at: dict[int, datetime | None] = {}
        # Each record's own `archived` flag decides, whichever read returned it.
        for records, default in ((live, False), (held, True)):
            for r in records:
                if r.get("archived", default):
                    archived_at[int(r["id"])] = _parse_dt(r.get("archivedAt") or r.get("updatedAt"))
                else:
                    found_live.add(int(r["id"]))
        missing = _ints(live_missing) & _ints(held_missing)
        answered = found_live | set(archived_at)
        merged = self.merged_into(sc, [i for i in ids if i not in answered and i not in missing])
        gone = Gone(merged=merged)
        if not mirror_archived:
            gone.archived = {i: at for i, at in archived_at.items() if i not in found_live}
        # Deleted only when both reads *reported* the id missing: an id a read said nothing about stays.
        gone.deleted = [i for i in ids if i in missing and i not in answered and i not in gone.merged]
        left = set(ids) & found_live
        if left:
            logger.info(
                "sync run %s: %s: %s ids missing from the list were found live; left alone",
                self.run_row.pk, sc.collection, len(left),
            )
        return gone

    def merged_into(self, sc: SourceCollection, ids: list[int]) -> dict[int, int]:
        """{id: the record it was merged into} for ids a live batch read answered, but not under their own id:
        HubSpot answers a read of a merged-away id with the merged record. A batch read asking for
        `hs_merged_object_ids` names them (one request per 100 such ids; none in the usual case); an id no
        merged record names is read alone, and merged into whatever record answers for it."""
        if not ids:
            return {}
        asked = set(ids)
        merged: dict[int, int] = {}
        for archived in (False, True):  # the merged record may have been archived since
            rest = [str(i) for i in ids if i not in merged]
            if rest:
                records = self.client.batch_read(sc.collection, rest, ["hs_object_id", MERGED_IDS], archived=archived)
                merged.update({old: new for old, new in merged_away(records).items() if old in asked})
        for object_id in ids:
            if object_id in merged:
                continue
            record = self.client.read_record(sc.collection, str(object_id), ["hs_object_id"])
            answer = str((record or {}).get("id") or "")
            if answer.isdigit() and int(answer) != object_id:
                merged[object_id] = int(answer)
        return merged

    def read_search(self, sc: SourceCollection, cursor: dict, names: list[str]) -> None:
        start, end = cursor["window_start_ms"], cursor["window_end_ms"]
        if end < start:
            # A cursor in the future (clock skew, hand-edited): nothing can be in the window; keep the cursor.
            self.commit_page(sc, [], self._search_done(cursor, cursor.get("previous_ms") or start))
            return
        self.consume(sc, self.search_pages(sc, cursor, names))

    @staticmethod
    def _search_done(cursor: dict, watermark: int) -> dict:
        """The cursor once a search read is complete: idle at the watermark, or, for a Full sync with a start
        date, the ids-only pass (which goes idle at that watermark when it ends)."""
        if cursor.get("ids_pass"):
            return {"mode": "ids", "after": None, "covered": 0, "pending": [], "watermark_ms": watermark}
        return {"mode": "idle", "modified_since_ms": watermark}

    def search_pages(
        self, sc: SourceCollection, cursor: dict, names: list[str]
    ) -> Iterator[tuple[list, dict, None]]:
        """(records, cursor after them, None) for the window [window_start_ms, window_end_ms], in id order."""
        lastmod = lastmod_property(sc.collection)
        start, end = cursor["window_start_ms"], cursor["window_end_ms"]
        done_cursor = self._search_done(cursor, max(end, cursor.get("previous_ms") or 0))
        last_id = int(cursor.get("last_id") or 0)
        first = True
        while True:
            filters = [
                {"propertyName": lastmod, "operator": "GTE", "value": str(start)},
                {"propertyName": lastmod, "operator": "LTE", "value": str(end)},
            ]
            if last_id:
                # Keyset paging: never an `after` offset, so never the 10,000 cap (see the module docstring).
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)})
            body = {
                "filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": ["hs_object_id", lastmod],
                "limit": SEARCH_LIMIT,
            }
            page = self.client.search_page(sc.collection, body)
            if first:
                self.total += int(page.get("total") or 0)
                first = False
            ids = sorted({int(r["id"]) for r in page.get("results") or []})
            more = bool(_next_after(page)) and bool(ids)
            records: list[dict] = []
            if ids:
                # Full records by id (the search asked for two properties only). Ids gone meanwhile (archived)
                # are simply not returned; the archived scan takes care of them.
                records = self.client.batch_read(sc.collection, [str(x) for x in ids], names)
                last_id = max(last_id, ids[-1])
            yield records, ({**cursor, "last_id": last_id} if more else done_cursor), None
            if not more:
                return

    def consume(self, sc: SourceCollection, pages: Iterator[tuple[list, dict, Gone | None]]) -> None:
        # While HubSpot is slow (429 storm, retries with backoff) the heartbeat goes on, so a live run is never
        # mistaken for a dead one; a dead process stops beating and is taken over.
        for records, new_cursor, gone in _prefetched(pages, on_idle=self.heartbeat):
            self.commit_page(sc, records, new_cursor, gone)

    def scan_archived(self, sc: SourceCollection, *, check_deleted: bool = False) -> None:
        """Write HubSpot's archived records into the mirror as archived, with their final values (step 3 of the
        module docstring). With
        `check_deleted` (a full run), also remove the mirror's archived rows that HubSpot no longer has archived
        nor live: purged from its recycle bin (step 4). The archived list is short (about 90 days' worth) and
        not checkpointed, so this runs in the calling thread, one transaction per page or batch."""
        after = None
        covered = 0
        checking = check_deleted
        pending: list[int] = []  # candidates not confirmed yet (fewer than BATCH_READ_LIMIT between pages)
        lastmod = lastmod_property(sc.collection)
        while True:
            page = self.client.list_page(
                sc.collection, properties=["hs_object_id", lastmod], after=after, limit=LIST_LIMIT, archived=True
            )
            results = page.get("results") or []
            after = _next_after(page)
            last = not after
            if checking:
                ids = [int(r["id"]) for r in results]
                if not _ascending(ids, covered):
                    checking = False
                    logger.warning(
                        "sync run %s: %s: archived list not in ascending id order after id %s; deletion check "
                        "stopped", self.run_row.pk, sc.collection, covered,
                    )
                    self.add_note(sc, ORDER_NOTE)
                    last = True  # confirm what was found so far
                elif ids or last:
                    top = ids[-1] if not last else None
                    for batch in self.candidate_batches(sc, archived=True, low=covered, high=top, exclude=ids):
                        pending += batch
                        while len(pending) >= BATCH_READ_LIMIT:
                            chunk, pending = pending[:BATCH_READ_LIMIT], pending[BATCH_READ_LIMIT:]
                            self.commit_gone(sc, self.confirm_gone(sc, chunk, mirror_archived=True))
                    covered = top if top is not None else covered
            while last and pending:
                chunk, pending = pending[:BATCH_READ_LIMIT], pending[BATCH_READ_LIMIT:]
                self.commit_gone(sc, self.confirm_gone(sc, chunk, mirror_archived=True))
            final = self.read_final(sc, results)
            with transaction.atomic():
                self.write_final(sc, final)
                self.heartbeat()
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
        records = self.client.batch_read(sc.collection, [str(i) for i in sorted(stale)], names, archived=True)
        # Only records still archived under their own id (one restored or merged meanwhile is read as such later).
        wanted = set(stale)
        return [r for r in records if r.get("archived", True) and int(r["id"]) in wanted]

    def write_final(self, sc: SourceCollection, records: list[dict]) -> int:
        """Write archived records with their final values (new hash, new change_seq, a history row), HubSpot's
        archivedAt as their updated_at, and Record.archived_update when those values differ from the last live
        ones. Rows newly archived count as archived, archived rows whose values were old count as updated. Inside
        the caller's transaction. Returns the rows changed."""
        if not records:
            return 0
        old = {
            object_id: (props, archived, updated, digest, flagged)
            for object_id, props, archived, updated, digest, flagged in Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, object_id__in=[int(r["id"]) for r in records]
            ).values_list("object_id", "properties", "archived", "updated_at", "content_hash", "archived_update")
        }
        lastmod = lastmod_property(sc.collection)
        new: dict[int, tuple] = {}
        updates: set[int] = set()  # values the mirror never had live (archiving alone moves the last-modified date)
        for r in records:
            object_id = int(r["id"])
            if object_id not in old:
                continue
            props = {k: v for k, v in (r.get("properties") or {}).items() if v is not None}
            text = properties_json(props)
            digest = content_hash(text, True)
            if digest == old[object_id][3]:
                continue
            at = _parse_dt(r.get("archivedAt") or r.get("updatedAt")) or old[object_id][2]
            created = _parse_dt(r.get("createdAt"))
            new[object_id] = (props, text, created, at, digest)
            if _without(props, lastmod) != _without(old[object_id][0], lastmod) or old[object_id][4]:
                updates.add(object_id)
        if not new:
            return 0
        created_at = dict(
            Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, object_id__in=list(new)
            ).values_list("object_id", "created_at")
        )
        top = self.allocate(len(new))
        seq = top - len(new)
        values, changes = [], []
        for object_id in sorted(new):
            props, text, created, at, digest = new[object_id]
            seq += 1
            values.append((object_id, text, created or created_at.get(object_id), at, True, digest, seq))
            changes.append((object_id, seq, props, True, at))
        self.upsert(sc.collection, values, archived_update=updates)
        if history.enabled():
            # An archive alone moves the last-modified date: its history entry is the archive, no property change.
            before = {
                oid: (
                    old[oid][0] if oid in updates or lastmod not in new[oid][0]
                    else {**old[oid][0], lastmod: new[oid][0][lastmod]},
                    old[oid][1], old[oid][2],
                )
                for oid in new
            }
            history.write(history.changes_for_page(
                source_id=self.source.pk, collection=sc.collection, run_id=self.run_row.pk, old=before, new=changes,
            ))
        counts = self.counts[sc.collection]
        newly = sum(1 for oid in new if not old[oid][1])
        counts["archived"] += newly
        # Archived rows that held old values: updated, unless this run archived them a moment ago (counted then).
        counts["updated"] += sum(
            1 for oid in new if old[oid][1] and (sc.collection, oid) not in self.archived_now
        )
        self.changed_collections.add(sc.collection)
        return len(new)

    def commit_gone(self, sc: SourceCollection, gone: Gone) -> None:
        with transaction.atomic():
            self.apply_gone(sc, gone)
            self.heartbeat()

    def add_note(self, sc: SourceCollection, note: str) -> None:
        notes = self.counts[sc.collection].setdefault("notes", [])
        if note not in notes:
            notes.append(note)

    def mark_archived(self, sc: SourceCollection, archived_at: dict[int, datetime | None]) -> int:
        """Mark the mirror's live rows of these ids archived (new hash, new change_seq, a history row), with
        HubSpot's archivedAt as their updated_at. Inside the caller's transaction. Returns the rows changed."""
        if not archived_at:
            return 0
        rows = list(
            Record.objects.filter(
                source=self.source, collection=sc.collection, object_id__in=list(archived_at), archived=False
            ).values_list("object_id", "properties", "created_at", "updated_at")
        )
        if not rows:
            return 0
        top = self.allocate(len(rows))
        seq = top - len(rows)
        values = []
        changes = []
        for object_id, props, created, updated in sorted(rows, key=lambda r: r[0]):
            seq += 1
            text = properties_json(props)
            values.append(
                (object_id, text, created, archived_at.get(object_id) or updated, True, content_hash(text, True), seq)
            )
            changes.append((object_id, seq, props, True, archived_at.get(object_id) or updated))
        self.upsert(sc.collection, values)
        if history.enabled():
            history.write(history.changes_for_page(
                source_id=self.source.pk, collection=sc.collection, run_id=self.run_row.pk,
                old={oid: (props, False, updated) for oid, props, _created, updated in rows}, new=changes,
            ))
        # Counted here; the archived scan reads their final values.
        self.archived_now.update((sc.collection, oid) for oid, *_rest in rows)
        self.counts[sc.collection]["archived"] += len(rows)
        self.changed_collections.add(sc.collection)
        return len(rows)

    def delete_records(self, sc: SourceCollection, ids: list[int]) -> int:
        """Remove records HubSpot deleted for good, and what hubsync kept of them: the mirror rows, their history,
        and (through hubsync.hooks.records_deleted) what higher apps keep. Inside the caller's transaction; the
        row counters follow by trigger (hubsync.counters)."""
        if not ids:
            return 0
        slots = ", ".join(["%s"] * len(ids))
        where = f"source_id = %s AND collection = %s AND object_id IN ({slots})"
        params = [self.source.pk, sc.collection, *ids]
        with connection.cursor() as cur:
            # Raw DELETEs: nothing refers to these rows, and the ORM would first SELECT what it deletes.
            cur.execute(f"DELETE FROM {Record._meta.db_table} WHERE {where}", params)
            deleted = max(cur.rowcount, 0)
            cur.execute(f"DELETE FROM {RecordChange._meta.db_table} WHERE {where}", params)
        # What higher apps keep of these records goes in this same transaction (mappings: delivery payloads).
        hooks.records_deleted.send(source_id=self.source.pk, collection=sc.collection, object_ids=ids, removed=deleted)
        self.counts[sc.collection]["deleted"] += deleted
        return deleted

    def remove_merged(self, sc: SourceCollection, merged: dict[int, int]) -> int:
        """Take ids HubSpot merged into another record out of the mirror, and record each merge (MergedRecord).

        The merged record is a record of its own (a new id, or the primary's), read and delivered like any other;
        the merged-away ids will never be listed again, so their rows would otherwise stay live for good. Unlike a
        deletion, their history and the last payloads kept on their delivery states stay (nothing asked to erase
        them; the record debugger shows them with the merge). Inside the caller's transaction."""
        if not merged:
            return 0
        held = list(
            Record.objects.filter(
                source_id=self.source.pk, collection=sc.collection, object_id__in=list(merged)
            ).values_list("object_id", flat=True)
        )
        if not held:
            return 0
        now = timezone.now()
        for object_id in held:
            MergedRecord.objects.update_or_create(
                source_id=self.source.pk, collection=sc.collection, object_id=object_id,
                defaults={"merged_into": merged[object_id], "merged_at": now, "run_id": self.run_row.pk},
            )
        slots = ", ".join(["%s"] * len(held))
        with connection.cursor() as cur:
            cur.execute(
                f"DELETE FROM {Record._meta.db_table} WHERE source_id = %s AND collection = %s "
                f"AND object_id IN ({slots})",
                [self.source.pk, sc.collection, *held],
            )
        hooks.records_merged.send(source_id=self.source.pk, collection=sc.collection, object_ids=held)
        counts = self.counts[sc.collection]
        counts["merged"] = counts.get("merged", 0) + len(held)
        logger.info("sync run %s: %s: %s records merged into others in HubSpot removed from the mirror",
                    self.run_row.pk, sc.collection, len(held))
        return len(held)

    def apply_gone(self, sc: SourceCollection, gone: Gone) -> None:
        """A deletion check's outcome, inside the caller's (page) transaction."""
        if gone.note:
            self.add_note(sc, gone.note)
        self.mark_archived(sc, gone.archived)
        self.remove_merged(sc, gone.merged)
        if gone.deleted:
            n = self.delete_records(sc, gone.deleted)
            logger.debug("sync run %s: %s: %s records deleted in HubSpot removed from the mirror",
                         self.run_row.pk, sc.collection, n)

    # -- one page --

    def allocate(self, n: int) -> int:
        """Reserve n change_seq numbers; returns the highest. Must run inside the page's transaction: the
        counter row stays locked until commit, so sequence order is commit order."""
        ChangeCounter.objects.filter(source_id=self.source.pk).update(value=F("value") + n)
        return ChangeCounter.objects.filter(source_id=self.source.pk).values_list("value", flat=True).get()

    def upsert(self, collection: str, values: list[tuple], archived_update: set[int] = frozenset()) -> None:
        """One INSERT ... ON CONFLICT DO UPDATE for the page (PostgreSQL and SQLite alike).

        Raw SQL because the ORM's bulk_create spends more time preparing 100 x 10 values than the database
        spends writing them, and it would serialise the properties a second time (we already hold the JSON
        we hashed). values: (object_id, properties_json, created_at, updated_at, archived, hash, change_seq);
        `archived_update`: the ids whose row gets Record.archived_update (every other row is written without it)."""
        ops = connection.ops
        json_slot = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
        row_sql = f"(%s, %s, %s, {json_slot}, %s, %s, %s, %s, %s, %s, %s)"
        now = ops.adapt_datetimefield_value(timezone.now())
        params: list = []
        for object_id, text, created, updated, archived, digest, seq in values:
            params += [
                self.source.pk, collection, object_id, text, ops.adapt_datetimefield_value(created),
                ops.adapt_datetimefield_value(updated), archived, object_id in archived_update, digest, seq, now,
            ]
        table = Record._meta.db_table
        columns = "source_id, collection, object_id, properties, created_at, updated_at, archived, archived_update, " \
                  "content_hash, change_seq, synced_at"
        updates = ", ".join(f"{c} = excluded.{c}" for c in RECORD_UPDATE_FIELDS)
        sql = (
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * len(values))} "
            f"ON CONFLICT (source_id, collection, object_id) DO UPDATE SET {updates}"
        )
        with connection.cursor() as cur:
            cur.execute(sql, params)

    def commit_page(
        self, sc: SourceCollection, results: Iterable[dict], new_cursor: dict, gone: Gone | None = None
    ) -> None:
        rows: dict[int, tuple] = {}
        parsed: dict[int, dict] = {}  # the properties as dicts, for the record history
        results = list(results)
        merged = merged_away(results)
        if merged:
            merged = {old: new for old, new in merged.items() if old not in {int(r["id"]) for r in results}}
        for r in results:
            props = {k: v for k, v in (r.get("properties") or {}).items() if v is not None}
            archived = bool(r.get("archived", False))
            text = properties_json(props)
            parsed[int(r["id"])] = props
            rows[int(r["id"])] = (
                text, _parse_dt(r.get("createdAt")), _parse_dt(r.get("updatedAt")), archived,
                content_hash(text, archived),
            )
        existing: dict[int, str] = {}
        if rows:
            existing = dict(
                Record.objects.filter(
                    source=self.source, collection=sc.collection, object_id__in=list(rows)
                ).values_list("object_id", "content_hash")
            )
        new = updated = 0
        write: list[int] = []
        for object_id, row in rows.items():
            known = existing.get(object_id)
            if known is None:
                new += 1
                write.append(object_id)
            elif known != row[4]:
                updated += 1
                write.append(object_id)
        c = self.counts[sc.collection]
        c["read"] += len(rows)
        c["new"] += new
        c["updated"] += updated
        c["unchanged"] += len(rows) - new - updated
        self.done += len(rows)
        previous: dict[int, tuple] = {}
        if updated and history.enabled():
            # The old versions of the changed rows only (one query; unchanged and new rows cost nothing).
            previous = {
                object_id: (props, archived, updated_at)
                for object_id, props, archived, updated_at in Record.objects.filter(
                    source=self.source, collection=sc.collection,
                    object_id__in=[object_id for object_id in write if object_id in existing],
                ).values_list("object_id", "properties", "archived", "updated_at")
            }
        with transaction.atomic():
            if write:
                top = self.allocate(len(write))
                seq = top - len(write)
                values = []
                for object_id in sorted(write):
                    seq += 1
                    values.append((object_id, *rows[object_id], seq))
                self.upsert(sc.collection, values)
                if previous:
                    # values: (object_id, json, created, updated, archived, hash, seq)
                    history.write(history.changes_for_page(
                        source_id=self.source.pk, collection=sc.collection, run_id=self.run_row.pk, old=previous,
                        new=[(v[0], v[6], parsed[v[0]], v[4], v[3]) for v in values if v[0] in previous],
                    ))
            if merged:
                # Ids the page's records replaced (HubSpot merges): same transaction as the merged records.
                self.remove_merged(sc, merged)
            if gone:
                # Ids outside this page's rows (the deletion check): same transaction, same fence.
                self.apply_gone(sc, gone)
            SourceCollection.objects.filter(pk=sc.pk).update(cursor=new_cursor)
            self.heartbeat()
        sc.cursor = new_cursor
        self.inserted += new
        self.maybe_analyze()
        if write:
            self.changed_collections.add(sc.collection)
            self.unnotified += len(write)
            self.notify(collection=sc.collection)
        after_page(self, sc)
        self.say(f"{sc.collection}: {self.done} read" + (f" of ~{self.total}" if self.total else ""), force=False)


def ids_pass_estimates(
    source: Source, collections: list[str], *, exclude_run: int | None = None
) -> dict[str, tuple[int, bool]]:
    """{collection: (records the ids-only pass will list, measured?)}: what the last pass listed (`listed` in its
    run's counts; measured), else the mirror's count (a lower bound: the window's records only). For the engine's
    progress bar and the Full sync confirmation page's cost."""
    from .models import RecordCount

    listed: dict[str, int] = {}
    runs = SyncRun.objects.filter(source=source).exclude(pk=exclude_run).order_by("-id")
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


def store_schema(sc: SourceCollection, raw: list[dict]) -> dict[str, dict]:
    """Save HubSpot's property list (`raw`, as the properties endpoint returns it) on the collection, log what
    changed in `schema_changes`, and run the drift check on it. One place for every reader of the schema (the
    engine's discovery, the model builder's live preview): a change first seen by the preview must flag and pause
    mappings exactly as if a sync had seen it, or the next sync would find nothing changed."""
    schema: dict[str, dict] = {}
    for prop in raw:
        if not prop.get("name"):
            continue
        entry = {k: prop.get(k) for k in SCHEMA_KEYS if k in prop}
        if prop.get("options"):
            entry["options"] = [{"label": o.get("label"), "value": o.get("value")} for o in prop["options"]]
        schema[prop["name"]] = entry
    old = sc.properties or {}
    fields = ["properties", "schema_discovered_at", "last_error"]
    if old:
        added = sorted(set(schema) - set(old))
        removed = sorted(set(old) - set(schema))
        changed = sorted(
            name
            for name in set(schema) & set(old)
            if any(schema[name].get(k) != old[name].get(k) for k in ("type", "fieldType", "label", "options"))
        )
        if added or removed or changed:
            entry = {"at": timezone.now().isoformat(), "added": added, "removed": removed, "changed": changed}
            sc.schema_changes = [*(sc.schema_changes or []), entry][-SCHEMA_CHANGES_KEPT:]
            fields.append("schema_changes")
    sc.properties = schema
    sc.schema_discovered_at = timezone.now()
    sc.last_error = ""
    sc.save(update_fields=fields)
    if old:
        _check_drift(sc, old, schema)
    return schema


def _check_drift(sc: SourceCollection, old: dict, new: dict) -> None:
    """Schema drift (hubsync.hooks.schema_discovered; mappings flags, and by the workspace's setting pauses, the
    mappings that use a property HubSpot deleted, renamed or retyped), before this run's pages reach any
    delivery."""
    try:
        hooks.schema_discovered.send(source_collection=sc, old=old, new=new)
    except Exception:  # the mirror must keep syncing; the change stays listed in schema_changes
        logger.exception("schema drift check failed for %s", sc)


def after_page(engine: _Engine, sc: SourceCollection) -> None:
    """Called after every committed page. Does nothing; tests replace it to stop a run at a chosen page."""


_DONE = object()


def _prefetched(
    pages: Iterator, depth: int = 2, on_idle: Callable[[], None] | None = None, idle_seconds: float = 15
) -> Iterator:
    """Iterate `pages` in a background thread, at most `depth` pages ahead.

    HubSpot's answer for page n+1 is awaited while page n is written to the database: the request time and the
    write time overlap instead of adding up. Memory stays bounded (depth pages). The generator (and so the
    HubSpot client) is only ever used by that one thread; its errors are re-raised here, in order. When the
    consumer stops early (an error, a lost run), the thread is told to stop and is joined. `on_idle` is called
    every `idle_seconds` spent waiting for a page."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in pages:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))
        finally:
            if hasattr(pages, "close"):
                pages.close()
            connections.close_all()  # this thread's own connections (token refresh, estimates)

    thread = threading.Thread(target=produce, name="hubsync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item, exc = box.get(timeout=idle_seconds)
            except queue.Empty:
                if on_idle is not None:
                    on_idle()
                continue
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=60)

"""The run: claim it, sync each selected collection, finish it, announce what changed."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hubsync import handoff

from .. import history
from ..hubspot import AuthError, HubSpotClient, HubSpotError, NeedsReconnect
from ..models import ChangeCounter, ReadPartition, Record, RecordCount, Source, SourceCollection, SyncRun
from ..runs import create_run, is_stale, mark_lost
from . import cursor as cursors
from .base import Progress, RunLost, describe, empty_counts
from .mirror import store_schema
from .partitions import Counters, Partitions, Work
from .records import MERGED_IDS, lastmod_property

logger = logging.getLogger(__name__)


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
    return Engine(run, worker, progress).run()


def execute_run_foreground(*, run_id: int, progress: Progress | None = None) -> tuple[SyncRun | None, set[str]]:
    """`execute_run` for a caller that delivers by itself (`manage.py sync`, tests): the engine announces
    nothing. Returns (the finished run or None, the collections whose mirror rows changed)."""
    run, worker = _claim(run_id)
    if run is None:
        return None, set()
    engine = Engine(run, worker, progress, announce=False)
    return engine.run(), engine.changed_collections


def execute_partitions(*, run_id: int, progress: Progress | None = None) -> int:
    """Help the running sync `run_id` with its partitioned reads: claim, read and commit the ranges no worker
    holds (or whose worker stopped beating), with this worker's own fetchers and writer, until none is left.
    The run's own worker coordinates and finishes it. Returns the ranges this helper completed."""
    run = SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.RUNNING).first()
    if run is None:
        return 0
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:helper"
    engine = Engine(run, worker, progress, announce=False)
    engine.helper = True
    works = []
    for sc in SourceCollection.objects.filter(source_id=run.source_id, selected=True):
        read = cursors.from_json(sc.cursor)
        if isinstance(read, cursors.Partitioned) and sc.properties:
            engine.counts[sc.collection] = empty_counts()
            works.append(Work(sc=sc, names=sorted({*sc.properties, MERGED_IDS}), read=read))
    if not works:
        return 0
    engine.client = HubSpotClient(engine.source, meter=engine.meter)
    try:
        engine.run_partitions(works, coordinate=False)
    except RunLost as exc:
        logger.info("sync run %s: helper %s stopped: %s", run_id, worker, exc)
    finally:
        engine.client.close()
    return engine.ranges_done


def _claim(run_id: int) -> tuple[SyncRun | None, str]:
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    run = claim_run(run_id=run_id, worker=worker)
    if run is None:
        logger.info("sync run %s: nothing to do (finished, unknown or owned by a live worker)", run_id)
    return run, worker


class Engine(Partitions):
    """One run: every selected collection in turn, each failing on its own; then the run's outcome."""

    def finish(self, status: str, error: str = "", *, again_soon: bool = False) -> SyncRun:
        now = timezone.now()
        fields = {**self.run_fields(), "requests_in_flight": 0}
        updated = SyncRun.objects.filter(pk=self.run_row.pk, status=SyncRun.Status.RUNNING, worker=self.worker).update(
            status=status, error=error, finished_at=now, heartbeat_at=now, **fields
        )
        if not updated:
            raise RunLost(f"run {self.run_row.pk} is no longer owned by {self.worker}")
        source_fields: dict = {"last_run_id": self.run_row.pk}
        current: Mapping[str, object] = (
            Source.objects.filter(pk=self.source.pk).values("status", "first_synced_at").first() or {}
        )
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
        try:
            self.client = HubSpotClient(self.source, meter=self.meter)
            failed = self.read_collections(collections)
        except (NeedsReconnect, AuthError) as exc:
            return self.finish(SyncRun.Status.FAILED, f"HubSpot refused the credentials: {describe(exc)}")
        except SoftTimeLimitExceeded:
            # Everything up to the last page is committed; the dispatcher picks the source up again at once.
            return self.finish(
                SyncRun.Status.PARTIAL, "time limit reached; the next run continues from the last page", again_soon=True
            )
        except RunLost:
            raise
        except Exception as exc:
            logger.exception("sync run %s failed", self.run_row.pk)
            self.finish(SyncRun.Status.FAILED, describe(exc))
            raise
        if failed == 0:
            status = SyncRun.Status.SUCCEEDED
        elif failed == len(collections):
            status = SyncRun.Status.FAILED
        else:
            status = SyncRun.Status.PARTIAL
        errors = "; ".join(f"{c}: {n['error']}" for c, n in self.counts.items() if n["error"])
        return self.finish(status, errors)

    def read_collections(self, collections: list[SourceCollection]) -> int:
        """Every collection, each failing on its own (a missing scope, a bad request, HubSpot down for it: the run
        becomes partial and the collection keeps its cursor for next time). Returns how many failed."""
        failed = 0
        works: list[Work] = []
        for sc in collections:
            self.counts[sc.collection] = empty_counts()
            try:
                work = self.sync_collection(sc)
            except (NeedsReconnect, AuthError):
                raise
            except HubSpotError as exc:
                failed += 1
                self.collection_failed(sc, exc)
                self.heartbeat()
                continue
            if work is not None:
                works.append(work)
        if not works:
            return failed
        # The partitioned reads of every collection at once, sharing the account's budget.
        self.send_helpers()
        self.run_partitions(works, coordinate=True)
        for work in works:
            if work.failed:
                failed += 1
                continue
            try:
                self.finish_partitioned(work)
                self.after_read(work.sc, full=work.read.check)
            except (NeedsReconnect, AuthError):
                raise
            except HubSpotError as exc:
                failed += 1
                self.collection_failed(work.sc, exc)
                self.heartbeat()
        return failed

    def sync_collection(self, sc: SourceCollection) -> Work | None:
        """Read the collection, or, for a partitioned read, plan (or resume) its ranges and return them: the run
        reads the ranges of every collection together, then `after_read`."""
        start_ms = None
        if self.source.start_date:
            start_ms = _ms(datetime.combine(self.source.start_date, datetime.min.time(), tzinfo=UTC))
        stored = cursors.from_json(sc.cursor)
        estimate: int | None = None
        partition = reread = False
        if isinstance(stored, cursors.Fresh) and start_ms is None:
            names, estimate = self.discover_and_estimate(sc)
            partition = estimate >= settings.HUBSYNC_PARTITION_MIN_RECORDS
        else:
            names = self.discover(sc)
        self.names[sc.collection] = names
        if isinstance(stored, cursors.Idle):
            reread = self.reread_chosen(sc, stored)
        read = cursors.next_read(
            stored,
            now_ms=_ms(timezone.now()),
            start_ms=start_ms,
            overlap_ms=settings.HUBSYNC_SEARCH_OVERLAP_SECONDS * 1000,
            # Only a fresh window of a Full sync asks (the one query is not worth making otherwise).
            ids_pass=isinstance(stored, cursors.Fresh) and start_ms is not None and self._full_sync_of_held_records(sc),
            partition=partition,
            reread=reread,
        )
        self.say(f"{sc.collection}: {len(names)} properties, reading ({read.mode})")
        if isinstance(read, cursors.Partitioned):
            self.prepare_partitions(sc, read, names, estimate)
            return Work(sc=sc, names=names, read=read)
        full = isinstance(read, cursors.ListRead)
        if isinstance(read, cursors.ListRead):
            self.read_list(sc, read, names, estimate=estimate)
        elif isinstance(read, cursors.SearchRead):
            self.read_search(sc, read, names)
        after_read = cursors.from_json(sc.cursor)
        if isinstance(after_read, cursors.IdsPass):
            # The search read of a Full sync ended (now or in the run that was killed): the ids-only pass.
            self.read_ids(sc, after_read)
            full = True
        self.after_read(sc, full=full)
        return None

    def prepare_partitions(
        self, sc: SourceCollection, read: cursors.Partitioned, names: list[str], estimate: int | None
    ) -> None:
        """Plan a new partitioned read, or take up the ranges of one a previous run left (its worker is gone:
        the ranges it held are pending again, and what they counted was that run's)."""
        rows = list(ReadPartition.objects.filter(collection=sc).values_list("status", "estimate", "counts"))
        held = cursors.from_json(sc.cursor)
        if not rows or not isinstance(held, cursors.Partitioned):
            self.plan_partitions(sc, read, names, self.estimate(sc) if estimate is None else estimate)
            rows = list(ReadPartition.objects.filter(collection=sc).values_list("status", "estimate", "counts"))
        else:
            if held.after is not None:
                self.after_checked[sc.pk] = held.after  # what the plan proved of the list's `after` still holds
            ReadPartition.objects.filter(collection=sc).update(counts={})
            ReadPartition.objects.filter(collection=sc, status=ReadPartition.Status.RUNNING).update(
                status=ReadPartition.Status.PENDING, worker=""
            )
            self.say(f"{sc.collection}: resuming a partitioned read ({len(rows)} id ranges)")
        self.total += sum(
            max(0, n - int((counts or {}).get("read") or 0)) for status, n, counts in rows if status != "done"
        )

    def reread_chosen(self, sc: SourceCollection, idle: cursors.Idle) -> bool:
        """For a big collection, whether the incremental window costs more than a partitioned re-read (a bulk
        import or update in HubSpot); the choice and its reason go in the run's notes. One search request."""
        held = RecordCount.objects.filter(source=self.source, collection=sc.collection).values_list("n", flat=True)
        total = held.first() or 0
        if total < settings.HUBSYNC_PARTITION_MIN_RECORDS:
            return False
        lastmod = lastmod_property(sc.collection)
        start = max(0, idle.modified_since_ms - settings.HUBSYNC_SEARCH_OVERLAP_SECONDS * 1000)
        body = {
            "filterGroups": [{"filters": [{"propertyName": lastmod, "operator": "GTE", "value": str(start)}]}],
            "properties": ["hs_object_id"],
            "limit": 1,
        }
        window = int(self.hubspot.search_page(sc.collection, body).get("total") or 0)
        cheaper = cursors.reread_is_cheaper(window_total=window, collection_total=total)
        by_search = window / cursors.SEARCH_RECORDS_PER_S
        by_reread = total / (cursors.LIST_RECORDS_PER_S + cursors.SEARCH_RECORDS_PER_S)
        if cheaper:
            why = (
                f"Re-read all ~{total} records through both budgets (~{by_reread:.0f} s): {window} changed, and "
                f"reading them by search and batch read would take ~{by_search:.0f} s."
            )
        else:
            why = (
                f"Read the {window} changed records by search and batch read (~{by_search:.0f} s), cheaper than "
                f"re-reading all ~{total} (~{by_reread:.0f} s)."
            )
        self.counts[sc.collection]["path"] = "reread" if cheaper else "window"
        self.add_note(sc, why)
        return cheaper

    def after_read(self, sc: SourceCollection, *, full: bool) -> None:
        # Only a full read has seen every live record, so only then may archived rows HubSpot purged be removed.
        self.scan_archived(sc, check_deleted=full)
        c = self.counts[sc.collection]
        if c["new"] or c["updated"] or c["deleted"] or c["archived"] or c.get("merged"):
            self.changed_collections.add(sc.collection)
        if c["deleted"]:
            logger.info(
                "sync run %s: %s: %s records deleted in HubSpot removed from the mirror",
                self.run_row.pk,
                sc.collection,
                c["deleted"],
            )
        self.say(
            f"{sc.collection}: done: {c['read']} read, {c['new']} new, {c['updated']} updated, "
            f"{c['unchanged']} unchanged, {c['archived']} archived, {c['deleted']} deleted"
        )

    def _full_sync_of_held_records(self, sc: SourceCollection) -> bool:
        """Whether this is a Full sync of a collection the mirror holds records of: then, after the window, the
        ids-only pass over the list looks for records deleted in HubSpot (sources.extraction.deletions)."""
        return (
            self.run_row.trigger == SyncRun.Trigger.FULL
            and Record.objects.filter(source_id=self.source.pk, collection=sc.collection).exists()
        )

    def discover_and_estimate(self, sc: SourceCollection) -> tuple[list[str], int]:
        """A first read: the properties (list budget), HubSpot's total with its smallest id (`estimate`) and, when
        the mirror holds none of the collection (a held one is planned from its own ids), its largest id (a
        partitioned read's plan needs both ends), asked at once: one round trip where there were three (a
        collection too small to partition spends the one search for its largest id for nothing)."""
        held = RecordCount.objects.filter(source=self.source, collection=sc.collection, n__gt=0).exists()
        with Counters(self) as early:
            total = early.background(lambda reader: reader.estimate(sc))
            top = None if held else early.background(lambda reader: reader.edge_id(sc, "DESCENDING"))
            names = self.discover(sc)
            estimate = total.result()
            if top is not None:
                with contextlib.suppress(HubSpotError):  # else the plan asks again (and meets the fault there)
                    self.last_ids[sc.pk] = top.result()
        return names, estimate

    def discover(self, sc: SourceCollection) -> list[str]:
        """The property schema is read on every run and stored on SourceCollection.properties; added, removed and
        changed properties are appended to SourceCollection.schema_changes with a timestamp. Every discovered
        property is read, so a new property is picked up by the next run."""
        return sorted({*store_schema(sc, self.hubspot.get_properties(sc.collection)), MERGED_IDS})


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)

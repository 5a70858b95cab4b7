"""What the record debugger costs the extraction engine (`make bench`): the record history written with every
changed page and the functional index on the mirror's email.

The same sandbox portal (20k contacts, rate limits off, sandbox in its own process) is synced twice: once as the
engine was before (no history, no email index), once as it is. Each time: a first sync (inserts: the index's
cost) and an incremental sync after 10k records changed (updates: the history's cost). Prints records/s and
queries per page of each.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bench.test_bench_extract import Meter, report
from hubsync.models import Workspace
from sources import history
from sources.extraction import execute_run
from sources.models import Record, RecordChange, Source, SourceCollection, SyncRun
from sources.runs import create_run
from tests.fixtures_sandbox import HubSpotSandbox, sandbox_process

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

SIZE = 20_000
UPDATES = 10_000


def _email_index(create: bool) -> None:
    with connection.schema_editor() as editor:
        index = next(i for i in Record._meta.indexes if i.name == "record_email")
        (editor.add_index if create else editor.remove_index)(Record, index)


class HistoryClock:
    """Time spent on the history itself during a sync: the SELECT of the old versions, the diff (Python) and the
    INSERT. The machine is shared, so the difference between two whole runs is noisy; this is not."""

    def __init__(self, monkeypatch) -> None:
        self.select = self.diff = self.insert = 0.0
        original = history.changes_for_page

        def timed_diff(**kwargs):
            start = time.perf_counter()
            try:
                return original(**kwargs)
            finally:
                self.diff += time.perf_counter() - start

        monkeypatch.setattr(history, "changes_for_page", timed_diff)

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = time.perf_counter() - start
            if sql.startswith("INSERT INTO sources_recordchange"):
                self.insert += spent
            elif sql.startswith('SELECT "sources_record"."object_id" AS "object_id", "sources_record"."properties"'):
                self.select += spent


def _sync(source: Source, trigger: str, clock: HistoryClock | None = None) -> tuple[SyncRun, Meter]:
    run = create_run(source=source, trigger=trigger)
    with Meter() as meter, connection.execute_wrapper(clock or (lambda execute, *a: execute(*a))):
        finished = execute_run(run_id=run.pk)
    assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED, finished and finished.error
    return finished, meter


def test_bench_history(settings, monkeypatch):
    monkeypatch.setenv("DEBUG", "1")
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    settings.HUBSPOT_API_BASE = ""
    print(f"\nrecord history benchmark ({connection.vendor}); {SIZE:,} contacts, {UPDATES:,} updated")
    with sandbox_process() as base:
        settings.BASE_URL = base
        sandbox = HubSpotSandbox(base)
        sandbox.set_knobs(rate_limits=False, latency_ms=0, error_rate=0, reset_rate=0, search_lag_seconds=0)
        workspace = Workspace.objects.create(name="bench")
        rates: dict[str, tuple[float, float]] = {}
        for label, on in (("before (no history, no email index)", False), ("after (history + email index)", True)):
            settings.HUBSYNC_RECORD_HISTORY_DAYS = 90 if on else 0
            Record.objects.all().delete()
            _email_index(on)
            hub_id = 5100 + int(on)
            sandbox.seed(hub_id, contacts=SIZE, companies=0, deals=0, tickets=0, seed=7)
            tokens = sandbox.token(portal=hub_id)
            source = Source.objects.create(
                workspace=workspace,
                name=label,
                schema_name=f"bench_history_{int(on)}",
                hub_id=hub_id,
                token=tokens["refresh_token"],
                access_token=tokens["access_token"],
                access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
            )
            SourceCollection.objects.create(source=source, collection="contacts")
            print(f"{label}:")
            first, meter = _sync(source, SyncRun.Trigger.FIRST)
            insert_rate = report("first sync", first, meter)
            sandbox.mutate(hub_id, "contacts", update=UPDATES, seed=3)
            clock = HistoryClock(monkeypatch)
            incremental, meter = _sync(source, SyncRun.Trigger.MANUAL, clock)
            assert incremental.counts["contacts"]["updated"] == UPDATES
            update_rate = report("incremental, 10k updated", incremental, meter, page_size=200)
            if on:
                spent = clock.select + clock.diff + clock.insert
                print(
                    f"  history's own cost: {spent:.2f} s of {meter.seconds:.1f} s ({spent / meter.seconds:.0%}): "
                    f"old versions {clock.select:.2f} s, diff {clock.diff:.2f} s, insert {clock.insert:.2f} s "
                    f"= {spent / UPDATES * 1000:.2f} ms per changed record"
                )
            rates[label] = (insert_rate, update_rate)
            history = RecordChange.objects.filter(source=source).count()
            print(f"  history rows written: {history:,}")
            assert history == (UPDATES if on else 0)
        (b_insert, b_update), (a_insert, a_update) = rates.values()
        print(
            f"first sync {b_insert:.0f} -> {a_insert:.0f} records/s ({(a_insert / b_insert - 1) * 100:+.0f}%); "
            f"updates {b_update:.0f} -> {a_update:.0f} records/s ({(a_update / b_update - 1) * 100:+.0f}%)"
        )

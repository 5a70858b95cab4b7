"""Extraction benchmark (`make bench`): a 100k-contact sandbox portal (65 properties, rate limits off) served by
`manage.py sandbox_serve` in its own process, synced by the engine in this process.

Prints, at 10k and at 100k contacts: records/s of a first sync, of a no-change full re-read, and the duration
and API calls of a no-change incremental sync; of a full re-read after 1% of the records were permanently
deleted in HubSpot (spread over the whole id range: every page has candidates to confirm); queries per page;
peak RSS of this process during each run.
Aim: first sync >= 3,500 records/s; no-change incremental in a handful of requests; peak RSS flat 10k -> 100k.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psutil
import pytest
from django.db import connection
from django.utils import timezone

from hubsync.models import Workspace
from sandbox.hubspot.data import id_for_index
from sources.extraction import execute_run
from sources.models import Record, Source, SourceCollection, SyncRun
from sources.runs import create_run
from tests.fixtures_sandbox import HubSpotSandbox, sandbox_process

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]


class Meter:
    """Peak RSS (sampled every 20 ms) and database queries of this thread's connection during a block."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self.queries = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def _count(self, execute, sql, params, many, context):
        self.queries += 1
        return execute(sql, params, many, context)

    def __enter__(self) -> Meter:
        self.start = time.perf_counter()
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._wrapper = connection.execute_wrapper(self._count)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._wrapper.__exit__(*exc)
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()


def run_sync(source: Source, trigger: str) -> tuple[SyncRun, Meter]:
    run = create_run(source=source, trigger=trigger)
    with Meter() as meter:
        finished = execute_run(run_id=run.pk)
    assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED, finished and finished.error
    return finished, meter


def report(label: str, run: SyncRun, meter: Meter, page_size: int = 100) -> float:
    read = run.counts["contacts"]["read"]
    pages = max(1, -(-read // page_size))
    rate = read / meter.seconds if meter.seconds else 0
    print(
        f"  {label:<28} {read:>7} records in {meter.seconds:6.1f} s = {rate:7.0f} records/s | "
        f"{run.api_calls:>5} API calls | {meter.queries / pages:5.1f} queries/page | "
        f"peak RSS {meter.peak / 2**20:6.1f} MiB"
    )
    return rate


def test_bench_extract(settings, monkeypatch):
    monkeypatch.setenv("DEBUG", "1")  # the sandbox process uses the embedded defaults (same local secrets)
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    settings.HUBSPOT_API_BASE = ""
    print(f"\nextraction benchmark ({connection.vendor}); sandbox in its own process, limits off")
    with sandbox_process() as base:
        settings.BASE_URL = base
        sandbox = HubSpotSandbox(base)
        sandbox.set_knobs(rate_limits=False, latency_ms=0, error_rate=0, reset_rate=0, search_lag_seconds=0)
        workspace = Workspace.objects.create(name="bench")
        rates = {}
        peaks = {}
        for size in (10_000, 100_000):
            hub_id = 4000 + size // 1000
            sandbox.seed(hub_id, contacts=size, companies=0, deals=0, tickets=0)
            tokens = sandbox.token(portal=hub_id)
            source = Source.objects.create(
                workspace=workspace,
                name=f"bench {size}",
                schema_name=f"bench_{size}",
                hub_id=hub_id,
                token=tokens["refresh_token"],
                access_token=tokens["access_token"],
                access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
            )
            SourceCollection.objects.create(source=source, collection="contacts")
            print(f"portal of {size:,} contacts:")
            first, meter = run_sync(source, SyncRun.Trigger.FIRST)
            assert Record.objects.filter(source=source).count() == size
            rates[size] = report("first sync", first, meter)
            peaks[size] = meter.peak
            quiet, meter = run_sync(source, SyncRun.Trigger.MANUAL)
            print(
                f"  {'no-change incremental':<28} {quiet.counts['contacts']['read']:>7} records in "
                f"{meter.seconds:6.2f} s | {quiet.api_calls:>5} API calls | {meter.queries} queries"
            )
            assert quiet.api_calls <= 6
            again, meter = run_sync(source, SyncRun.Trigger.FULL)
            assert again.counts["contacts"]["unchanged"] == size
            report("no-change full re-read", again, meter)
            # 1%, one per page (computed from the generator's ids: loading 100k mirror ids here would inflate
            # this process's RSS before the measured run).
            doomed = [id_for_index(i) for i in range(0, size, 100)]
            sandbox.purge(doomed, portal=hub_id)
            purged, meter = run_sync(source, SyncRun.Trigger.FULL)
            assert purged.counts["contacts"]["deleted"] == len(doomed)
            report("full re-read, 1% deleted", purged, meter)
        growth = (peaks[100_000] - peaks[10_000]) / 2**20
        print(f"peak RSS 10k -> 100k: {peaks[10_000] / 2**20:.1f} -> {peaks[100_000] / 2**20:.1f} MiB ({growth:+.1f})")
        # Memory does not grow with data (invariant 8): ten times the records, (almost) the same peak.
        assert growth < 40

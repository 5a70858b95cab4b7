"""The whole pipeline end to end (`make bench`): a 100k-contact HubSpot sandbox portal (65 properties, rate limits
off) → the extraction engine → the mirror → the delivery engine → the Segment sandbox, both sandboxes served by
`manage.py sandbox_serve` in their own process; the engine and the deliveries run in this process, as
`manage.py sync` runs them.

Prints, for a first sync and for a no-change sync: extraction records/s and API calls, delivery messages/s,
requests and batches, and the peak RSS of this process during each half.
Aims: delivery >= 10,000 messages/s on the first run; the no-change run sends nothing and finishes in seconds.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import timedelta

import psutil
import pytest
from django.db import connection
from django.utils import timezone

from hubsync.models import Workspace
from mappings.delivery import deliver_collections, sync_in_foreground
from mappings.segment import close_session
from sandbox.segment.models import SegmentWorkspace
from sources.models import Record, Source, SourceCollection, SyncRun
from sources.runs import create_run
from tests.fixtures_sandbox import HubSpotSandbox, sandbox_process
from tests.fixtures_segment import SegmentSandbox
from tests.mappings.reconcile_helpers import make_mapping

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

CONTACTS = int(os.environ.get("BENCH_PIPELINE_CONTACTS", "100000"))
HUB_ID = 4600


class Meter:
    """Wall time and peak RSS (sampled every 20 ms) of this process (or of process `pid`) during a block."""

    def __init__(self, pid: int | None = None) -> None:
        self.proc = psutil.Process(pid)
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            self._stop.wait(0.02)

    def __enter__(self) -> Meter:
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.NoSuchProcess):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def one_sync(source: Source, trigger: str, label: str) -> tuple[SyncRun, list]:
    run = create_run(source=source, trigger=trigger)
    with Meter() as m_extract:
        finished, changed = sync_in_foreground(run_id=run.pk)
    assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED, finished and finished.error
    read = finished.counts["contacts"]["read"]
    changes = finished.counts["contacts"]["new"] + finished.counts["contacts"]["updated"]
    print(
        f"  {label:<10} extract  {read:>7,} read, {changes:>7,} changed in {m_extract.seconds:7.2f} s = "
        f"{read / m_extract.seconds if m_extract.seconds else 0:>7,.0f} records/s | {finished.api_calls:>5} API calls"
        f" | peak RSS {m_extract.peak / 2**20:6.1f} MiB"
    )
    with Meter() as m_deliver:
        deliveries = [d for _, d in deliver_collections(source=source, collections=changed, sync_run_id=finished.pk)]
    sent = sum(d.sent for d in deliveries)
    print(
        f"  {label:<10} deliver  {sum(d.considered for d in deliveries):>7,} considered, {sent:>7,} sent in "
        f"{m_deliver.seconds:7.2f} s = {sent / m_deliver.seconds if m_deliver.seconds else 0:>7,.0f} msg/s | "
        f"{sum(d.requests for d in deliveries):>5} requests, {sum(d.batches for d in deliveries)} batches, "
        f"{sum(d.rejected for d in deliveries)} rejected | peak RSS {m_deliver.peak / 2**20:6.1f} MiB "
        f"(+{(m_deliver.peak - m_deliver.start_rss) / 2**20:.1f})"
    )
    return finished, deliveries


def test_bench_pipeline(settings, monkeypatch):
    monkeypatch.setenv("DEBUG", "1")  # the sandbox process uses the embedded defaults (same local secrets)
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    settings.HUBSPOT_API_BASE = ""
    print(f"\npipeline benchmark ({connection.vendor}, {CONTACTS:,} contacts); both sandboxes in their own process")
    with sandbox_process() as base:
        settings.BASE_URL = base
        hub = HubSpotSandbox(base)
        hub.set_knobs(rate_limits=False, latency_ms=0, error_rate=0, reset_rate=0, search_lag_seconds=0)
        started = time.perf_counter()
        hub.seed(HUB_ID, contacts=CONTACTS, companies=0, deals=0, tickets=0)
        print(f"  portal seeded in {time.perf_counter() - started:.1f} s")
        space_key = SegmentWorkspace.objects.create(name="bench").write_key
        segment = SegmentSandbox(base + "/sandbox/segment", write_key=space_key)
        tokens = hub.token(portal=HUB_ID)
        source = Source.objects.create(
            workspace=Workspace.objects.create(name="bench"), name="bench", schema_name="bench", hub_id=HUB_ID,
            token=tokens["refresh_token"], access_token=tokens["access_token"],
            access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
        )  # fmt: skip
        SourceCollection.objects.create(source=source, collection="contacts")
        make_mapping(source, segment.write_key)
        try:
            first, deliveries = one_sync(source, SyncRun.Trigger.FIRST, "first")
            assert Record.objects.filter(source=source).count() == CONTACTS
            (delivery,) = deliveries
            assert delivery.status == "succeeded" and delivery.sent + delivery.rejected == CONTACTS
            assert segment.counts()["received"] == delivery.sent

            quiet, deliveries = one_sync(source, SyncRun.Trigger.MANUAL, "no-change")
            assert all(d.sent == 0 and d.requests == 0 for d in deliveries)
            assert segment.counts()["received"] == delivery.sent
        finally:
            close_session()
            segment.session.close()

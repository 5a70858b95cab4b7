"""The whole pipeline under a real `celery -A hubsync worker -Q extract,deliver,alerts`: a queued sync is extracted, its
deliveries follow on their own, and the Segment sandbox ends up with exactly what the mapping defines; the beat
tick (`hubsync.dispatch`) starts due syncs; a worker SIGKILLed in the middle of a delivery loses nothing.

Both sandboxes are served by live_server in this process; the worker reaches them through HUBSYNC_BASE_URL
and shares the test database and broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from hubsync.celery import app as celery_app
from mappings.models import DeliveryRun, DeliveryState
from sources import extraction as extract
from sources.models import Source, SyncRun
from sources.runs import create_run
from sources.tasks import enqueue_sync
from tests.fixtures_sandbox import sandbox_env
from tests.mappings.conftest import profiles_by_user as profiles
from tests.mappings.reconcile_helpers import PORTAL, Oracle, inbox_total, setup_pipeline

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def start_worker(base_url: str, log: Path, **env_extra: str) -> subprocess.Popen:
    env = sandbox_env()
    env.update(
        DEBUG="1",  # the embedded defaults (local secrets under var/); the test process runs with DEBUG off
        HUBSYNC_BASE_URL=base_url,
        HUBSPOT_API_BASE="",
        HUBSPOT_RATE_LIMIT="0",
        HUBSPOT_SEARCH_RATE_LIMIT="0",
        SEGMENT_BACKOFF_BASE="0.01",
        SEGMENT_BACKOFF_CAP="0.1",
        HUBSYNC_ENCRYPTION_KEYS=",".join(settings.HUBSYNC_ENCRYPTION_KEYS),
        **env_extra,
    )
    name = f"pipeline-{uuid.uuid4().hex[:6]}@%h"
    cmd = [
        sys.executable, "-m", "celery", "-A", "hubsync", "worker", "-Q", "extract,deliver,alerts", "--pool", "solo",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", name, "--loglevel", "INFO",
    ]  # fmt: skip
    # A session of its own: a SIGKILL hits the worker and nothing else.
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, timeout: float, what: str, log: Path, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-5000:]}")


def finished_deliveries(mapping) -> list[DeliveryRun]:
    return list(DeliveryRun.objects.filter(mapping=mapping).exclude(status="running").order_by("pk"))


def test_queued_sync_is_extracted_and_delivered_by_a_real_worker(workspace, hub, segment, tmp_path):
    celery_app.control.purge()  # no leftovers from earlier runs on this broker
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=300)
    Source.objects.filter(pk=source.pk).update(enabled=True)
    oracle = Oracle(hub, PORTAL)
    log = tmp_path / "worker.log"
    worker = start_worker(hub.server_url, log)
    try:
        # 1. A queued first sync: extraction, then the delivery it triggers, all in the worker.
        run = enqueue_sync(source=source, trigger=SyncRun.Trigger.FIRST)
        first = wait_for(lambda: finished_deliveries(mapping), 120, "the first delivery", log)[0]
        run.refresh_from_db()
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert first.status == DeliveryRun.Status.SUCCEEDED, first.error
        assert first.sync_run_id == run.pk
        expected = oracle.after_sync()
        assert first.sent == len(expected) and first.sent + first.rejected == 300
        assert profiles(segment) == expected

        # 2. HubSpot changes; the beat tick finds the source due and the worker syncs and delivers again.
        hub.mutate(PORTAL, "contacts", create=7, update=30, archive=5, seed=4)
        Source.objects.filter(pk=source.pk).update(next_sync_at=timezone.now() - timedelta(seconds=1))
        celery_app.send_task("hubsync.dispatch")
        second = wait_for(lambda: finished_deliveries(mapping)[1:], 120, "the second delivery", log)[0]
        assert second.status == DeliveryRun.Status.SUCCEEDED, second.error
        scheduled = SyncRun.objects.get(pk=second.sync_run_id)
        assert scheduled.trigger == SyncRun.Trigger.SCHEDULED and scheduled.status == SyncRun.Status.SUCCEEDED
        assert profiles(segment) == oracle.after_sync()

        # 3. No change: the sync runs, no delivery starts, nothing reaches Segment.
        before = inbox_total(segment)
        Source.objects.filter(pk=source.pk).update(next_sync_at=timezone.now() - timedelta(seconds=1))
        celery_app.send_task("hubsync.dispatch")

        def quiet_run():
            return SyncRun.objects.filter(source=source, pk__gt=scheduled.pk).exclude(status__in=SyncRun.ACTIVE)

        quiet = wait_for(quiet_run, 120, "the no-change sync", log).get()
        assert quiet.status == SyncRun.Status.SUCCEEDED, quiet.error
        time.sleep(1.0)  # a delivery, had one been queued, would have started by now
        assert len(finished_deliveries(mapping)) == 2
        assert not DeliveryRun.objects.filter(mapping=mapping, status="running").exists()
        assert inbox_total(segment) == before
    finally:
        stop(worker)
        celery_app.control.purge()


def test_worker_killed_mid_delivery_loses_nothing_and_resends_deduplicated(workspace, hub, segment, tmp_path):
    celery_app.control.purge()
    records = 3000
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=records)
    Source.objects.filter(pk=source.pk).update(enabled=True)
    oracle = Oracle(hub, PORTAL)
    # Extract in this process (fast); only the delivery runs in the worker we are going to kill.
    finished, changed = extract.execute_run_foreground(
        run_id=create_run(source=source, trigger=SyncRun.Trigger.FIRST).pk
    )
    assert finished.status == SyncRun.Status.SUCCEEDED and changed == {"contacts"}
    expected = oracle.after_sync()

    segment.set_knobs(latency_ms=400)  # every batch takes a while: time to kill the worker between batches
    log = tmp_path / "worker.log"
    slow = {"DELIVERY_MAX_IN_FLIGHT": "1", "DELIVERY_CHUNK_SIZE": "200", "DELIVERY_STALE_SECONDS": "2"}
    first_worker = start_worker(hub.server_url, log, **slow)
    second_worker = None
    try:
        from mappings.tasks import deliver_mapping

        deliver_mapping.delay(mapping.pk, finished.pk)
        wait_for(lambda: segment.counts()["received"] > 0, 120, "Segment to accept a first batch", log, every=0.05)
        os.killpg(first_worker.pid, signal.SIGKILL)
        first_worker.wait(timeout=10)

        lost = DeliveryRun.objects.get(mapping=mapping)
        assert lost.status == DeliveryRun.Status.RUNNING  # nobody cleaned up: the worker died
        accepted_before = segment.counts()["received"]
        assert 0 < accepted_before < len(expected)
        recorded = DeliveryState.objects.filter(mapping=mapping, status="delivered").count()
        assert recorded <= accepted_before  # never recorded as delivered what Segment did not accept

        # The next run: a sync with no HubSpot change still starts the delivery that is behind. It takes the
        # dead delivery over once its heartbeat is stale.
        time.sleep(2.5)
        segment.set_knobs(latency_ms=0)
        second_worker = start_worker(hub.server_url, log, **slow)
        assert enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL) is not None

        def resumed():
            return DeliveryRun.objects.filter(mapping=mapping, pk__gt=lost.pk).exclude(status="running").first()

        run = wait_for(resumed, 120, "the resumed delivery", log)
        assert run.status == DeliveryRun.Status.SUCCEEDED, run.error
        lost.refresh_from_db()
        assert lost.status == DeliveryRun.Status.FAILED and "Lost" in lost.error

        assert profiles(segment) == expected
        counts = segment.counts()
        assert counts["received"] == len(expected)  # each message accepted once...
        # ...and anything resent that Segment already had was dropped by messageId.
        assert set(counts["discards_by_reason"]) <= {"duplicate_message_id"}
        assert DeliveryState.objects.filter(mapping=mapping, status="delivered").count() == len(expected)

        # Nothing is behind any more: the next sync sends nothing.
        before = inbox_total(segment)
        again = enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL)

        def done():
            again.refresh_from_db()
            return again.status not in SyncRun.ACTIVE

        wait_for(done, 60, "the last sync", log)
        time.sleep(1.0)
        assert DeliveryRun.objects.filter(mapping=mapping).count() == 2
        assert inbox_total(segment) == before
    finally:
        stop(first_worker)
        if second_worker is not None:
            stop(second_worker)
        segment.set_knobs(latency_ms=0)
        celery_app.control.purge()

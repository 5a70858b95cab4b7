"""One run per source at a time (decided by the database), stale-run takeover, full-sync cursor reset."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from sources.extraction import claim_run
from sources.models import Source, SourceCollection, SyncRun
from sources.runs import create_run
from sources.tasks import enqueue_sync
from tests.factories import SourceCollectionFactory, SourceFactory


@pytest.fixture
def queued(monkeypatch):
    """The broker boundary: record the run ids handed to Celery instead of publishing them."""
    sent: list[int] = []
    from sources import tasks

    monkeypatch.setattr(tasks.run_sync, "delay_on_commit", lambda run_id: sent.append(run_id))
    return sent


@pytest.fixture
def source(workspace) -> Source:
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot", hub_id=42)
    SourceCollectionFactory(source=source, collection="contacts", cursor={"mode": "idle", "modified_since_ms": 1})
    return source


def test_second_enqueue_while_active_returns_none(source, queued):
    first = enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL)
    assert first is not None and first.status == SyncRun.Status.QUEUED
    assert enqueue_sync(source=source, trigger=SyncRun.Trigger.SCHEDULED) is None
    assert queued == [first.pk]
    first.status = SyncRun.Status.SUCCEEDED
    first.save()
    assert enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL) is not None


@pytest.mark.django_db(transaction=True)
def test_concurrent_enqueues_make_one_run(workspace, queued):
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot", hub_id=42)
    barrier = threading.Barrier(4)
    results: list = []

    def enqueue() -> None:
        try:
            barrier.wait()
            results.append(enqueue_sync(source=Source.objects.get(pk=source.pk), trigger=SyncRun.Trigger.MANUAL))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r is not None]) == 1
    assert SyncRun.objects.filter(source=source).count() == 1
    assert len(queued) == 1


def test_run_with_dead_worker_is_taken_over(source, queued, settings):
    settings.HUBSYNC_RUN_STALE_SECONDS = 120
    old = enqueue_sync(source=source, trigger=SyncRun.Trigger.SCHEDULED)
    SyncRun.objects.filter(pk=old.pk).update(
        status=SyncRun.Status.RUNNING, worker="gone:1:x", heartbeat_at=timezone.now() - timedelta(seconds=60)
    )
    assert enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL) is None  # alive: heartbeat 60 s old
    SyncRun.objects.filter(pk=old.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=300))
    new = enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL)
    assert new is not None
    old.refresh_from_db()
    assert old.status == SyncRun.Status.FAILED and "worker lost" in old.error and old.finished_at
    source.refresh_from_db()
    assert source.last_run_id == old.pk
    # The cursor is kept: the new run resumes from the last committed page.
    assert SourceCollection.objects.get(source=source).cursor == {"mode": "idle", "modified_since_ms": 1}


def test_lost_queued_run_is_replaced(source, queued, settings):
    old = enqueue_sync(source=source, trigger=SyncRun.Trigger.SCHEDULED)
    assert enqueue_sync(source=source, trigger=SyncRun.Trigger.SCHEDULED) is None
    SyncRun.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.HUBSYNC_RUN_QUEUED_STALE_SECONDS + 5)
    )
    assert enqueue_sync(source=source, trigger=SyncRun.Trigger.SCHEDULED) is not None
    old.refresh_from_db()
    assert old.status == SyncRun.Status.FAILED


def test_redelivered_task_of_dead_worker_continues_in_a_new_run(source, queued):
    old = create_run(source=source, trigger=SyncRun.Trigger.MANUAL)
    assert claim_run(run_id=old.pk, worker="a") is not None
    assert claim_run(run_id=old.pk, worker="b") is None  # alive in worker a
    SyncRun.objects.filter(pk=old.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    new = claim_run(run_id=old.pk, worker="b")
    assert new is not None and new.pk != old.pk
    assert new.status == SyncRun.Status.RUNNING and new.worker == "b" and new.trigger == SyncRun.Trigger.MANUAL
    old.refresh_from_db()
    assert old.status == SyncRun.Status.FAILED
    assert claim_run(run_id=old.pk, worker="c") is None


def test_redelivered_full_sync_of_a_dead_worker_resumes_instead_of_restarting(source, queued):
    old = create_run(source=source, trigger=SyncRun.Trigger.FULL)
    assert claim_run(run_id=old.pk, worker="a") is not None
    progress = {"mode": "list", "after": "4200", "started_ms": 1}
    SourceCollection.objects.filter(source=source).update(cursor=progress)
    SyncRun.objects.filter(pk=old.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    new = claim_run(run_id=old.pk, worker="b")
    assert new.trigger == SyncRun.Trigger.FULL
    assert SourceCollection.objects.get(source=source).cursor == progress


def test_full_sync_resets_cursors_when_the_run_is_created(source, queued):
    run = enqueue_sync(source=source, trigger=SyncRun.Trigger.FULL)
    assert run.trigger == SyncRun.Trigger.FULL
    assert SourceCollection.objects.get(source=source).cursor == {}


def test_full_sync_refused_while_a_run_is_active_keeps_cursors(source, queued):
    enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL)
    assert enqueue_sync(source=source, trigger=SyncRun.Trigger.FULL) is None
    assert SourceCollection.objects.get(source=source).cursor == {"mode": "idle", "modified_since_ms": 1}

"""The beat dispatcher enqueues exactly the due, enabled, connected sources."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sources.dispatch import dispatch_due_syncs
from sources.models import Source, SyncRun
from tests.factories import SourceFactory, SyncRunFactory


@pytest.fixture
def queued(monkeypatch):
    sent: list[int] = []
    from sources import tasks

    monkeypatch.setattr(tasks.run_sync, "delay_on_commit", lambda run_id: sent.append(run_id))
    return sent


def make(workspace, name, **fields) -> Source:
    return SourceFactory(workspace=workspace, name=name, schema_name=name, **fields)


def test_dispatch_enqueues_due_sources_only(workspace, queued):
    now = timezone.now()
    due = make(workspace, "due", enabled=True, next_sync_at=now - timedelta(minutes=1), first_synced_at=now)
    never = make(workspace, "never", enabled=True)
    make(workspace, "later", enabled=True, next_sync_at=now + timedelta(hours=1))
    make(workspace, "disabled", enabled=False, next_sync_at=now - timedelta(hours=1))
    make(workspace, "revoked", enabled=True, status=Source.Status.NEEDS_RECONNECT, next_sync_at=now)

    assert dispatch_due_syncs() == 2
    runs = {run.source.name: run.trigger for run in SyncRun.objects.select_related("source")}
    assert runs == {"due": SyncRun.Trigger.SCHEDULED, "never": SyncRun.Trigger.FIRST}
    assert len(queued) == 2
    # Next tick: both still have an active run, nothing new is queued.
    assert dispatch_due_syncs() == 0
    assert SyncRun.objects.filter(source__in=[due, never]).count() == 2


def test_dispatch_takes_over_a_run_whose_worker_died(workspace, queued, settings):
    now = timezone.now()
    source = make(workspace, "due", enabled=True, next_sync_at=now - timedelta(minutes=1), first_synced_at=now)
    dead = SyncRunFactory(
        source=source,
        trigger=SyncRun.Trigger.SCHEDULED,
        status=SyncRun.Status.RUNNING,
        heartbeat_at=now - timedelta(seconds=settings.HUBSYNC_RUN_STALE_SECONDS + 30),
    )
    assert dispatch_due_syncs() == 1
    dead.refresh_from_db()
    assert dead.status == SyncRun.Status.FAILED
    assert SyncRun.objects.filter(source=source, status=SyncRun.Status.QUEUED).count() == 1

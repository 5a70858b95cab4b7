"""A real Celery worker is SIGKILLed in the middle of a sync; the next run completes with nothing lost.

The sandbox runs in this test process (live_server); the worker is a separate `celery -A hubsync worker -Q extract`
process pointed at the same test database and broker, reaching the sandbox through HUBSYNC_BASE_URL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from hubsync.celery import app as celery_app
from sources.models import Record, SourceCollection, SyncRun
from sources.tasks import enqueue_sync
from tests.fixtures_sandbox import sandbox_env
from tests.sources.extract_helpers import PORTAL, assert_mirror_equals_sandbox, make_source

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 3000

pytestmark = pytest.mark.integration


def start_worker(base_url: str, log: Path) -> subprocess.Popen:
    env = sandbox_env()
    env.update(
        DEBUG="1",  # the embedded defaults (local secrets under var/); the test process runs with DEBUG off
        HUBSYNC_BASE_URL=base_url,
        HUBSPOT_API_BASE="",
        HUBSPOT_RATE_LIMIT="0",
        HUBSPOT_SEARCH_RATE_LIMIT="0",
        HUBSYNC_ENCRYPTION_KEYS=",".join(settings.HUBSYNC_ENCRYPTION_KEYS),
    )
    name = f"killtest-{uuid.uuid4().hex[:6]}@%h"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "hubsync",
        "worker",
        "-Q",
        "extract",
        "--pool",
        "solo",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        name,
        "--loglevel",
        "INFO",
    ]
    # A session of its own: the SIGKILL hits the worker and nothing else.
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sigkilled_worker_loses_nothing(workspace, sandbox, settings, tmp_path):
    celery_app.control.purge()  # no leftovers from earlier runs on this broker
    sandbox.seed(PORTAL, contacts=RECORDS, companies=0, deals=0, tickets=0)
    sandbox.set_knobs(latency_ms=120)  # a page every ~150 ms: time to kill it mid-run
    source = make_source(workspace, sandbox)
    log = tmp_path / "worker.log"

    first_worker = start_worker(sandbox.server_url, log)
    second_worker = None
    try:
        run = enqueue_sync(source=source, trigger=SyncRun.Trigger.FIRST)
        assert run is not None
        wait_for(lambda: Record.objects.filter(source=source).count() >= 800, 90, "the first pages", log)
        os.killpg(first_worker.pid, signal.SIGKILL)
        first_worker.wait(timeout=10)

        committed = Record.objects.filter(source=source).count()
        assert 800 <= committed < RECORDS
        assert committed % 100 == 0  # a page is committed whole or not at all
        cursor = SourceCollection.objects.get(source=source).cursor
        assert cursor["mode"] == "list" and cursor["after"]
        run.refresh_from_db()
        assert run.status == SyncRun.Status.RUNNING  # nobody cleaned up: the worker died

        # The run's heartbeat stops; after the stale timeout the next enqueue takes the slot over.
        settings.HUBSYNC_RUN_STALE_SECONDS = 2
        assert enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL) is None  # heartbeat still fresh
        time.sleep(2.5)
        second_worker = start_worker(sandbox.server_url, log)
        resumed = enqueue_sync(source=source, trigger=SyncRun.Trigger.MANUAL)
        assert resumed is not None
        run.refresh_from_db()
        assert run.status == SyncRun.Status.FAILED and "worker lost" in run.error

        def finished():
            resumed.refresh_from_db()
            return resumed.status not in SyncRun.ACTIVE

        wait_for(finished, 120, "the resumed run", log)
        assert resumed.status == SyncRun.Status.SUCCEEDED, (resumed.error, log.read_text()[-3000:])
        # Resumed at the last committed page, not from the start.
        assert resumed.counts["contacts"]["new"] == RECORDS - committed
        sandbox.set_knobs(latency_ms=0)
        assert_mirror_equals_sandbox(source, sandbox)
    finally:
        stop(first_worker)
        if second_worker is not None:
            stop(second_worker)
        celery_app.control.purge()

"""Live updates end to end (`make bench`): a HubSpot change -> the sandbox's signed webhook -> the receiver -> a real
Celery worker's targeted read -> the mirror -> the delivery -> Segment accepted.

Both sandboxes and the receiver run in this test's live server; two real `celery worker` processes (solo pool,
queues extract, deliver, alerts) apply the events and deliver. Prints:

1. the receiver's absorption: 10,000 signed events POSTed by 8 threads, 100 per request (what HubSpot does after
   an outage), events/s, against a bare INSERT of the same rows in the same database (the physical limit);
2. single changes: BENCH_LIVE_SINGLES edits one at a time, HubSpot change -> Segment accepted, p50 / p95 / max
   (aim: p95 < 5 s with the default 2-s coalescing window);
3. a burst: 10,000 records edited in one commit, whose 10,000 property-change events reach the receiver at once:
   p50 / p95 / max of change -> Segment accepted per record, and the records/s applied against HubSpot's
   batch-read budget (110 requests / 10 s x 100 ids).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests
from django.db import connection, transaction

from hubsync.celery import app as celery_app
from hubsync.models import Workspace
from sandbox.hubspot import webhooks
from sandbox.segment.models import SegmentMessage
from sources.models import LiveEvent, Record, Source
from tests.fixtures_sandbox import hubspot_sandbox  # noqa: F401 (fixtures: bench/ has no tests/conftest.py)
from tests.fixtures_segment import segment_sandbox  # noqa: F401
from tests.mappings.reconcile_helpers import PORTAL, setup_pipeline, sync_and_deliver
from tests.mappings.test_pipeline_worker import start_worker, stop, wait_for
from tests.sources.live_helpers import PATH, event, signed_headers

pytestmark = [pytest.mark.bench, pytest.mark.django_db(transaction=True)]

CONTACTS = int(os.environ.get("BENCH_LIVE_CONTACTS", "12000"))
SINGLES = int(os.environ.get("BENCH_LIVE_SINGLES", "20"))
BURST = int(os.environ.get("BENCH_LIVE_BURST", "10000"))  # one property-change event per record


@pytest.fixture
def hub(hubspot_sandbox, segment_sandbox, settings):  # noqa: F811
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    hubspot_sandbox.set_knobs(rate_limits=False)
    return hubspot_sandbox


def pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def figures(label: str, lags: list[float]) -> str:
    return (
        f"{label}: n={len(lags)} p50 {statistics.median(lags):.2f} s, p95 {pct(lags, 0.95):.2f} s, "
        f"max {max(lags):.2f} s"
    )


def absorb(base_url: str, source: Source) -> float:
    """10,000 signed events, 100 per request, 8 threads; returns events/s."""
    ids = list(Record.objects.filter(source=source).values_list("object_id", flat=True)[:100])
    bodies = [json.dumps([event(PORTAL, ids[i % len(ids)]) for i in range(100)]).encode() for _request in range(100)]
    url = base_url + PATH
    todo = list(bodies)
    lock = threading.Lock()
    failures: list[int] = []

    def post_all() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not todo:
                    return
                body = todo.pop()
            response = session.post(url, data=body, headers=signed_headers(body, url=url), timeout=60)
            if response.status_code != 200:
                failures.append(response.status_code)

    threads = [threading.Thread(target=post_all) for _ in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    assert not failures, failures[:5]
    assert LiveEvent.objects.filter(source=source).count() == 10_000
    return 10_000 / seconds


def bare_insert_rate(source: Source) -> float:
    """The same 10,000 rows by plain multi-row INSERTs of 100 (no HTTP, no signature, no routing)."""
    rows = [(source.pk, 10**12 + i, "contacts", 1, "change", "[]", "pending") for i in range(10_000)]
    started = time.perf_counter()
    with connection.cursor() as cur:
        for start in range(0, len(rows), 100):
            chunk = rows[start : start + 100]
            cur.execute(
                "INSERT INTO sources_liveevent (source_id, event_id, collection, object_id, kind, related, state, "
                "occurred_at, received_at, attempt) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s, %s::jsonb, %s, now(), now(), 0)"] * len(chunk)),
                [v for row in chunk for v in row],
            )
    return 10_000 / (time.perf_counter() - started)


def accepted_at(marker: str, timeout: float = 120) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = SegmentMessage.objects.filter(payload__contains=marker).order_by("received_at").first()
        if found is not None:
            return found.received_at
        time.sleep(0.02)
    raise AssertionError(f"{marker} never reached Segment")


@pytest.mark.timeout(1800)
def test_live_latency_and_absorption(hub, segment_sandbox, tmp_path):  # noqa: F811
    workspace = Workspace.objects.create(name="Live bench")
    segment = segment_sandbox.with_workspace("Live bench")
    celery_app.control.purge()
    source, _mapping = setup_pipeline(workspace, hub, segment, contacts=CONTACTS)
    sync_and_deliver(source)
    Source.objects.filter(pk=source.pk).update(enabled=True)

    print()
    rate = absorb(hub.server_url, source)
    LiveEvent.objects.filter(source=source).delete()
    limit = bare_insert_rate(source)
    LiveEvent.objects.filter(source=source).delete()
    print(
        f"receiver: {rate:,.0f} events/s absorbed (8 senders, 100 per request) = {rate / limit:.0%} of a bare "
        f"multi-row INSERT of the same rows ({limit:,.0f} rows/s)"
    )

    webhooks.configure(hub.portal(PORTAL), {"target_url": hub.server_url + "/hooks/hubspot/"})
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker(hub.server_url, log) for log in logs]
    try:
        time.sleep(3)  # the workers connect
        ids = [
            oid
            for oid, props in Record.objects.filter(source=source, archived=False).values_list(
                "object_id", "properties"
            )
            if props.get("email")
        ]
        lags = []
        for n in range(SINGLES):
            marker = f"Live{uuid.uuid4().hex[:10]}"
            t0 = datetime.now(UTC)
            hub.set_properties(ids[n], {"firstname": marker}, portal=PORTAL)
            lags.append((accepted_at(marker) - t0).total_seconds())
            time.sleep(0.3)
        print(figures("single changes, HubSpot change -> Segment accepted", lags))

        burst_ids = ids[SINGLES : SINGLES + BURST]
        started = time.perf_counter()
        with transaction.atomic():  # one commit: every event is due at once (HubSpot after an outage)
            for oid in burst_ids:
                hub.set_properties(oid, {"firstname": f"Burst{uuid.uuid4().hex[:8]}"}, portal=PORTAL)
        t0 = datetime.now(UTC)
        print(f"burst: {len(burst_ids):,} records edited in one commit ({time.perf_counter() - started:.1f} s)")
        emails = dict(
            Record.objects.filter(source=source, object_id__in=burst_ids).values_list("object_id", "properties")
        )
        wanted = {(emails[i] or {}).get("email", "").strip() for i in burst_ids} - {""}

        def all_accepted() -> bool:
            got = SegmentMessage.objects.filter(received_at__gte=t0, user_id__in=wanted).values("user_id").distinct()
            return got.count() >= len(wanted)

        phases: dict[str, float] = {}

        def progress() -> bool:
            # Where the time goes: all events stored by the receiver, all applied to the mirror, all accepted.
            since = time.perf_counter() - started_wait
            burst_events = LiveEvent.objects.filter(source=source, object_id__in=burst_ids)
            if "stored" not in phases and burst_events.count() >= len(burst_ids):
                phases["stored"] = since
            pending = burst_events.exclude(state=LiveEvent.State.APPLIED)
            if "stored" in phases and "applied" not in phases and not pending.exists():
                phases["applied"] = since
            return all_accepted()

        started_wait = time.perf_counter()
        wait_for(progress, 600, "the burst to reach Segment", logs[0], every=0.5)
        phases["accepted"] = time.perf_counter() - started_wait
        print("burst phases after the commit: " + ", ".join(f"all {k} at {v:.1f} s" for k, v in phases.items()))
        firsts: dict[str, datetime] = {}
        for user_id, at in SegmentMessage.objects.filter(received_at__gte=t0, user_id__in=wanted).values_list(
            "user_id", "received_at"
        ):
            firsts[user_id] = min(at, firsts.get(user_id, at))
        burst = [(at - t0).total_seconds() for at in firsts.values()]
        drain = max(burst)
        print(figures(f"burst of {len(burst_ids):,} events, change -> Segment accepted", burst))
        budget = 110 / 10 * 100
        print(
            f"burst: {len(wanted) / drain:,.0f} records/s end to end = {len(wanted) / drain / budget:.0%} of "
            f"HubSpot's batch-read budget per account ({budget:,.0f} ids/s; the sandbox's limits are off here)"
        )
        assert statistics.median(lags) < 30
    finally:
        for w in workers:
            stop(w)
        celery_app.control.purge()

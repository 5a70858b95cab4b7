"""The dashboard: health states, freshness, counts, constant queries; run pages with redacted errors; progress
fragments that stop polling; the lazy workers panel."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mappings.models import DeliveryRun, DeliveryState, Mapping
from monitoring import charts, dashboard, workers
from monitoring.dashboard import Health
from sources.models import Record, Source, SyncRun
from tests.factories import (
    DataModelFactory,
    DeliveryRunFactory,
    DeliveryStateFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
    RecordFactory,
    SourceFactory,
    SyncRunFactory,
)

_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def make_source(workspace, **fields) -> Source:
    n = next(_ids)
    defaults = {
        "name": f"HubSpot {n}",
        "schema_name": f"hubspot_{n}",
        "enabled": True,
        "token": "refresh-SECRET-abcdef123456",
        "access_token": "access-SECRET-abcdef123456",
        "next_sync_at": timezone.now() + timedelta(hours=1),
    }
    return SourceFactory(workspace=workspace, **{**defaults, **fields})


def make_run(source: Source, status: str = "succeeded", *, set_last: bool = True, **fields) -> SyncRun:
    now = timezone.now()
    finished = status not in SyncRun.ACTIVE
    defaults = {
        "trigger": "scheduled",
        "created_at": now - timedelta(minutes=10),
        "started_at": now - timedelta(minutes=9) if status != "queued" else None,
        "finished_at": now - timedelta(minutes=8) if finished else None,
        "counts": {"contacts": {"read": 5, "new": 3, "updated": 2, "unchanged": 0, "archived": 0}},
        "api_calls": 7,
    }
    run = SyncRunFactory(source=source, status=status, **{**defaults, **fields})
    if set_last:
        Source.objects.filter(pk=source.pk).update(last_run=run)
        source.refresh_from_db()
    return run


def make_mapping(workspace, source: Source, **fields) -> Mapping:
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Prod", write_key="wk-SECRET-0123456789")
    defaults = {"identifiers": {"user_id": "email"}, "traits": [["email", "email"]], "enabled": True}
    return MappingFactory(destination=destination, data_model=model, profile_space=space, **{**defaults, **fields})


def make_delivery(mapping: Mapping, status: str = "succeeded", *, sync_run=None, **fields) -> DeliveryRun:
    now = timezone.now()
    finished = status not in DeliveryRun.ACTIVE
    run = DeliveryRunFactory(
        mapping=mapping,
        sync_run=sync_run,
        status=status,
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=4) if finished else None,
        **fields,
    )
    Mapping.objects.filter(pk=mapping.pk).update(last_run=run)
    mapping.refresh_from_db()
    return run


def add_records(source: Source, n: int, *, start_seq: int = 1, updated_at=None, synced_at=None) -> None:
    updated_at = updated_at or timezone.now()
    Record.objects.bulk_create(
        Record(
            source=source,
            collection="contacts",
            object_id=start_seq + i,
            properties={"email": f"c{i}@example.com"},
            updated_at=updated_at + timedelta(seconds=i),
            content_hash="x",
            change_seq=start_seq + i,
            synced_at=synced_at or timezone.now(),
        )
        for i in range(n)
    )


def source_row(board, source):
    return next(r for r in board.sources if r.source.pk == source.pk)


def mapping_row(board, mapping):
    return next(r for r in board.mappings if r.mapping.pk == mapping.pk)


# --- health states ----------------------------------------------------------------------------------------------


def test_source_health_states(workspace):
    now = timezone.now()
    healthy = make_source(workspace)
    make_run(healthy, "succeeded")
    never_ran = make_source(workspace)
    paused = make_source(workspace, enabled=False)
    make_run(paused, "failed")
    reconnect = make_source(workspace, status="needs_reconnect", status_detail="HubSpot said BAD_REFRESH_TOKEN")
    running = make_source(workspace)
    make_run(running, "failed")
    make_run(running, "running", set_last=False, progress_done=10, progress_total=100)
    failing = make_source(workspace)
    make_run(failing, "failed", error="boom")
    partial = make_source(workspace)
    make_run(partial, "partial")
    late = make_source(workspace, next_sync_at=now - timedelta(minutes=20))
    make_run(late, "succeeded")
    due_just_now = make_source(workspace, next_sync_at=now - timedelta(minutes=5))
    short_interval_late = make_source(
        workspace, sync_interval=timedelta(minutes=5), next_sync_at=now - timedelta(minutes=6)
    )

    board = dashboard.build(workspace, now=now)
    expected = {
        healthy: Health.HEALTHY,
        never_ran: Health.HEALTHY,
        paused: Health.PAUSED,
        reconnect: Health.NEEDS_RECONNECT,
        running: Health.RUNNING,
        failing: Health.FAILING,
        partial: Health.FAILING,
        late: Health.LATE,
        due_just_now: Health.HEALTHY,  # within the grace period: the dispatcher is about to pick it up
        short_interval_late: Health.LATE,  # more than one (short) interval overdue
    }
    for source, health in expected.items():
        assert source_row(board, source).health == health, source.name
    assert "BAD_REFRESH_TOKEN" in source_row(board, reconnect).reason
    assert source_row(board, running).active_run is not None
    assert source_row(board, paused).next_run is None


def test_mapping_health_states(workspace):
    now = timezone.now()
    source = make_source(workspace)
    healthy = make_mapping(workspace, source)
    make_delivery(healthy, "succeeded")
    off = make_mapping(workspace, source, enabled=False)
    running = make_mapping(workspace, source)
    make_delivery(running, "running")
    failing = make_mapping(workspace, source)
    make_delivery(failing, "failed", error="Segment said 400")
    partial = make_mapping(workspace, source)
    make_delivery(partial, "partial")
    broken_source = make_source(workspace, status="needs_reconnect")
    reconnect = make_mapping(workspace, broken_source)

    board = dashboard.build(workspace, now=now)
    assert mapping_row(board, healthy).health == Health.HEALTHY
    assert mapping_row(board, off).health == Health.PAUSED
    assert mapping_row(board, running).health == Health.RUNNING
    assert mapping_row(board, failing).health == Health.FAILING
    assert mapping_row(board, partial).health == Health.FAILING
    assert mapping_row(board, reconnect).health == Health.NEEDS_RECONNECT


def test_mapping_late_when_mirrored_changes_wait_too_long(workspace):
    now = timezone.now()
    source = make_source(workspace)
    mapping = make_mapping(workspace, source)
    add_records(source, 3, synced_at=now - timedelta(minutes=2))
    assert mapping_row(dashboard.build(workspace, now=now), mapping).health == Health.HEALTHY
    assert mapping_row(dashboard.build(workspace, now=now + timedelta(minutes=30)), mapping).health == Health.LATE


# --- freshness and counts ---------------------------------------------------------------------------------------


def test_freshness_is_the_age_of_the_oldest_undelivered_change(workspace):
    now = timezone.now()
    source = make_source(workspace)
    Source.objects.filter(pk=source.pk).update(created_at=now - timedelta(days=1))  # connected before the changes
    mapping = make_mapping(workspace, source)
    oldest = now - timedelta(hours=2)
    add_records(source, 5, start_seq=1, updated_at=oldest)  # seq 1..5, updated 2 h ago (+i s)
    row = mapping_row(dashboard.build(workspace, now=now), mapping)
    assert row.pending_since == oldest
    assert row.freshness == timedelta(hours=2)

    # Delivered up to seq 3: the oldest pending change is seq 4 (updated 3 s after the first).
    Mapping.objects.filter(pk=mapping.pk).update(watermark=3)
    row = mapping_row(dashboard.build(workspace, now=now), mapping)
    assert row.freshness == timedelta(hours=2) - timedelta(seconds=3)

    # Everything delivered: up to date.
    Mapping.objects.filter(pk=mapping.pk).update(watermark=5)
    row = mapping_row(dashboard.build(workspace, now=now), mapping)
    assert row.pending_since is None and row.freshness == timedelta(0)

    # Another collection's changes don't make this mapping stale.
    RecordFactory(source=source, collection="companies", object_id=1, content_hash="x", change_seq=6, updated_at=oldest)
    assert mapping_row(dashboard.build(workspace, now=now), mapping).freshness == timedelta(0)


def test_a_change_made_before_the_source_was_connected_waits_from_the_connection(workspace):
    """A first sync reads records last changed years ago: they are behind since hubsync was connected, not since
    HubSpot changed them."""
    now = timezone.now()
    source = make_source(workspace)
    connected = now - timedelta(minutes=5)
    Source.objects.filter(pk=source.pk).update(created_at=connected)
    mapping = make_mapping(workspace, source)
    add_records(source, 3, start_seq=1, updated_at=now - timedelta(days=1250))
    row = mapping_row(dashboard.build(workspace, now=now), mapping)
    assert row.pending_since == connected and row.freshness == timedelta(minutes=5)


def test_counts_mirror_delivered_rejected_and_cache_follows_changes(workspace):
    source = make_source(workspace)
    mapping = make_mapping(workspace, source)
    add_records(source, 4)
    run = make_delivery(mapping, sent=3, rejected=1)
    DeliveryState.objects.bulk_create(
        [DeliveryState(mapping=mapping, object_id=i, status="delivered") for i in range(3)]
        + [DeliveryState(mapping=mapping, object_id=9, status="rejected", error="no user id")]
    )
    board = dashboard.build(workspace)
    assert source_row(board, source).records == 4
    row = mapping_row(board, mapping)
    assert (row.delivered, row.rejected) == (3, 1)

    # Cached: the same numbers without counting again.
    with CaptureQueriesContext(connection) as ctx:
        dashboard.build(workspace)
    # The grouped counts select from the counted table itself (the mappings query only nests small subqueries).
    grouped = ('SELECT "sources_record"."source_id"', 'SELECT "mappings_deliverystate"."mapping_id"')
    counted = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith(grouped)]
    assert not counted

    # New mirror rows and a new delivery run invalidate the cached counts.
    add_records(source, 2, start_seq=100)
    make_delivery(mapping, sent=1)
    DeliveryStateFactory(mapping=mapping, object_id=50, status="delivered")
    board = dashboard.build(workspace)
    assert source_row(board, source).records == 6
    assert mapping_row(board, mapping).delivered == 4
    assert run.pk  # the first run is still there, the page shows the latest


def _populate(workspace, n: int) -> None:
    for _ in range(n):
        source = make_source(workspace)
        sync = make_run(source, "succeeded", api_calls=40)
        add_records(source, 3)
        mapping = make_mapping(workspace, source)
        make_delivery(mapping, "succeeded", sync_run=sync, sent=3)
        DeliveryStateFactory(mapping=mapping, object_id=1, status="rejected", error="no id")
    running = make_source(workspace)
    make_run(running, "running", progress_done=5, progress_total=10)
    make_delivery(make_mapping(workspace, running), "running", considered=2)


def _dashboard_queries(client) -> int:
    client.get(reverse("dashboard"))  # warm up the session (the first request of a client writes it)
    cache.clear()  # the worst case: every count is recomputed
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_dashboard_queries_constant_in_number_of_sources_and_runs(owner_client, workspace):
    _populate(workspace, 1)
    one = _dashboard_queries(owner_client)
    _populate(workspace, 49)
    fifty = _dashboard_queries(owner_client)
    assert fifty == one, (one, fifty)
    assert one <= 20


def test_dashboard_max_queries(owner_client, workspace, django_assert_max_num_queries):
    _populate(workspace, 50)
    with django_assert_max_num_queries(20):
        response = owner_client.get(reverse("dashboard"))
    html = response.content.decode()
    assert html.count('data-health="healthy"') >= 50
    assert 'data-health="running"' in html
    assert "SECRET" not in html


# --- pages --------------------------------------------------------------------------------------------------------


def test_empty_workspace_shows_first_step(owner_client):
    html = owner_client.get(reverse("dashboard")).content.decode()
    assert "Connect your first source" in html
    # Straight to the catalog with HubSpot selected (its Add Source button), not through an empty Sources page.
    assert f'href="{reverse("sources:catalog")}?selected=hubspot#selected">Connect HubSpot</a>' in html
    page = owner_client.get(reverse("sources:catalog"), {"selected": "hubspot"}).content.decode()
    assert f'href="{reverse("sources:new")}">Add Source</a>' in page


def test_dashboard_shows_rows_progress_charts_and_lazy_workers(viewer_client, workspace):
    source = make_source(workspace, name="Main portal")
    done = make_run(source, "succeeded", counts={"contacts": {"read": 1234}}, api_calls=55)
    mapping = make_mapping(workspace, source, name="Contacts to Prod")
    make_delivery(mapping, "succeeded", sync_run=done, sent=1200, rejected=34)
    running = make_run(source, "running", set_last=False, progress_done=250, progress_total=1000)
    html = viewer_client.get(reverse("dashboard")).content.decode()
    assert "Main portal" in html and "Contacts to Prod" in html
    assert html.count('id="dash-charts"') == 1 and "hx-swap-oob" not in html
    # Live progress: the dashboard's live part polls itself (the bars inside it do not poll on their own).
    assert f'hx-get="{reverse("dashboard_live")}"' in html and 'hx-trigger="every 2s"' in html
    assert reverse("sync_run_progress", args=[source.pk, running.pk]) not in html
    assert "250 / 1000" in html and "25%" in html
    # Charts: inline SVG with title and desc.
    assert html.count("<svg") == 3 and "<desc" in html and "Records per sync run" in html
    assert "1234 read" in html and "1200 sent" in html and "34 rejected" in html
    # The workers panel is a lazy fragment: the page itself asks no worker anything.
    assert f'hx-get="{reverse("dashboard_workers")}"' in html and 'hx-trigger="load' in html
    assert "Connect your first source" not in html


def test_progress_fragment_polls_until_the_run_ends(viewer_client, workspace):
    source = make_source(workspace)
    run = make_run(source, "running", progress_done=30, progress_total=120)
    url = reverse("sync_run_progress", args=[source.pk, run.pk])
    response = viewer_client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "30 / 120" in html and "ETA" in html and 'hx-trigger="every 2s"' in html

    SyncRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now(), progress_done=120)
    response = viewer_client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 286  # htmx stops polling
    html = response.content.decode()
    assert "120 / 120" in html and "hx-trigger" not in html and "Succeeded" in html


def test_the_dashboard_follows_work_from_its_start_to_its_deliveries_then_stops(viewer_client, workspace, outsider):
    """Idle, the page watches; a sync that starts makes its live part poll; the deliveries the sync started appear
    under "Running now", then with their counts; after LIVE_GRACE the answer is a 286 with the final state."""
    source = make_source(workspace, name="Main portal")
    make_run(source, "succeeded")
    page = viewer_client.get(reverse("dashboard")).content.decode()
    assert 'data-live="false"' in page and 'hx-trigger="hubsync-work from:body"' in page
    assert f'hx-get="{reverse("dashboard_watch")}"' in page and 'hx-trigger="every 10s"' in page
    assert "Running now" not in page

    watch = viewer_client.get(reverse("dashboard_watch"), headers={"HX-Request": "true"})
    assert watch.status_code == 204 and "HX-Trigger" not in watch.headers  # nothing yet: keep watching

    run = make_run(source, "running", progress_done=5, progress_total=50, started_at=timezone.now())
    other = make_run(make_source(outsider.memberships.get().workspace, name="Globex source"), "running")
    watch = viewer_client.get(reverse("dashboard_watch"), headers={"HX-Request": "true"})
    assert watch.status_code == 204 and watch.headers["HX-Trigger"] == "hubsync-work"
    live = viewer_client.get(reverse("dashboard_live"), headers={"HX-Request": "true"})
    html = live.content.decode()
    assert live.status_code == 200 and 'data-live="true"' in html and 'hx-trigger="every 2s"' in html
    assert "Running now" in html and reverse("sync_run", args=[source.pk, run.pk]) in html and "5 / 50" in html
    assert reverse("sync_run", args=[other.source_id, other.pk]) not in html  # another workspace's run
    assert 'data-health="running"' in html and "running now" in html

    # The sync ends; the delivery it started is running.
    now = timezone.now()
    SyncRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=now, progress_done=50)
    add_records(source, 50)
    mapping = make_mapping(workspace, source, name="Contacts to Prod")
    delivery = make_delivery(mapping, "running", sync_run=run, considered=10, watermark_from=0)
    html = viewer_client.get(reverse("dashboard_live"), headers={"HX-Request": "true"}).content.decode()
    assert f'data-run="delivery-{delivery.pk}"' in html and "10 / 50" in html  # the total, counted by this poll
    assert f'data-run="sync-{run.pk}" data-status="succeeded"' in html and "50 / 50" in html
    assert '<td class="right records-in-mirror">50</td>' in html

    # The delivery ends: still followed for LIVE_GRACE, with its counts under "Finished in the last few minutes".
    DeliveryRun.objects.filter(pk=delivery.pk).update(
        status="succeeded", finished_at=timezone.now(), considered=50, sent=48, rejected=2
    )
    live = viewer_client.get(reverse("dashboard_live"), headers={"HX-Request": "true"})
    html = live.content.decode()
    assert live.status_code == 200 and "Nothing running now" in html
    assert "dash-charts" not in html
    assert f'data-run="delivery-{delivery.pk}" data-status="succeeded"' in html and "48 sent, 2 rejected" in html

    # LIVE_GRACE later: the final state, and a 286 that stops the polling.
    past = timezone.now() - dashboard.LIVE_GRACE - timedelta(seconds=1)
    DeliveryRun.objects.filter(pk=delivery.pk).update(finished_at=past)
    SyncRun.objects.filter(pk=run.pk).update(finished_at=past)
    SyncRun.objects.filter(pk=other.pk).update(status="failed", finished_at=timezone.now())  # not ours
    live = viewer_client.get(reverse("dashboard_live"), headers={"HX-Request": "true"})
    html = live.content.decode()
    assert live.status_code == 286 and 'data-live="false"' in html and 'hx-trigger="every 2s"' not in html
    # The charts come along once, out of band, with the runs that just ended (the polling answers had none).
    assert 'id="dash-charts" hx-swap-oob="true"' in html and "Records per sync run" in html
    assert f'data-run="delivery-{delivery.pk}"' in html  # what just happened stays on screen
    assert viewer_client.get(reverse("dashboard_watch")).headers.get("HX-Trigger") is None


def _live_queries(client) -> int:
    # Warm: the session, and each running delivery's total (counted once per run, then cached).
    client.get(reverse("dashboard_live"))
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("dashboard_live"))
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_live_part_queries_do_not_grow_with_sources_and_runs(owner_client, workspace):
    _populate(workspace, 1)
    one = _live_queries(owner_client)
    _populate(workspace, 20)
    assert _live_queries(owner_client) == one <= 15


def test_running_sync_shows_budget_in_flight_and_partitions(viewer_client, workspace):
    """Issue 13.7 on the run's live fragment: requests per 10 s against the budget, per second of search against
    5, in flight, partitions done / total (when the engine reads in partitions), ETA."""
    source = make_source(workspace)
    run = make_run(
        source,
        "running",
        started_at=timezone.now() - timedelta(seconds=20),
        progress_done=2000,
        progress_total=8000,
        peak_requests_10s=96,
        peak_search_1s=4,
        requests_in_flight=6,
        budget_10s=110,
        search_budget_1s=5,
        counts={
            "contacts": {"read": 1500, "partitions": {"done": 3, "total": 8}},
            "companies": {"read": 500, "partitions": {"done": 1, "total": 2}},
        },
    )
    html = viewer_client.get(reverse("sync_run_progress", args=[source.pk, run.pk])).content.decode()
    assert "96 of 110</strong> requests (87%)" in html and '<strong class="budget-search">4 of 5</strong>' in html
    assert "6 in flight" in html and "partitions 4 / 10" in html and 'ETA <span class="progress-eta">1 min' in html
    SyncRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now(), progress_done=8000)
    html = viewer_client.get(reverse("sync_run_progress", args=[source.pk, run.pk])).content.decode()
    assert "in flight" not in html and "96 of 110" in html


def test_delivery_progress_fragment(viewer_client, workspace):
    source = make_source(workspace)
    add_records(source, 40)
    mapping = make_mapping(workspace, source)
    run = make_delivery(mapping, "running", considered=10, watermark_from=0)
    response = viewer_client.get(reverse("delivery_run_progress", args=[run.pk]))
    assert response.status_code == 200
    assert "10 / 40" in response.content.decode()
    DeliveryRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now(), considered=40)
    response = viewer_client.get(reverse("delivery_run_progress", args=[run.pk]))
    assert response.status_code == 286


def test_eta_from_rate():
    now = timezone.now()
    run = SyncRun(status="running", started_at=now - timedelta(seconds=10), progress_done=100, progress_total=400)
    progress = dashboard.sync_progress(run, now=now)
    assert progress.percent == 25
    assert progress.eta == timedelta(seconds=30)
    assert not progress.finished


def test_a_finished_sync_that_found_nothing_shows_0_of_0_not_a_question_mark(viewer_client, workspace):
    # "Sync now" with no change in HubSpot: the run never learns a total, and its line said "0 / ? · Succeeded".
    source = make_source(workspace)
    run = make_run(source, "succeeded", progress_done=0, progress_total=None)
    progress = dashboard.sync_progress(run)
    assert (progress.done, progress.total, progress.percent) == (0, 0, 100)
    html = viewer_client.get(reverse("sync_run", args=[source.pk, run.pk])).content.decode()
    assert '<span class="progress-count">0 / 0</span>' in html and "/ ?" not in html
    running = make_run(source, "running", set_last=False, progress_done=0, progress_total=None)
    assert dashboard.sync_progress(running).total is None  # still unknown while it runs


def test_sync_run_page_shows_counts_deliveries_and_redacts_secrets(viewer_client, workspace):
    source = make_source(workspace)
    error = (
        "HubSpot 401 on GET /crm/v3/objects/contacts: "
        '{"status":"error","message":"token access-SECRET-abcdef123456 expired"} '
        "Authorization: Bearer abc.def-ghijklmnop refresh_token=refresh-SECRET-abcdef123456"
    )
    run = make_run(
        source,
        "partial",
        error=error,
        api_calls=321,
        retries=4,
        counts={
            "contacts": {
                "read": 10,
                "new": 4,
                "updated": 6,
                "unchanged": 0,
                "archived": 1,
                "deleted": 17,
                "notes": ["HubSpot's list did not come in id order"],
            },
            "deals": {"read": 0, "error": 'HubSpot 403: {"message":"missing scope","token":"zzTOPSECRETzz"}'},
        },
    )
    mapping = make_mapping(workspace, source)
    delivery = make_delivery(mapping, "succeeded", sync_run=run, sent=9)
    response = viewer_client.get(reverse("sync_run", args=[source.pk, run.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "321" in html and "Retries" in html and "Partial" in html
    assert "missing scope" in html and "HubSpot 401" in html  # the response body is shown...
    for secret in ("SECRET", "abc.def-ghijklmnop", "zzTOPSECRETzz"):
        assert secret not in html  # ...without its credentials
    assert "[redacted]" in html
    assert reverse("delivery_run", args=[delivery.pk]) in html
    assert "Deals" in html or "deals" in html
    assert "Deleted</th>" in html and '<td class="right">17</td>' in html
    assert "did not come in id order" in html


def test_delivery_run_page_redacts_write_key(viewer_client, workspace):
    source = make_source(workspace)
    mapping = make_mapping(workspace, source)
    sync = make_run(source)
    run = make_delivery(
        mapping,
        "failed",
        sync_run=sync,
        error='Segment 400: {"success":false,"message":"bad writeKey wk-SECRET-0123456789"}',
        sent=0,
        rejected=2,
        batches=3,
        requests=5,
        retries=2,
    )
    response = viewer_client.get(reverse("delivery_run", args=[run.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Segment 400" in html and "SECRET" not in html and "[redacted]" in html
    assert reverse("sync_run", args=[source.pk, sync.pk]) in html


def test_run_pages_show_sub_second_durations_as_the_mapping_page_does(viewer_client, workspace):
    # A first sync of 420 records took 0.76 s: the run page said "Duration 0 s" and "Succeeded in 0 s" while the
    # mapping's table said 0.15 s for its delivery.
    source = make_source(workspace)
    started = timezone.now() - timedelta(minutes=3)
    sync = make_run(source, started_at=started, finished_at=started + timedelta(milliseconds=757))
    mapping = make_mapping(workspace, source)
    delivery = make_delivery(mapping, sync_run=sync)
    DeliveryRun.objects.filter(pk=delivery.pk).update(finished_at=delivery.started_at + timedelta(milliseconds=150))

    def text(url: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", viewer_client.get(url).content.decode()))

    sync_page = text(reverse("sync_run", args=[source.pk, sync.pk]))
    assert "Duration 0.76 s" in sync_page and "in 0.76 s" in sync_page and "in 0 s" not in sync_page
    delivery_page = text(reverse("delivery_run", args=[delivery.pk]))
    assert "Duration 0.15 s" in delivery_page and "in 0.15 s" in delivery_page


def test_next_sync_reads_in_hours_and_minutes_or_due_now_never_ago(owner_client, workspace):
    # The source page said "2 hours, 51 minutes" (Django's timeuntil) and the dashboard "in 2 h 59 min"; an overdue
    # sync, about to be picked up, read "5 min 00 s ago" on the dashboard.
    source = make_source(workspace, next_sync_at=timezone.now() + timedelta(hours=2, minutes=51, seconds=30))

    def overview() -> str:
        html = owner_client.get(reverse("sources:detail", args=[source.pk])).content.decode()
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))

    assert "Next sync in 2 h 51 min" in overview()
    Source.objects.filter(pk=source.pk).update(next_sync_at=timezone.now() - timedelta(minutes=5))
    assert "Next sync due now" in overview()
    live = owner_client.get(reverse("dashboard_live")).content.decode()
    assert "due now" in live and " ago</td>" not in live


def test_outsider_gets_404_for_run_pages(outsider_client, workspace):
    source = make_source(workspace)
    run = make_run(source, "running")
    mapping = make_mapping(workspace, source)
    delivery = make_delivery(mapping)
    for url in (
        reverse("sync_run", args=[source.pk, run.pk]),
        reverse("sync_run_progress", args=[source.pk, run.pk]),
        reverse("delivery_run", args=[delivery.pk]),
        reverse("delivery_run_progress", args=[delivery.pk]),
    ):
        assert outsider_client.get(url).status_code == 404, url
    html = outsider_client.get(reverse("dashboard")).content.decode()
    assert source.name not in html


def test_run_of_another_source_in_the_url_is_404(viewer_client, workspace):
    a, b = make_source(workspace), make_source(workspace)
    run = make_run(a)
    assert viewer_client.get(reverse("sync_run", args=[b.pk, run.pk])).status_code == 404


def test_workers_fragment_without_workers(viewer_client, settings):
    settings.HEALTH_WORKER_TIMEOUT = 0.2
    response = viewer_client.get(reverse("dashboard_workers"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "no worker" in html
    assert 'data-queue="extract"' in html and 'data-queue="deliver"' in html


def test_queue_lengths_count_waiting_messages(settings, tmp_path):
    if settings.CELERY_BROKER_URL.startswith("redis"):
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete("zq-test-queue")
        client.rpush("zq-test-queue", "a", "b")
        settings.CELERY_TASK_QUEUES_NAMES = ("zq-test-queue",)
        try:
            assert workers.queue_lengths() == [{"name": "zq-test-queue", "waiting": 2}]
        finally:
            client.delete("zq-test-queue")
    else:
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
        for name in ("1_a.extract.msg", "2_b.extract.msg", "3_c.deliver.msg"):
            (tmp_path / name).write_text("{}")
        assert workers.queue_lengths() == [{"name": "extract", "waiting": 2}, {"name": "deliver", "waiting": 1}]


def test_chart_svg_is_accessible_and_escaped():
    svg = charts.bar_chart(
        title="T <x>",
        desc="D & d",
        labels=["a<b"],
        series=[charts.Series("s", [5], "#000")],
        reference=4,
        reference_label="limit",
    )
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert "T &lt;x&gt;" in svg and "a&lt;b" in svg and "D &amp; d" in svg
    assert 'class="reference"' in svg
    empty = charts.bar_chart(title="t", desc="d", labels=[], series=[charts.Series("s", [], "#000")])
    assert "No finished runs" in empty


def test_chart_points_join_deliveries_and_budget(workspace):
    source = make_source(workspace)
    now = timezone.now()
    run = make_run(
        source,
        started_at=now - timedelta(seconds=100),
        finished_at=now,
        api_calls=550,
        counts={"contacts": {"read": 7}, "deals": {"read": 3}},
        peak_requests_10s=104,
        peak_search_1s=2,
        budget_10s=110,
        search_budget_1s=5,
    )
    make_run(source, created_at=now - timedelta(days=40), started_at=now - timedelta(days=40))  # too old
    m1, m2 = make_mapping(workspace, source), make_mapping(workspace, source)
    make_delivery(m1, sync_run=run, sent=5, rejected=1)
    make_delivery(m2, sync_run=run, sent=2, rejected=2)
    points = dashboard.chart_runs(workspace, now=now)
    assert len(points) == 1
    p = points[0]
    assert (p.read, p.sent, p.rejected, p.api_calls) == (10, 7, 3, 550)
    # The busiest rolling 10 s against the account's 110, not the calls against 11 per second of the run.
    assert (p.budget.peak_10s, p.budget.budget_10s, p.budget.percent) == (104, 110, 95)
    assert (p.budget.peak_search_1s, p.budget.search_budget_1s, p.budget.search_percent) == (2, 5, 40)
    assert p.source_name == source.name


def _budget_run(**fields) -> SyncRun:
    defaults = {"status": "succeeded", "api_calls": 20, "rate_limited": 0, "requests_in_flight": 0}
    return SyncRun(**{**defaults, **fields})


def test_healthy_run_is_never_above_the_budget_line(settings):
    """The issue's case: a first sync of 20 calls in 2 s used 20 of 110, not "20 of a budget of 11"; a meter
    reading past the budget without any 429 is clamped to 100 %, a run that met 429s shows what it met."""
    settings.HUBSPOT_RATE_LIMIT = 110
    settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 10_000
    first = dashboard.budget_use(_budget_run(peak_requests_10s=20, budget_10s=110, search_budget_1s=5))
    assert (first.shown_peak_10s, first.budget_10s, first.percent) == (20, 110, 18)
    edge = dashboard.budget_use(_budget_run(peak_requests_10s=112, peak_search_1s=6, budget_10s=110))
    assert (edge.shown_peak_10s, edge.percent, edge.shown_peak_search_1s, edge.search_percent) == (110, 100, 5, 100)
    stormy = dashboard.budget_use(_budget_run(peak_requests_10s=121, budget_10s=110, rate_limited=9))
    assert (stormy.shown_peak_10s, stormy.percent) == (121, 110)
    # No budget stored (no limit configured here): the configured one, else HubSpot's published 110 and 5.
    assert dashboard.budget_use(_budget_run(peak_requests_10s=5)).budget_10s == 110
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    assert dashboard.default_budgets() == (110, 5)
    # A run from before the meter: only its calls are known, and nothing is drawn for it.
    assert not dashboard.budget_use(_budget_run(peak_requests_10s=0)).measured
    svg = charts.budget_chart(
        [
            dashboard.RunPoint(1, 1, "a", timezone.now(), 0, 0, 0, 2.0, 20, first, "Portal A"),
            dashboard.RunPoint(2, 1, "b", timezone.now(), 0, 0, 0, 2.0, 20, edge, "Portal A"),
        ]
    )
    reference_y = float(re.search(r'<line [^>]*y1="([^"]+)"[^>]*class="reference"', svg).group(1))
    tops = [
        float(y)
        for y in re.findall(r'<rect x="[^"]+" y="([^"]+)" width="[^"]+" height="[^"]+" fill="#1c7ed6"><title>', svg)
    ]
    assert len(tops) == 2 and all(top >= reference_y - 0.01 for top in tops), (tops, reference_y)
    assert "busiest 10 s 20 of 110 requests" in svg and "0 × 429" in svg


def test_charts_tell_sources_apart(workspace):
    """Two sources' runs: every bar group names its source, the sources have their own colours and a legend."""
    now = timezone.now()
    one, two = make_source(workspace, name="EU portal"), make_source(workspace, name="US portal")
    for i, source in enumerate((one, two, one)):
        make_run(source, started_at=now - timedelta(minutes=30 - i), finished_at=now - timedelta(minutes=29 - i))
    points = dashboard.chart_runs(workspace, now=now)
    assert [p.source_name for p in points] == ["EU portal", "US portal", "EU portal"]
    for chart in charts.run_charts(points):
        svg = str(chart["svg"])
        assert re.findall(r'data-group="([^"]+)"', svg) == ["EU portal", "US portal", "EU portal"]
        legend = re.findall(r'<g class="legend-group">.*?fill="(#[0-9a-f]+)".*?>([^<]+)</text>', svg)
        assert [name for _, name in legend] == ["EU portal", "US portal"]
        assert legend[0][0] != legend[1][0]
    durations = str(charts.run_charts(points)[1]["svg"])  # one series: the bars themselves take the colour
    colors = {
        name: color
        for color, name in re.findall(r'<g class="legend-group">.*?fill="(#[0-9a-f]+)".*?>([^<]+)</text>', durations)
    }
    assert durations.count(f'fill="{colors["US portal"]}"><title>US portal') == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_workers_fragment_lists_a_live_worker(tmp_path, monkeypatch, settings, viewer_client):
    from tests.hubsync.celery_worker import running_worker

    settings.HEALTH_WORKER_TIMEOUT = 3  # a loaded CI machine may answer slowly
    with running_worker(tmp_path) as worker:
        monkeypatch.setattr("hubsync.celery.app", worker.app)
        response = viewer_client.get(reverse("dashboard_workers"))
    assert response.status_code == 200
    html = response.content.decode()
    # Workers are shared by every workspace: the panel counts them but never names their hosts.
    assert "alive" in html and "1 worker answering" in html and "no worker" not in html
    assert worker.name not in html and worker.name.split("@")[-1] not in html


def test_mapping_paused_by_drift_is_flagged_with_a_link(viewer_client, workspace):
    from mappings.models import MappingIssue

    source = make_source(workspace)
    mapping = make_mapping(workspace, source, paused_reason="drift", paused_at=timezone.now())
    MappingIssue.objects.create(mapping=mapping, kind="deleted", property_name="email", paused=True)
    row = mapping_row(dashboard.build(workspace), mapping)
    assert row.health == Health.PAUSED and "schema drift" in row.reason
    html = viewer_client.get(reverse("dashboard")).content.decode()
    assert reverse("mappings:drift", args=[mapping.pk]) in html and "1 schema change to review" in html


def test_workers_panel_shows_only_this_workspaces_tasks(viewer_client, workspace, other_workspace, monkeypatch):
    """Two workspaces share the workers: Acme's viewer sees Acme's running sync and delivery, and nothing of
    Globex's (task names, run ids, mapping ids), of the shared dispatcher, or the workers' host names. Celery is
    faked at its control API (the broker boundary)."""
    from hubsync.celery import app
    from hubsync.models import Alert

    own_source, their_source = make_source(workspace), make_source(other_workspace)
    own_run = make_run(own_source, "running")
    their_run = make_run(their_source, "running")
    for _ in range(3):  # keep the two workspaces' ids apart, so an id on the page belongs to one of them
        make_run(their_source, "succeeded", set_last=False)
    own_mapping, their_mapping = make_mapping(workspace, own_source), make_mapping(other_workspace, their_source)
    their_alert = Alert.objects.create(workspace=other_workspace, kind="test", text="t")
    now = timezone.now().timestamp()

    def task(name, *args):
        return {"name": name, "args": list(args), "kwargs": {}, "time_start": now}

    active = {
        "celery@acme-worker-7": [task("sources.run_sync", own_run.pk), task("sources.run_sync", their_run.pk)],
        "celery@globex-host-9": [
            task("mappings.deliver_mapping", their_mapping.pk, their_run.pk),
            task("mappings.deliver_mapping", own_mapping.pk, own_run.pk),
            task("monitoring.send_alert", their_alert.pk),
            task("monitoring.evaluate_alerts", other_workspace.pk),
            task("hubsync.dispatch"),
        ],
    }

    class Inspect:
        def active(self):
            return active

    monkeypatch.setattr(app.control, "ping", lambda **kw: [{name: {"ok": "pong"}} for name in active])
    monkeypatch.setattr(app.control, "inspect", lambda **kw: Inspect())
    html = viewer_client.get(reverse("dashboard_workers")).content.decode()
    assert "2 workers answering" in html
    assert f"Sync run <code>{own_run.pk}</code>" in html
    assert f"Delivery of mapping <code>{own_mapping.pk}</code>" in html
    for leak in ("acme-worker-7", "globex-host-9", "hubsync.dispatch", "send_alert", "evaluate_alerts", "Alert"):
        assert leak not in html
    for other_id in {their_run.pk, their_mapping.pk, their_alert.pk} - {own_run.pk, own_mapping.pk}:
        assert f"<code>{other_id}</code>" not in html
    assert html.count("<tr data-task=") == 2

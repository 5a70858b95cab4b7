"""The dashboard in Chromium: a real sync against the slowed-down HubSpot sandbox runs in a background thread while
the test watches the progress bar move and stop polling; the charts render (screenshots in test-artifacts/)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from sources.models import Source, SyncRun
from tests.browser.conftest import log_in
from tests.factories import SourceCollectionFactory, SourceFactory
from tests.sources.extract_helpers import make_source

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "dashboard"
PORTAL = 3601


def _source(workspace, sandbox) -> Source:
    source = make_source(
        workspace,
        sandbox,
        hub_id=PORTAL,
        name="Slow portal",
        schema_name="slow_portal",
        enabled=True,
        next_sync_at=timezone.now() + timedelta(hours=3),
    )
    return source


def test_progress_bar_moves_and_stops_and_charts_render(hubspot_sandbox, page, owner, workspace, settings):
    from sources.extraction import execute_run
    from sources.runs import create_run

    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    hubspot_sandbox.seed(PORTAL, contacts=1500)
    # Each HubSpot call takes 250 ms: the sync runs for several seconds, long enough to watch.
    hubspot_sandbox.set_knobs(rate_limits=False, latency_ms=250)
    source = _source(workspace, hubspot_sandbox)
    run = create_run(source=source, trigger=SyncRun.Trigger.MANUAL)
    assert run is not None

    log_in(page, owner, base)
    polls: list[tuple[float, int]] = []
    # The dashboard's live part polls (dashboard/live/); the bars inside it do not poll on their own.
    page.on(
        "response",
        lambda r: (
            polls.append((time.monotonic(), r.status)) if "/dashboard/live/" in r.url or "/progress/" in r.url else None
        ),
    )
    page.goto(base + "/")
    bar = page.locator(f"#progress-sync-{run.pk}")
    bar.wait_for()

    errors: list[BaseException] = []

    def work() -> None:
        try:
            execute_run(run_id=run.pk)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()

    seen: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        locator = page.locator(f"#progress-sync-{run.pk}")
        status = locator.get_attribute("data-status")
        value = int(locator.locator("[role=progressbar]").get_attribute("aria-valuenow") or 0)
        if not seen or seen[-1] != value:
            seen.append(value)
            if len(seen) == 2:
                page.screenshot(path=str(_shot("01_sync_running")), full_page=True)
        if status not in ("queued", "running"):
            break
        page.wait_for_timeout(300)
    worker.join(timeout=60)
    assert not errors, errors
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    final = page.locator(f"#progress-sync-{run.pk}")
    assert final.get_attribute("data-status") == "succeeded"
    assert final.get_attribute("hx-trigger") is None
    assert f"{run.progress_done} / " in final.inner_text()
    # The bar moved: it showed intermediate values between the start and the end.
    assert len(seen) >= 3, seen
    assert seen == sorted(seen), seen
    assert 0 < seen[1] < run.progress_done
    # ... and polling stopped (after the live part's grace): the last poll answered 286 and none followed it.
    deadline = time.monotonic() + 30
    while not (polls and polls[-1][1] == 286) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    assert polls and polls[-1][1] == 286, polls[-3:]
    count = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == count
    page.screenshot(path=str(_shot("02_sync_done")), full_page=True)

    # Charts: a fresh dashboard charts the finished run.
    page.goto(base + "/")
    chart = page.locator("#chart-records svg")
    chart.wait_for()
    assert page.locator("#chart-records svg rect").count() > 3
    box = chart.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 80
    chart.screenshot(path=str(_shot("03_chart_records")))
    page.locator("#chart-api").screenshot(path=str(_shot("04_chart_api")))
    page.screenshot(path=str(_shot("05_dashboard")), full_page=True)
    # The run page from the dashboard's table.
    page.locator("#dash-sources a[href*='/runs/']").first.click()
    page.wait_for_url(f"**/sources/{source.pk}/runs/{run.pk}/")
    assert "Collections" in page.content()
    page.screenshot(path=str(_shot("06_run_page")), full_page=True)


def _shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"


# --- issue 14: the dashboard follows a sync to its deliveries, and the run's true budget figure ------------------

DOCS_SHOTS = Path(django_settings.BASE_DIR) / "docs" / "screenshots"
LIVE_PORTAL = 3602
CONTACTS = 900  # 9 list pages of 100: the run's requests all fall in one 10-second window


@pytest.fixture
def eager_celery():
    """Celery tasks run inline (deliveries enqueued on commit run in the sync's thread, one after the other)."""
    from hubsync.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def test_dashboard_follows_a_sync_to_its_deliveries_without_reload(
    hubspot_sandbox, segment_sandbox, inline_handoffs, eager_celery, page, owner, workspace, settings
):
    """A first sync (HubSpot answering in 200 ms) and the two deliveries it starts (Segment answering in 2.5 s),
    watched on one dashboard that is never reloaded: the started-ago text ticks, the deliveries appear under
    "Running now", the source row ends with the run's outcome and the records in the mirror, the mapping rows
    with what they delivered; then the live part stops polling (286). The run page shows the run's busiest
    10 s of requests against the account's 110 and its busiest search second against 5, for a run whose requests
    are known."""
    from mappings.models import DeliveryRun, DeliveryStateCount
    from sources.extraction import execute_run
    from sources.runs import create_run
    from tests.mappings.reconcile_helpers import make_mapping

    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.SANDBOX = True
    settings.HUBSPOT_RATE_LIMIT, settings.HUBSPOT_RATE_LIMIT_INTERVAL_MS = 110, 10_000
    settings.HUBSPOT_SEARCH_RATE_LIMIT, settings.HUBSPOT_SEARCH_RATE_LIMIT_INTERVAL_MS = 5, 1000
    hubspot_sandbox.seed(LIVE_PORTAL, contacts=CONTACTS, companies=0, deals=0, tickets=0)
    hubspot_sandbox.set_knobs(rate_limits=False, latency_ms=200)
    segment_sandbox.set_knobs(latency_ms=2500)
    tokens = hubspot_sandbox.token(portal=LIVE_PORTAL)
    source = SourceFactory(
        workspace=workspace,
        name="Live portal",
        schema_name="live_portal",
        hub_id=LIVE_PORTAL,
        token=tokens["refresh_token"],
        access_token=tokens["access_token"],
        access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
        enabled=True,
        next_sync_at=timezone.now() + timedelta(hours=3),
    )
    SourceCollectionFactory(source=source, collection="contacts")
    mappings = [make_mapping(source, segment_sandbox.write_key) for _ in range(2)]
    for mapping, name in zip(mappings, ("Contacts to Profiles", "Contacts to Marketing"), strict=True):
        mapping.name = name
        mapping.save(update_fields=["name"])
    run = create_run(source=source, trigger=SyncRun.Trigger.FIRST)
    assert run is not None

    log_in(page, owner, base)
    live_answers: list[tuple[float, int]] = []
    page.on(
        "response",
        lambda r: live_answers.append((time.monotonic(), r.status)) if "/dashboard/live/" in r.url else None,
    )
    page.goto(base + "/")
    page.evaluate("window.__notReloaded = true")
    live = page.locator("#dash-live")
    assert live.get_attribute("data-live") == "true"  # the queued sync is followed from the start

    errors: list[BaseException] = []

    def work() -> None:
        try:
            execute_run(run_id=run.pk)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()

    started_texts: set[str] = set()
    deliveries_seen: set[str] = set()
    shot_during = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for text in page.locator(".running-item .started-ago").all_inner_texts():
            started_texts.add(text)
        running = page.locator(".running-item[data-run^='delivery-']")
        if running.count():
            deliveries_seen.update(running.evaluate_all("els => els.map(e => e.dataset.run)"))
            if not shot_during:
                DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(DOCS_SHOTS / "dashboard_live_during_run.png"), full_page=True)
                shot_during = True
        if page.locator("#dash-live").get_attribute("data-live") == "false":
            break
        page.wait_for_timeout(250)
    worker.join(timeout=60)
    assert not errors, errors
    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    deliveries = list(DeliveryRun.objects.filter(sync_run=run).order_by("pk"))
    assert len(deliveries) == 2 and all(d.status == "succeeded" and d.considered == CONTACTS for d in deliveries)

    assert page.evaluate("window.__notReloaded") is True
    # The deliveries the sync started appeared under "Running now" without a reload...
    assert deliveries_seen == {f"delivery-{d.pk}" for d in deliveries}, deliveries_seen
    # ... while "started N s ago" ticked.
    assert len(started_texts) >= 2, started_texts
    # The final state: the source row, the mapping rows, the finished runs with their counts.
    row = page.locator(f"#dash-sources tr[data-source='{source.pk}']")
    assert "Succeeded" in row.inner_text() and row.get_attribute("data-health") == "healthy"
    assert row.locator(".records-in-mirror").inner_text() == f"{CONTACTS:,}"
    for mapping in mappings:
        delivered = DeliveryStateCount.for_mappings([mapping.pk])[mapping.pk].get("delivered", 0)
        assert delivered > 0
        mrow = page.locator(f"#dash-mappings tr[data-mapping='{mapping.pk}']")
        assert mrow.locator(".delivered").inner_text() == f"{delivered:,}" and "Succeeded" in mrow.inner_text()
    for delivery in deliveries:
        item = page.locator(f".recent-item[data-run='delivery-{delivery.pk}']")
        assert item.get_attribute("data-status") == "succeeded"
        assert f"{delivery.sent:,} sent" in item.inner_text()
    # Polling stopped: the last answer was a 286 and none followed.
    assert live_answers and live_answers[-1][1] == 286, live_answers[-3:]
    count = len(live_answers)
    page.wait_for_timeout(3000)
    assert len(live_answers) == count
    # The charts took the finished run in with the last answer, still without a reload.
    assert page.locator("#chart-records svg g.bar-group[data-group='Live portal']").count() == 1
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(DOCS_SHOTS / "dashboard_live_after_run.png"), full_page=True)

    # The run page. This first sync makes two searches (the size estimate and the largest id, limit 1, asked at
    # once with the properties) and 11 list/read requests (the properties, 9 pages of 100 contacts, the archived
    # list), all within one 10-second window: its busiest 10 s is those 11, against the account's 110, and its
    # busiest search second holds 2 of 5. No 429.
    assert run.finished_at - run.started_at < timedelta(seconds=9), "the known request pattern needs < 10 s"
    assert run.api_calls == 13
    assert (run.peak_requests_10s, run.peak_search_1s, run.rate_limited) == (11, 2, 0)
    page.locator(f"#dash-sources tr[data-source='{source.pk}'] a[href*='/runs/']").click()
    page.wait_for_url(f"**/sources/{source.pk}/runs/{run.pk}/")
    figure = page.locator("#run-budget .budget-use")
    assert figure.locator(".budget-general").inner_text() == "11 of 110"
    assert figure.locator(".budget-search").inner_text() == "2 of 5"
    assert figure.get_attribute("data-percent") == "10"
    assert "0 × 429" in figure.inner_text()
    page.screenshot(path=str(DOCS_SHOTS / "sync_run_budget.png"), full_page=True)
    # The dashboard's budget chart: the run's bar stays under the 100 % line.
    page.goto(base + "/")
    chart = page.locator("#chart-api svg")
    tops = chart.locator("g.bar-group rect[fill='#1c7ed6']").evaluate_all("els => els.map(e => +e.getAttribute('y'))")
    line = float(chart.locator("line.reference").get_attribute("y1"))
    assert tops and all(top >= line for top in tops), (tops, line)


def test_idle_dashboard_notices_work_that_starts_and_stops_following_it_after(live_server, page, owner, workspace):
    """Nothing runs when the page loads: its watch (every 10 s) notices a sync that starts, the live part then
    follows it, and stops polling (286) once the run has been over for the grace period."""
    from monitoring.dashboard import LIVE_GRACE
    from tests.factories import SyncRunFactory

    source = SourceFactory(workspace=workspace, name="Quiet portal", schema_name="quiet_portal", enabled=True)
    log_in(page, owner, live_server.url)
    page.goto(live_server.url + "/")
    page.evaluate("window.__notReloaded = true")
    assert page.locator("#dash-live").get_attribute("data-live") == "false"
    assert page.locator("#dash-live").get_attribute("hx-trigger") == "hubsync-work from:body"

    run = SyncRunFactory(
        source=source, status="running", trigger="manual", started_at=timezone.now(), progress_done=3, progress_total=9
    )
    Source.objects.filter(pk=source.pk).update(last_run=run)  # as a worker's claim does
    page.locator("#dash-live[data-live='true']").wait_for(timeout=15_000)
    assert "3 / 9" in page.locator(f".running-item[data-run='sync-{run.pk}']").inner_text()

    SyncRun.objects.filter(pk=run.pk).update(
        status="succeeded", progress_done=9, finished_at=timezone.now() - LIVE_GRACE - timedelta(seconds=1)
    )
    page.locator("#dash-live[data-live='false']").wait_for(timeout=10_000)
    item = page.locator(f".recent-item[data-run='sync-{run.pk}']")
    assert item.get_attribute("data-status") == "succeeded" and "9 / 9" in item.inner_text()
    assert page.evaluate("window.__notReloaded") is True

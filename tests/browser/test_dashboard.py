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

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "dashboard"
PORTAL = 3601


def _source(workspace, sandbox) -> Source:
    tokens = sandbox.token(portal=PORTAL)
    source = SourceFactory(
        workspace=workspace,
        name="Slow portal",
        schema_name="slow_portal",
        hub_id=PORTAL,
        token=tokens["refresh_token"],
        access_token=tokens["access_token"],
        access_token_expires_at=timezone.now() + timedelta(seconds=int(tokens["expires_in"])),
        enabled=True,
        next_sync_at=timezone.now() + timedelta(hours=3),
    )
    SourceCollectionFactory(source=source, collection="contacts")
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
    page.on(
        "response",
        lambda r: polls.append((time.monotonic(), r.status)) if "/progress/" in r.url else None,
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
    # ... and polling stopped: the last poll answered 286 and none followed it.
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

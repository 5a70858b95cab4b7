"""Issue 15's proof in Chromium: a contact edited on the sandbox HubSpot's page reaches its profile in the sandbox
Segment inbox on its own (webhook -> receiver -> a real Celery worker reads the record and delivers), and the
source page shows it under "Live". Nobody presses "Sync now"."""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.sync_api import expect

from hubsync.celery import app as celery_app
from sandbox.hubspot import webhooks
from sources.models import LiveCounter, Source
from tests.browser.conftest import log_in, screenshot
from tests.mappings.reconcile_helpers import PORTAL as RECONCILE_PORTAL
from tests.mappings.reconcile_helpers import setup_pipeline, sync_and_deliver
from tests.mappings.test_pipeline_worker import start_worker, stop, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PORTAL = RECONCILE_PORTAL


@pytest.fixture
def hub(hub, settings):
    """The whole-pipeline sandboxes (tests/conftest.py), with live events coalesced for a second only."""
    settings.HUBSYNC_LIVE_COALESCE_SECONDS = 1
    return hub


def test_a_change_in_hubspot_reaches_the_profile_without_pressing_anything(
    page, hub, segment_sandbox, workspace, owner, tmp_path
):
    segment = segment_sandbox.with_workspace("Live")
    celery_app.control.purge()
    source, _mapping = setup_pipeline(workspace, hub, segment, contacts=20)
    sync_and_deliver(source)
    Source.objects.filter(pk=source.pk).update(enabled=True)
    webhooks.configure(hub.portal(PORTAL), {"target_url": hub.server_url + "/hooks/hubspot/"})
    contact = next(p for p in segment.profiles() if p.get("userId"))
    object_id = contact["traits"]["hubspot_id"]
    new_name = f"Livia-{uuid.uuid4().hex[:6]}"

    log = tmp_path / "worker.log"
    worker = start_worker(hub.server_url, log)
    try:
        # The user edits the contact in (sandbox) HubSpot.
        page.goto(f"{hub.server_url}/sandbox/hubspot/portals/{PORTAL}/")
        form = page.locator("#edit-record")
        form.locator("select[name=collection]").select_option("contacts")
        form.locator("input[name=object_id]").fill(str(object_id))
        form.locator("input[name=property]").fill("firstname")
        form.locator("input[name=value]").fill(new_name)
        started = time.monotonic()
        form.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Saved firstname")).to_be_visible()

        # ...and watches the profile in the Segment inbox: no sync is started by anyone.
        page.goto(f"{hub.server_url}/sandbox/segment/inbox/{segment.write_key}/?view=profiles")
        deadline = time.monotonic() + 60
        while page.get_by_text(new_name).count() == 0:
            assert time.monotonic() < deadline, f"the profile did not change; worker log:\n{log.read_text()[-4000:]}"
            page.wait_for_timeout(300)
            page.reload()
        elapsed = time.monotonic() - started
        print(f"HubSpot edit -> profile visible in the inbox: {elapsed:.1f} s")
        assert segment.profile(contact["userId"])["traits"]["first_name"] == new_name
        assert source.runs.count() == 1  # the first sync only: the change came by webhook

        # The source page shows the live figures.
        wait_for(lambda: LiveCounter.objects.filter(source=source, applied__gte=1).exists(), 30, "applied", log)
        log_in(page, owner, hub.server_url)
        page.goto(f"{hub.server_url}/sources/{source.pk}/")
        live = page.locator("#live")
        expect(live.get_by_test_id("live-state")).to_have_text("On")
        expect(live.get_by_test_id("live-counts")).to_contain_text("/ 1")
        expect(live.get_by_test_id("live-lag-mirror")).to_contain_text("p95")
        expect(live.get_by_test_id("live-lag-segment")).to_contain_text("p50")
        expect(live.get_by_text("/hooks/hubspot/")).to_be_visible()
        screenshot(page, "live-source-page")

        # An admin turns live updates off: the next edit waits for the scheduled sync.
        live.get_by_role("button", name="Turn live updates off").click()
        expect(page.locator("#live").get_by_test_id("live-state")).to_have_text("Off")
        source.refresh_from_db()
        assert source.live_enabled is False
    finally:
        stop(worker)
        celery_app.control.purge()

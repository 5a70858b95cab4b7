"""The whole Add Source wizard in Chromium against the HubSpot sandbox, ending on the source page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from hubsync.models import AuditEvent
from sources.models import Source, SyncRun
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "source_wizard"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_whole_wizard_against_the_sandbox(hubspot_sandbox, page, owner, workspace, settings):
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_AUTHORIZE_URL = ""
    log_in(page, owner, base)

    # Connections → Sources (empty) → Catalog → search HubSpot → select it → Add Source.
    page.goto(base + "/sources/")
    shot(page, "01_sources_empty")
    page.get_by_role("link", name="Connect your first source").click()
    page.wait_for_url(re.compile(r"/sources/catalog/$"))
    page.get_by_role("searchbox", name="Search the catalog").press_sequentially("HubSpot")
    page.locator(".catalog-card", has_text="HubSpot").click()
    shot(page, "02_catalog")
    page.get_by_role("link", name="Add Source").click()

    # Step 1: name and label.
    page.wait_for_url(re.compile(r"/sources/new/$"))
    page.fill("#id_name", "HubSpot EU")
    page.fill("#id_label", "Demo portal")
    shot(page, "03_step1_name")
    page.get_by_role("button", name="Next").click()

    # Step 2: log in to HubSpot; on the (sandbox) consent page choose an account and connect.
    page.wait_for_url(re.compile(r"/sources/new/connect/$"))
    shot(page, "04_step2_login")
    page.get_by_role("button", name="Log in to HubSpot").click()
    page.wait_for_url(re.compile(r"/sandbox/hubspot/oauth/authorize"))
    page.get_by_text("Globex Demo (EU)").click()
    shot(page, "05_consent")
    page.get_by_role("button", name="Connect app").click()

    # Back in hubsync, the login step shows the account chosen: Next (the guide's step 5).
    page.wait_for_url(re.compile(r"/sources/new/connect/$"))
    expect(page.get_by_text("globex-demo.example", exact=True)).to_be_visible()
    page.get_by_role("link", name="Next").click()

    # Step 3: schema name, derived from the name.
    page.wait_for_url(re.compile(r"/sources/new/schema/$"))
    assert page.input_value("#id_schema_name") == "hubspot_eu"
    expect(page.get_by_text("globex-demo.example", exact=True)).to_be_visible()
    shot(page, "06_step3_schema")
    page.fill("#id_schema_name", "Bad Name")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Use lowercase letters, digits and underscores only")).to_be_visible()
    page.fill("#id_schema_name", "hubspot_eu")
    page.get_by_role("button", name="Next").click()

    # Step 4: selective sync, each collection with its live property count.
    page.wait_for_url(re.compile(r"/sources/new/sync/$"))
    for label in ("Contacts", "Companies", "Deals", "Tickets"):
        option = page.locator("label.collection-option", has_text=label)
        assert re.search(r"\d+ properties", option.inner_text()), option.inner_text()
    assert page.locator("#id_sync_interval option:checked").inner_text() == "Every 3 hours"
    page.fill("#id_start_date", "2024-01-01")
    page.select_option("#id_sync_interval", label="Every 6 hours")
    page.locator("label.collection-option", has_text="Tickets").locator("input").uncheck()
    shot(page, "07_step4_selective_sync")
    page.get_by_role("button", name="Finish").click()

    # The source page: created disabled, with the checklist of what is left.
    page.wait_for_url(re.compile(r"/sources/\d+/$"))
    shot(page, "08_source_overview")
    source = Source.objects.get(workspace=workspace)
    assert source.enabled is False and source.hub_id == 1002 and source.schema_name == "hubspot_eu"
    assert str(source.start_date) == "2024-01-01" and source.sync_interval.total_seconds() == 6 * 3600
    assert sorted(source.collections.filter(selected=True).values_list("collection", flat=True)) == [
        "companies",
        "contacts",
        "deals",
    ]
    checklist = page.locator(".setup-checklist")
    assert checklist.locator("li.done").count() == 1  # connected
    for title in ("Add a Segment Profiles destination", "Create a data model", "Add a mapping", "Enable the mapping"):
        assert checklist.locator("li.todo", has_text=title).count() == 1
    expect(page.get_by_text("globex-demo.example").first).to_be_visible()

    # Enabling now is refused, with the explanation.
    checklist.get_by_role("button", name="Enable").click()
    page.wait_for_url(re.compile(r"/sources/\d+/$"))
    expect(page.get_by_text("This source cannot be enabled yet")).to_be_visible()
    shot(page, "09_enable_refused")
    source.refresh_from_db()
    assert source.enabled is False and not SyncRun.objects.filter(source=source).exists()

    # The other tabs.
    page.get_by_role("link", name="Models", exact=True).click()
    expect(page.get_by_text("No data models yet")).to_be_visible()
    shot(page, "10_models")
    page.get_by_role("main").get_by_role("link", name="Settings", exact=True).click()
    expect(page.get_by_role("heading", name="Selective sync")).to_be_visible()
    # Settings → Basic settings holds the Enable source switch; switching it on is refused the same way.
    basic = page.locator("#basic-settings")
    toggle = basic.get_by_role("switch", name="Enable source")
    expect(toggle).to_have_attribute("aria-checked", "false")
    toggle.click()
    page.wait_for_url(re.compile(r"/sources/\d+/settings/$"))
    expect(page.get_by_text("This source cannot be enabled yet")).to_be_visible()
    expect(page.locator("#basic-settings").get_by_role("switch", name="Enable source")).to_have_attribute(
        "aria-checked", "false"
    )
    shot(page, "11_settings")
    assert AuditEvent.objects.filter(workspace=workspace, verb="create", object_id=str(source.pk)).exists()

"""Schema drift in Chromium: a mapping delivers HubSpot contacts to a Segment sandbox space; somebody renames (or
deletes) a property the mapping sends, in the HubSpot sandbox; "Sync now" runs the real extraction engine, which
detects it and pauses the mapping. The dashboard flags the mapping, the mapping page (or the drift page) shows the
exact change, the one-click fix repairs model and mapping from the browser, the mapping resumes and delivers the
new property's values to Segment, and the dashboard is clean again."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import expect

from mappings.models import Mapping, MappingIssue
from models_app.models import DataModel
from sources.models import Source, SyncRun
from tests.browser.conftest import log_in, screenshot
from tests.factories import (
    DataModelFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
)
from tests.sources.extract_helpers import make_source

pytestmark = pytest.mark.browser

PORTAL = 3631


@pytest.fixture
def eager_celery():
    """Tasks run inline: "Sync now" runs the sync in live_server's request thread, and the deliveries it starts
    (and the one a fix starts) run right after it, against the Segment sandbox on the same server."""
    from hubsync.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def hubspot(hubspot_sandbox, settings):
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    hubspot_sandbox.set_knobs(rate_limits=False)
    hubspot_sandbox.seed(PORTAL, contacts=6, companies=0, deals=0, tickets=0, name="Drift portal")
    return hubspot_sandbox


def _contact_with_email(hubspot) -> tuple[int, str]:
    body = requests.get(
        hubspot.base_url + "/crm/v3/objects/contacts",
        params={"limit": 100, "properties": "email"},
        headers=hubspot.headers(PORTAL),
        timeout=30,
    ).json()
    contact = next(c for c in body["results"] if c["properties"].get("email"))
    return int(contact["id"]), contact["properties"]["email"]


@pytest.fixture
def pipeline(hubspot, segment_sandbox, workspace, eager_celery):
    """Source → model (email, loyalty_tier, firstname) → an enabled mapping sending loyalty_tier as trait `tier`,
    and a second mapping of the same model that does not send it; the first sync delivered both."""
    hubspot.add_property("loyalty_tier", portal=PORTAL, collection="contacts", label="Loyalty tier")
    contact_id, email = _contact_with_email(hubspot)
    hubspot.set_properties(contact_id, {"loyalty_tier": "silver"}, portal=PORTAL)
    source = make_source(
        workspace,
        hubspot,
        hub_id=PORTAL,
        name="Acme CRM",
        schema_name="acme_crm",
        enabled=True,
        next_sync_at=timezone.now() + timedelta(hours=3),
    )
    inbox = segment_sandbox.with_workspace("Drift space")
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(
        destination=destination, name="Drift space", write_key=inbox.write_key, region="sandbox"
    )
    model = DataModelFactory(
        source=source, collection="contacts", name="Contacts", columns=["email", "loyalty_tier", "firstname"]
    )
    tiers = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Loyalty tiers",
        identifiers={"user_id": "email"},
        traits=[["loyalty_tier", "tier"], ["firstname", "first_name"]],
        enabled=True,
    )
    names = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Names only",
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"]],
        enabled=True,
    )
    from sources.runs import create_run

    run = create_run(source=source, trigger=SyncRun.Trigger.FIRST)
    from sources.extraction import execute_run

    assert execute_run(run_id=run.pk).status == "succeeded"
    assert inbox.profile(email)["traits"]["tier"] == "silver"
    return {
        "source": source,
        "model": model,
        "tiers": tiers,
        "names": names,
        "inbox": inbox,
        "contact": contact_id,
        "email": email,
    }


def _sync_now(page, base: str, source: Source) -> None:
    page.goto(f"{base}/sources/{source.pk}/")
    page.get_by_role("button", name="Sync now").click()
    page.wait_for_url(re.compile(rf"/sources/{source.pk}/"))
    assert source.runs.order_by("-pk").first().status == "succeeded"


def _mapping_row(page, mapping: Mapping):
    return page.locator("#dash-mappings tbody tr", has=page.get_by_role("link", name=mapping.name, exact=True))


def test_renamed_property_pauses_then_repoint_from_the_mapping_page(hubspot, pipeline, page, owner, workspace):
    base = hubspot.server_url
    source, tiers, names, inbox = pipeline["source"], pipeline["tiers"], pipeline["names"], pipeline["inbox"]
    log_in(page, owner, base)

    # In HubSpot, loyalty_tier is replaced by loyalty_level under the same label, and a contact gets a value.
    hubspot.delete_property("loyalty_tier", portal=PORTAL, collection="contacts")
    hubspot.add_property("loyalty_level", portal=PORTAL, collection="contacts", label="Loyalty tier")
    hubspot.set_properties(pipeline["contact"], {"loyalty_level": "gold"}, portal=PORTAL)
    _sync_now(page, base, source)
    tiers.refresh_from_db()
    names.refresh_from_db()
    assert tiers.paused and not names.paused

    # The dashboard shows the mapping paused with the change to review; the other mapping of the model is
    # flagged (its model lists the column) but keeps delivering.
    page.locator(".sidebar").get_by_role("link", name="Dashboard").click()
    row = _mapping_row(page, tiers)
    expect(row).to_have_attribute("data-health", "paused")
    expect(row.locator(".badge.bad")).to_have_text("Paused: schema change")
    expect(row).to_contain_text("Paused by schema drift")
    expect(row.locator("a.drift-flag")).to_have_text("1 schema change to review")
    expect(_mapping_row(page, names).locator("a.drift-flag")).to_have_text("1 schema change to review")
    expect(_mapping_row(page, names)).to_have_attribute("data-health", "healthy")
    screenshot(page, "drift_01_dashboard_paused")

    # The mapping page says exactly what changed, where the mapping uses it, and offers the fixes.
    row.get_by_role("link", name=tiers.name, exact=True).click()
    page.wait_for_url(re.compile(rf"/mappings/{tiers.pk}/$"))
    expect(page.locator(".head-state")).to_contain_text("paused: schema change")
    issue = page.locator(".drift-issue")
    expect(issue).to_have_count(1)
    expect(issue).to_contain_text("paused")
    expect(issue).to_contain_text("renamed from loyalty_tier to loyalty_level")
    expect(issue).to_contain_text("trait tier")
    expect(issue.get_by_role("button")).to_have_text(
        ["Use loyalty_level instead", "Remove it from the model and mappings", "Resume without changes"]
    )
    screenshot(page, "drift_02_mapping_page_issue")

    issue.get_by_role("button", name="Use loyalty_level instead").click()
    page.wait_for_url(re.compile(rf"/mappings/{tiers.pk}/$"))
    expect(page.locator(".flash.success")).to_contain_text(
        "The data model “Contacts” and its mappings now use loyalty_level. The mapping “Loyalty tiers” is "
        "delivering again."
    )
    expect(page.locator(".drift-issue")).to_have_count(0)
    expect(page.locator(".head-state")).not_to_contain_text("paused")
    expect(page.locator(".mapping-config")).to_contain_text("loyalty_level")
    expect(page.locator(".mapping-config")).not_to_contain_text("loyalty_tier")
    runs = page.locator(".mapping-deliveries table.runs tbody tr")
    expect(runs).to_have_count(2)  # the first sync's delivery, and the one the fix started (nothing in between)
    expect(runs.first.locator("td").nth(3)).to_have_text("1")  # sent: the one contact whose tier changed
    expect(runs.first.locator("td").last).to_have_text(re.compile(r"^\d+(\.\d+)? s$"))  # "0.04 s", not 0:00:00.04
    screenshot(page, "drift_03_mapping_page_fixed")
    tiers.refresh_from_db()
    assert not tiers.paused and tiers.traits[0] == ["loyalty_level", "tier"]
    assert pipeline["model"].__class__.objects.get(pk=pipeline["model"].pk).columns == [
        "email",
        "loyalty_level",
        "firstname",
    ]
    # The resumed mapping delivered what waited: the contact's new value, under the same trait name.
    assert inbox.profile(pipeline["email"])["traits"]["tier"] == "gold"
    # One click repaired the model and both mappings: both issues are resolved.
    assert set(MappingIssue.objects.values_list("resolution", flat=True)) == {"repointed"}

    # The dashboard no longer flags it.
    page.locator(".sidebar").get_by_role("link", name="Dashboard").click()
    row = _mapping_row(page, tiers)
    expect(row).to_have_attribute("data-health", "healthy")
    expect(page.locator("a.drift-flag")).to_have_count(0)
    screenshot(page, "drift_04_dashboard_clean")


def test_deleted_property_remove_fix_from_the_drift_page(hubspot, pipeline, page, owner, viewer, workspace, browser):
    base = hubspot.server_url
    source, tiers, names = pipeline["source"], pipeline["tiers"], pipeline["names"]
    hubspot.delete_property("loyalty_tier", portal=PORTAL, collection="contacts")
    log_in(page, owner, base)
    _sync_now(page, base, source)

    page.goto(base + "/")
    # The model lists the column too, so the other mapping is flagged (not paused): it keeps delivering, and
    # its page lists the change without claiming there is nothing to review.
    expect(_mapping_row(page, names)).to_have_attribute("data-health", "healthy")
    _mapping_row(page, names).locator("a.drift-flag").click()
    page.wait_for_url(re.compile(rf"/mappings/{names.pk}/drift/$"))
    expect(page.locator(".drift-issue .badge.warn")).to_have_text("flagged")
    expect(page.locator(".drift-issue")).to_contain_text("Used as data model column")
    expect(page.get_by_text("Nothing to review")).to_have_count(0)
    expect(page.locator(".page-head")).not_to_contain_text("paused")
    screenshot(page, "drift_05a_drift_page_flagged")

    page.locator(".sidebar").get_by_role("link", name="Dashboard").click()
    _mapping_row(page, tiers).locator("a.drift-flag").click()
    page.wait_for_url(re.compile(rf"/mappings/{tiers.pk}/drift/$"))
    expect(page.locator(".page-head")).to_contain_text("paused by schema drift")
    issue = page.locator(".drift-issue")
    expect(issue).to_contain_text("HubSpot property “Loyalty tier” (loyalty_tier) was deleted.")
    expect(issue.get_by_role("button")).to_have_text(
        ["Remove it from the model and mappings", "Resume without changes"]
    )
    screenshot(page, "drift_05_drift_page_deleted")

    # A viewer sees the same change but no fix.
    viewer_context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        viewer_page = viewer_context.new_page()
        log_in(viewer_page, viewer, base)
        viewer_page.goto(page.url)
        expect(viewer_page.locator(".drift-issue")).to_contain_text("(loyalty_tier) was deleted.")
        expect(viewer_page.locator(".drift-issue button")).to_have_count(0)
        expect(viewer_page.locator(".drift-panel")).to_contain_text("An admin or owner of this workspace can apply")
        screenshot(viewer_page, "drift_06_drift_page_viewer")
    finally:
        viewer_context.close()

    issue.get_by_role("button", name="Remove it from the model and mappings").click()
    page.wait_for_url(re.compile(rf"/mappings/{tiers.pk}/drift/$"))
    expect(page.locator(".flash.success")).to_contain_text(
        "loyalty_tier was removed from the data model “Contacts” and its mappings. The mapping “Loyalty tiers” is "
        "delivering again."
    )
    expect(page.locator(".drift-issue")).to_have_count(0)
    expect(page.locator(".page-head")).not_to_contain_text("paused")
    expect(page.get_by_text("Nothing to review")).to_be_visible()
    screenshot(page, "drift_07_drift_page_fixed")
    page.get_by_role("link", name="Back to the mapping →").click()
    page.wait_for_url(re.compile(rf"/mappings/{tiers.pk}/$"))
    tiers.refresh_from_db()
    assert not tiers.paused and tiers.traits == [["firstname", "first_name"]]
    assert DataModel.objects.get(pk=pipeline["model"].pk).columns == ["email", "firstname"]
    assert set(MappingIssue.objects.values_list("resolution", flat=True)) == {"removed"}  # both mappings' flags

    page.goto(base + "/")
    expect(page.locator("a.drift-flag")).to_have_count(0)
    expect(_mapping_row(page, tiers)).to_have_attribute("data-health", "healthy")

"""Issue 5's proof, end to end in Chromium: a new user signs up, adds a HubSpot source through the sandbox's OAuth
consent page, adds a Segment Profiles destination with a sandbox Profile Space, builds a data model with the live
preview, maps it (identifier + traits), tests it with a real record, enables the mapping and then the source, and
the first sync delivers every contact with an email to the Profile Space with the traits HubSpot holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from playwright.sync_api import expect

from mappings.models import DeliveryState, Mapping
from sources.models import Source, SyncRun

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "e2e"
PASSWORD = "a long enough passphrase"
PORTAL = 3005  # a small portal of its own, so the first sync and its delivery take a second or two
CONTACTS = 40
PROPS = ["email", "firstname", "lastname", "loyalty_points", "signup_date"]


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def hubspot_contacts(hubspot_sandbox) -> list[dict]:
    """Every contact of the portal with the mapped properties, read through the sandbox's own CRM API."""
    headers = hubspot_sandbox.headers(PORTAL)
    url, params, found = hubspot_sandbox.base_url + "/crm/v3/objects/contacts", {"limit": 100}, []
    params["properties"] = ",".join(PROPS)
    while True:
        body = requests.get(url, params=params, headers=headers, timeout=30).json()
        found += body["results"]
        after = ((body.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return found
        params["after"] = after


def expected_traits(props: dict) -> dict:
    """What the mapping defines, written out by hand from HubSpot's raw values (numbers → numbers, a date →
    midnight UTC in ISO-8601, empty → null, the default of a new mapping)."""
    points = props.get("loyalty_points")
    signup = props.get("signup_date")
    return {
        "first_name": props.get("firstname") or None,
        "last_name": props.get("lastname") or None,
        "loyalty_points": float(points) if points not in (None, "") else None,
        "signup_date": f"{signup}T00:00:00.000Z" if signup else None,
    }


@pytest.fixture
def eager_celery():
    """Run Celery tasks inline: enabling the source then runs the first sync, and the deliveries it starts, in
    live_server's request thread (threaded, so the sync can call the HubSpot sandbox on the same server)."""
    from hubsync.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def test_sign_up_to_profiles_in_segment(hubspot_sandbox, segment_sandbox, eager_celery, page, settings):
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_AUTHORIZE_URL = ""
    settings.SANDBOX = True
    hubspot_sandbox.seed(
        PORTAL, contacts=CONTACTS, companies=5, deals=5, tickets=0, name="E2E Small", domain="e2e-small.example"
    )
    inbox = segment_sandbox.with_workspace("E2E space")  # a fresh workspace: an empty inbox of its own

    # Sign up: the new user owns a fresh workspace and lands on the empty dashboard.
    page.goto(base + "/accounts/signup/")
    page.fill("input[name=email]", "founder@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url(base + "/")
    shot(page, "01_dashboard")

    # The guide's path: Connections → Catalog → search for HubSpot → select it → Add Source.
    page.locator(".sidebar").get_by_role("link", name="Catalog").click()
    page.wait_for_url(re.compile(r"/sources/catalog/$"))
    page.get_by_role("searchbox", name="Search the catalog").press_sequentially("HubSpot")
    page.locator(".catalog-card", has_text="HubSpot").click()
    page.get_by_role("link", name="Add Source").click()
    page.wait_for_url(re.compile(r"/sources/new/$"))
    page.fill("#id_name", "HubSpot")
    page.get_by_role("button", name="Next").click()
    page.wait_for_url(re.compile(r"/sources/new/connect/$"))
    page.get_by_role("button", name="Log in to HubSpot").click()
    page.wait_for_url(re.compile(r"/sandbox/hubspot/oauth/authorize"))
    page.get_by_text("E2E Small").click()
    shot(page, "02_consent")
    page.get_by_role("button", name="Connect app").click()
    # Back in hubsync after logging in: Next, verify the schema name, Next.
    page.wait_for_url(re.compile(r"/sources/new/connect/$"))
    page.get_by_role("link", name="Next").click()
    page.wait_for_url(re.compile(r"/sources/new/schema/$"))
    expect(page.get_by_text("e2e-small.example", exact=True)).to_be_visible()
    page.get_by_role("button", name="Next").click()
    page.wait_for_url(re.compile(r"/sources/new/sync/$"))
    for label in ("Companies", "Deals", "Tickets"):
        page.locator("label.collection-option", has_text=label).locator("input").uncheck()
    page.locator("label.collection-option", has_text="Contacts").locator("input").check()
    page.get_by_role("button", name="Finish").click()
    page.wait_for_url(re.compile(r"/sources/\d+/$"))
    source = Source.objects.get()
    assert source.hub_id == PORTAL and not source.enabled
    source_url = f"{base}/sources/{source.pk}/"
    shot(page, "03_source_checklist")

    # Add destination (from the checklist): Segment Profiles and its Profile Space; the sandbox write key picks
    # the sandbox region. Create destination goes on to the source's Models tab, where the guide goes next.
    page.locator(".setup-checklist").get_by_role("link", name="Add a Segment Profiles destination").click()
    page.wait_for_url(re.compile(r"/destinations/new/"))
    page.get_by_label("Segment Profiles").check()
    page.fill("#id_name", "Segment")
    page.fill("#id_space_name", "E2E space")
    page.fill("#id_write_key", inbox.write_key)
    expect(page.locator("#id_region")).to_have_value("sandbox")
    shot(page, "04_destination_and_space")
    page.get_by_role("button", name="Create destination").click()
    page.wait_for_url(re.compile(rf"/sources/{source.pk}/models/#create-model$"))

    # The source's Models tab → Create model: contacts, four columns besides the email; the preview follows.
    page.get_by_role("link", name="Create model").first.click()
    page.wait_for_url(re.compile(r"/models/new/"))
    page.locator(".collection-card", has_text="Contacts").click()
    page.wait_for_url(re.compile(r"collection=contacts"))
    expect(page.locator("#preview .preview-table tbody tr").first).to_be_visible()
    for prop in PROPS:
        page.locator("label.col-option", has=page.locator(f"input[value={prop}]")).click()
    expect(page.locator("#selected-count")).to_have_text(f"{len(PROPS)} selected")
    expect(page.locator("#preview .th-name", has_text="signup_date")).to_be_visible()
    assert page.locator("#preview .preview-table tbody tr").count() == 10
    assert "@" in page.locator("#preview .preview-table").inner_text()
    shot(page, "05_model_preview")
    page.fill("#id_name", "Contacts")
    page.get_by_role("button", name="Create model").click()
    page.wait_for_url(re.compile(r"/models/\d+/$"))

    # Add mapping from the Models tab: user_id = email, the other columns as traits.
    page.goto(source_url + "models/")
    page.locator("table.models-list tr", has_text="Contacts").get_by_role("link", name="Add mapping").click()
    page.wait_for_url(re.compile(r"/mappings/new/"))
    page.locator("#id_user_id").wait_for()
    page.select_option("#id_user_id", "email")
    rows = page.locator("#trait-rows tr.trait-row")
    traits = {
        "firstname": "first_name",
        "lastname": "last_name",
        "loyalty_points": "loyalty_points",
        "signup_date": "signup_date",
    }
    for i, (column, trait) in enumerate(traits.items()):
        if i:
            page.get_by_role("button", name="+ Add trait").click()
        rows.nth(i).locator("select").select_option(column)
        rows.nth(i).locator("input").fill(trait)
    shot(page, "06_mapping_editor")
    page.get_by_role("button", name=re.compile("Save mapping")).click()
    page.wait_for_url(re.compile(r"/mappings/\d+/$"))
    mapping = Mapping.objects.get()
    assert mapping.name == "Contacts"  # after its model; the Profile Space is shown next to it, not repeated in it
    mapping_url = page.url
    assert not mapping.enabled and mapping.identifiers["user_id"] == "email"

    # Test with a real record read live from HubSpot: the exact message.
    page.get_by_role("link", name="First records").click()
    picks = page.locator(".record-picks li a")
    picks.first.click()
    message = json.loads(page.locator("[data-testid=message-json]").inner_text())
    assert message["type"] == "identify" and set(message["traits"]) == set(traits.values())
    shot(page, "07_test_message")

    # Enable the mapping; the source's checklist is complete; Settings → Basic settings → Enable source starts
    # the first sync at once, and the page links to it.
    page.get_by_role("switch").click()
    expect(page.locator(".status-toggle .switch.on")).to_be_visible()
    page.goto(source_url)
    expect(page.locator(".setup-checklist li.todo:not([data-step=enable])")).to_have_count(0)
    page.get_by_role("main").get_by_role("link", name="Settings", exact=True).click()
    page.locator("#basic-settings").get_by_role("switch", name="Enable source").click()
    page.wait_for_url(re.compile(r"/sources/\d+/settings/$"))
    expect(page.locator("#basic-settings").get_by_role("switch", name="Enable source")).to_have_attribute(
        "aria-checked", "true"
    )
    shot(page, "08_source_enabled")
    source.refresh_from_db()
    assert source.enabled
    run = SyncRun.objects.get(source=source)
    assert run.trigger == SyncRun.Trigger.FIRST and run.status == SyncRun.Status.SUCCEEDED, run.error
    page.get_by_role("link", name="follow it").click()
    page.wait_for_url(re.compile(rf"/sources/{source.pk}/runs/{run.pk}/$"))

    # The inbox holds one profile per contact with an email, with exactly HubSpot's values as traits.
    contacts = hubspot_contacts(hubspot_sandbox)
    assert len(contacts) == CONTACTS
    with_email = {c["properties"]["email"]: c for c in contacts if c["properties"].get("email")}
    without_email = [c for c in contacts if not c["properties"].get("email")]
    assert with_email and without_email  # this seed has both kinds (38 + 2)
    page.goto(f"{segment_sandbox.base_url}/inbox/{inbox.write_key}.json?view=profiles&page_size=5000")
    profiles = {p["userId"]: p for p in json.loads(page.locator("body").inner_text())["results"]}
    shot(page, "09_inbox_profiles")
    assert set(profiles) == set(with_email)
    for email, contact in with_email.items():
        assert profiles[email]["traits"] == expected_traits(contact["properties"]), email

    # Contacts without an email are rejected, with the reason, and the mapping page says so.
    rejected = DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.REJECTED)
    assert sorted(r.object_id for r in rejected) == sorted(int(c["id"]) for c in without_email)
    page.goto(mapping_url)
    expect(page.get_by_text("records delivered", exact=True).locator("..")).to_contain_text(str(len(with_email)))
    for contact in without_email:
        row = page.get_by_role("row", name=re.compile(rf"^{contact['id']} No User ID"))
        expect(row).to_contain_text("'email' is empty for this record")
    # Why, in aggregate, and the fix.
    reasons = page.get_by_test_id("rejected-reasons")
    expect(reasons).to_contain_text(f"{len(without_email)} records were not sent to Segment")
    expect(reasons.locator("[data-kind=no_identifier]")).to_contain_text("map an Anonymous ID")
    shot(page, "10_mapping_after_sync")

    # The record tested before the sync got exactly the message the test showed (same traits, same user).
    assert profiles[message["userId"]]["traits"] == message["traits"]

"""In Chromium: add a Segment Profiles destination and a sandbox Profile Space, check its connection, map an
existing data model with the editor (identifier and trait rows), test the mapping with a record read live from
the HubSpot sandbox, send it to the Segment sandbox, and enable the mapping."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from playwright.sync_api import expect

from mappings.models import Destination, Mapping, ProfileSpace
from models_app.models import DataModel
from sources import selectors
from tests.factories import DataModelFactory, SourceCollectionFactory, SourceFactory

from .test_source_wizard import log_in

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "mapping_editor"
SANDBOX_KEY = "sbx_seg_DefaultWorkspaceKey00001"

SCHEMA = {
    "email": {"type": "string", "fieldType": "text", "label": "Email", "groupName": "contactinformation"},
    "firstname": {"type": "string", "fieldType": "text", "label": "First Name", "groupName": "contactinformation"},
    "lastname": {"type": "string", "fieldType": "text", "label": "Last Name", "groupName": "contactinformation"},
    "lifecyclestage": {"type": "enumeration", "fieldType": "radio", "label": "Lifecycle Stage", "groupName": "x"},
}


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def contacts_model(hubspot_sandbox, workspace) -> DataModel:
    tok = hubspot_sandbox.token(1001)
    source = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        schema_name="hubspot",
        hub_id=1001,
        hub_domain="acme.example",
        token=tok["refresh_token"],
        access_token=tok["access_token"],
        access_token_expires_at=timezone.now() + timedelta(seconds=tok["expires_in"]),
    )
    SourceCollectionFactory(source=source, collection="contacts", properties=SCHEMA)
    return DataModelFactory(source=source, collection="contacts", name="Contacts", columns=list(SCHEMA))


def test_destination_space_mapping_test_and_enable(
    hubspot_sandbox, segment_sandbox, contacts_model, page, owner, settings
):
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.SANDBOX = True
    assert segment_sandbox.write_key == SANDBOX_KEY
    log_in(page, owner, base)

    # Connections → Destinations (empty) → Add destination.
    page.goto(base + "/destinations/")
    shot(page, "01_destinations_empty")
    page.get_by_role("link", name="Add destination").click()
    page.wait_for_url(re.compile(r"/destinations/new/$"))
    page.get_by_label("Segment Profiles").check()
    page.fill("#id_name", "Segment")
    shot(page, "02_add_destination")
    page.get_by_role("button", name="Create destination").click()

    # Settings tab: add a Profile Space in the sandbox region, then check its connection.
    page.wait_for_url(re.compile(r"/destinations/\d+/settings/"))
    destination = Destination.objects.get()
    page.fill("#id_name", "Sandbox space")
    page.fill("#id_write_key", SANDBOX_KEY)
    page.select_option("#id_region", "sandbox")
    shot(page, "03_add_space")
    page.get_by_role("button", name="Add Profile Space").click()
    page.wait_for_url(re.compile(r"/settings/#space-\d+$"))
    assert SANDBOX_KEY not in page.content()
    page.get_by_role("button", name="Check connection").click()
    result = page.locator(".check-result")
    result.wait_for()
    assert "Connection works" in result.inner_text() and "knows this write key" in result.inner_text()
    shot(page, "04_space_checked")

    # Overview → Add mapping: the editor for the existing model.
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("link", name="Add mapping").first.click()
    page.wait_for_url(re.compile(r"/mappings/new/"))
    page.select_option("#id_data_model", str(contacts_model.pk))  # htmx swaps in the model's columns
    page.locator("#id_user_id").wait_for()
    page.select_option("#id_user_id", "email")
    expect(page.locator("#id_group_id")).to_be_hidden()  # Identify: no Group ID
    rows = page.locator("#trait-rows tr.trait-row")
    rows.nth(0).locator("select").select_option("firstname")
    assert rows.nth(0).locator("input").input_value() == "first_name"  # suggested from the label
    page.get_by_role("button", name="+ Add trait").click()
    rows.nth(1).locator("select").select_option("lastname")
    page.get_by_role("button", name="+ Add trait").click()
    rows.nth(2).locator("select").select_option("lifecyclestage")
    rows.nth(2).locator("input").fill("stage")
    page.get_by_role("button", name="+ Add trait").click()
    rows.nth(3).locator("select").select_option("id")
    assert rows.nth(3).locator("input").input_value() == "hubspot_id"
    page.get_by_role("button", name="+ Add trait").click()
    rows.nth(4).locator("[data-remove-trait]").click()  # add/remove rows
    assert rows.count() == 4
    # Choosing Group explains what it needs and shows the Group ID.
    page.locator("input[name=action][value=group]").check()
    expect(page.locator("#id_group_id")).to_be_visible()
    page.locator("input[name=action][value=identify]").check()
    shot(page, "05_editor")

    # Without an identifier the editor refuses, explains, and keeps what was entered.
    page.select_option("#id_user_id", "")
    page.get_by_role("button", name=re.compile("Save mapping")).click()
    page.get_by_text("Map a User ID, an Anonymous ID or a Group ID").wait_for()
    assert not Mapping.objects.exists()
    assert page.locator("#trait-rows input[name=trait_name]").nth(2).input_value() == "stage"
    shot(page, "05b_editor_refused")
    page.select_option("#id_user_id", "email")
    page.get_by_role("button", name=re.compile("Save mapping")).click()

    # The mapping page: saved disabled; test it with a record read live from HubSpot.
    page.wait_for_url(re.compile(r"/mappings/\d+/$"))
    mapping = Mapping.objects.get()
    assert not mapping.enabled and mapping.destination == destination
    assert mapping.traits == [
        ["firstname", "first_name"],
        ["lastname", "last_name"],
        ["lifecyclestage", "stage"],
        ["id", "hubspot_id"],
    ]
    expect(page.get_by_text("This mapping is disabled.")).to_be_visible()
    page.get_by_role("link", name="First records").click()
    picks = page.locator(".record-picks li a")
    picks.first.wait_for()
    shot(page, "06_records")
    picks.first.click()
    message_box = page.locator("[data-testid=message-json]")
    message_box.wait_for()
    message = json.loads(message_box.inner_text())
    assert message["type"] == "identify" and "@" in message["userId"]
    assert set(message["traits"]) == {"first_name", "last_name", "stage", "hubspot_id"}
    shot(page, "07_preview")
    page.get_by_role("button", name="Send to Profile Space").click()
    sent = page.locator("[data-testid=send-result]")
    sent.wait_for()
    assert "Segment accepted the message" in sent.inner_text()
    assert [m["messageId"] for m in segment_sandbox.messages()] == [message["messageId"]]
    shot(page, "08_sent")

    # Enable: the Mapping Status toggle, and the source's checklist advances.
    page.get_by_role("switch").click()
    page.locator(".status-toggle .switch.on").wait_for()
    mapping.refresh_from_db()
    assert mapping.enabled
    assert {s.key: s.done for s in selectors.checklist(contacts_model.source)}["mapping_enabled"]
    page.goto(base + f"/destinations/{destination.pk}/")
    expect(page.locator(".status-toggle .switch.on")).to_have_count(1)
    shot(page, "09_destination_overview")
    # The overview's toggle switches in place (htmx), without leaving the page.
    page.get_by_role("switch").click()
    page.locator(".status-toggle .switch:not(.on)").wait_for()
    assert page.url.endswith(f"/destinations/{destination.pk}/")
    mapping.refresh_from_db()
    assert not mapping.enabled
    assert ProfileSpace.objects.get().write_key == SANDBOX_KEY

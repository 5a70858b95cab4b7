"""In Chromium: in the mapping editor, choose what happens when a record is archived in HubSpot ("Set a trait"),
see the editor refuse a trait name that a mapped trait already has (next to the field), save, find the choice
on the mapping page, and preview a record archived in the HubSpot sandbox in the test panel."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.factories import DestinationFactory, MappingFactory, ProfileSpaceFactory

from .conftest import screenshot
from .test_mapping_editor import SANDBOX_KEY, contacts_model  # noqa: F401 (a fixture)
from .test_source_wizard import log_in

pytestmark = pytest.mark.browser


def test_set_a_trait_for_archived_records_in_the_editor(
    hubspot_sandbox,
    segment_sandbox,
    contacts_model,  # noqa: F811
    page,
    owner,
    workspace,
    settings,
):
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.SANDBOX = True
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Sandbox", write_key=SANDBOX_KEY, region="sandbox")
    mapping = MappingFactory(
        destination=destination,
        data_model=contacts_model,
        profile_space=space,
        name="Contacts",
        identifiers={"user_id": "email", "anonymous_id": None, "group_id": None},
        traits=[["firstname", "first_name"], ["lastname", "last_name"]],
        options={"empty_values": "null"},
    )
    [archived_id] = hubspot_sandbox.mutate(1001, "contacts", archive=1, seed=3).archived
    log_in(page, owner, base)

    # The mapping page says what happens today: nothing.
    page.goto(base + f"/mappings/{mapping.pk}/")
    expect(page.get_by_test_id("archived-behaviour")).to_contain_text("do nothing — archived records are not sent")

    # The editor: "Do nothing" is chosen; typing a trait name picks "Set a trait".
    page.get_by_role("link", name="Edit mapping").click()
    page.wait_for_url(re.compile(r"/mappings/\d+/edit/$"))
    section = page.locator("#archived-option")
    expect(section.get_by_role("heading")).to_contain_text("When a record is archived in HubSpot")
    expect(section.locator("input[name=archived_behaviour][value=nothing]")).to_be_checked()
    trait_input = section.get_by_label("Trait name")
    expect(trait_input).to_have_value("hubspot_archived")
    trait_input.fill("last_name")  # the name of a mapped trait
    expect(section.locator("input[name=archived_behaviour][value=trait]")).to_be_checked()
    page.get_by_role("button", name="Save mapping").click()

    # Refused, with the reason next to the field, and nothing saved.
    error = page.locator("#archived-option .field-error")
    expect(error).to_contain_text("The trait name 'last_name' is already mapped to the column 'lastname'")
    expect(page.locator("#archived-option input[name=archived_behaviour][value=trait]")).to_be_checked()
    section.scroll_into_view_if_needed()
    screenshot(page, "archived_option_refused")
    mapping.refresh_from_db()
    assert mapping.archived_behaviour == "nothing"

    page.locator("#archived-option").get_by_label("Trait name").fill("deleted_in_hubspot")
    page.get_by_role("button", name="Save mapping").click()
    page.wait_for_url(re.compile(r"/mappings/\d+/$"))
    mapping.refresh_from_db()
    assert (mapping.archived_behaviour, mapping.archived_trait) == ("trait", "deleted_in_hubspot")

    # The mapping page shows the choice.
    shown = page.get_by_test_id("archived-behaviour")
    expect(shown).to_contain_text("set the trait deleted_in_hubspot")
    expect(shown).to_contain_text("true on the profile of an archived record this mapping delivered")

    # The test panel lists archived records; the preview of one carries the trait true, and says a sync sends
    # nothing for it because this mapping never delivered it.
    page.get_by_role("link", name="Archived records").click()
    pick = page.locator(".record-picks a", has_text=str(archived_id))
    pick.wait_for()
    pick.click()
    note = page.get_by_test_id("archived-note")
    note.wait_for()
    expect(note).to_contain_text("this mapping never delivered it: a sync sends nothing for it")
    message = json.loads(page.get_by_test_id("message-json").inner_text())
    assert message["traits"]["deleted_in_hubspot"] is True and message["userId"]
    expect(page.get_by_role("button", name="Send to Profile Space")).to_have_count(0)
    screenshot(page, "archived_option_mapping_page")

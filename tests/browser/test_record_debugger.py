"""The record debugger in Chromium: find a rejected record by email, read why it did not arrive; then open the
mapping's rejected records and retry it. Screenshots in test-artifacts/screenshots/record_debugger/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from mappings.delivery import deliver
from mappings.models import DeliveryState
from tests.browser.conftest import log_in
from tests.factories import (
    DataModelFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
    SourceCollectionFactory,
    SourceFactory,
)
from tests.mappings.conftest import CONTACT_SCHEMA, DEFAULT_TRAITS, Mirror, contact_props

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "record_debugger"


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_debugger_finds_a_rejected_record_and_shows_why(
    segment_sandbox, live_server, page, owner, workspace, settings
):
    settings.BASE_URL = live_server.url
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot", hub_id=1234)
    SourceCollectionFactory(source=source, collection="contacts", properties=CONTACT_SCHEMA)
    mirror = Mirror(source)
    for i in range(1, 6):
        mirror.put(i, contact_props(i))
    # No email: no User ID for Segment. The mapping has an Anonymous ID column too, but it is empty as well.
    mirror.put(6, contact_props(6, email="", firstname="Nomail"))
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(
        destination=destination, name="Marketing space", write_key=segment_sandbox.write_key, region="sandbox"
    )
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=list(CONTACT_SCHEMA))
    mapping = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Contacts to profiles",
        identifiers={"user_id": "email", "anonymous_id": "company"},
        traits=DEFAULT_TRAITS,
        enabled=True,
    )
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.rejected) == (5, 1)

    base = live_server.url
    log_in(page, owner, base)
    page.goto(base + "/")
    page.get_by_role("link", name="Record debugger").click()
    page.wait_for_url(re.compile(r"/debug/records/$"))
    page.get_by_placeholder(re.compile("HubSpot record id")).fill("6")
    page.get_by_role("button", name="Look up").click()
    page.wait_for_url(re.compile(r"q=6"))

    answer = page.locator(".debug-answers")
    reason = "No User ID or Anonymous ID: 'email' and 'company' are empty for this record"
    assert "Why contact 6 did not arrive: Rejected by" in answer.inner_text()
    assert reason in answer.inner_text()
    card = page.locator(f"#mapping-{mapping.pk}")
    assert card.locator(".badge").inner_text() == "rejected"
    assert reason in card.locator(".debug-reason").inner_text()
    assert "Nomail" in page.locator(".debug-properties").inner_text()  # the mirror data
    shot(page, "01_rejected_record")

    # A delivered record by email: the profile, its traits and the messageId.
    page.get_by_placeholder(re.compile("HubSpot record id")).fill("user3@example.com")
    page.get_by_role("button", name="Look up").click()
    page.wait_for_url(re.compile(r"q=user3"))
    state = DeliveryState.objects.get(mapping=mapping, object_id=3)
    assert "Why the profile (userId user3@example.com) has its traits" in page.locator(".debug-answers").inner_text()
    assert state.message_id in page.locator(f"#mapping-{mapping.pk} .debug-facts").inner_text()
    shot(page, "02_delivered_record")

    # From the record to the mapping's rejected records, and retry it.
    page.goto(base + "/debug/records/?q=6")
    page.get_by_role("link", name="This mapping's rejected records").click()
    page.wait_for_url(re.compile(rf"/mappings/{mapping.pk}/rejected/\?object_id=6"))
    assert reason in page.locator("table.rejected").inner_text()
    shot(page, "03_rejected_list")
    page.get_by_role("button", name="Retry", exact=True).click()
    page.wait_for_load_state()
    assert "1 rejected record will be retried" in page.locator(".messages").inner_text()
    assert DeliveryState.objects.get(mapping=mapping, object_id=6).status == "retry"

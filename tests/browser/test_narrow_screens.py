"""Every main page on a phone-sized screen (390 x 844): the navigation is reachable, and nothing makes the page
wider than the screen (wide tables scroll inside their box). Screenshots in test-artifacts/screenshots/narrow/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from playwright.sync_api import expect

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

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "narrow"


def test_main_pages_fit_a_phone_screen(live_server, browser, owner, workspace):
    source = SourceFactory(workspace=workspace, name="HubSpot production portal", schema_name="hubspot")
    SourceCollectionFactory(source=source, collection="contacts", properties=CONTACT_SCHEMA)
    mirror = Mirror(source)
    for i in range(1, 4):
        mirror.put(i, contact_props(i))
    model = DataModelFactory(
        source=source, collection="contacts", name="Contacts", columns=[c for c, _ in DEFAULT_TRAITS if c != "id"]
    )
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Production", write_key="k", region="sandbox")
    mapping = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Contacts to profiles",
        identifiers={"user_id": "email"},
        traits=DEFAULT_TRAITS,
    )
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    log_in(context, owner, live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "dashboard": reverse("dashboard"),
        "sources": reverse("sources:list"),
        "source": reverse("sources:detail", args=[source.pk]),
        "mapping": reverse("mappings:mapping_detail", args=[mapping.pk]),
        "alerts": reverse("alerts"),
        "debugger": reverse("record_debugger") + "?q=user1@example.com",
        "members": reverse("members"),
    }
    try:
        for name, url in pages.items():
            page.goto(live_server.url + url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{name}: the page is {overflow}px wider than a 390px screen"
            # The navigation is on screen, not pushed off to the side.
            expect(page.locator(".sidebar nav").get_by_role("link", name="Dashboard")).to_be_in_viewport()
    finally:
        context.close()

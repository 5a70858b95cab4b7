"""Every page of the workflow on a phone-sized screen (390 x 844), against the HubSpot sandbox: the Add Source
wizard driven step by step, the source page's tabs, Create Model (collection picker, builder with its live preview),
the model page, the destination, the Profile Space form, the mapping editor and page, the run pages, the record
debugger, alerts and settings. On each: nothing makes the page wider than the screen (wide data tables scroll inside
their own box, lists become cards), and the page's primary buttons and Mapping Status switches are on screen, not
cut off at the right. The sidebar is a one-line header whose Menu opens without JavaScript.

Screenshots in test-artifacts/screenshots/narrow/ (14_model_builder.png is docs/screenshots/model_builder_390.png)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from mappings.models import DeliveryState
from sources.models import Source, SyncRun
from tests.browser.conftest import log_in
from tests.factories import (
    DataModelFactory,
    DeliveryRunFactory,
    DeliveryStateFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
    SourceFactory,
    SyncRunFactory,
)
from tests.mappings.conftest import Mirror, contact_props
from tests.models_app.test_views import make_source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "narrow"
PHONE = {"width": 390, "height": 844}
# What must be on screen whole: the primary action of the page and every Mapping Status switch.
IMPORTANT = ".page :is(button.primary, .button.primary, .switch)"


def check_fits(page, name: str, *, primary: bool = True) -> None:
    """The page is no wider than the screen, and each visible primary button / switch lies inside the screen's
    width (scrolled to vertically, as a user would)."""
    page.wait_for_load_state("networkidle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert inner_width == PHONE["width"]
    assert scroll_width <= inner_width, f"{name}: the page is {scroll_width}px wide on a {inner_width}px screen"
    important = [e for e in page.locator(IMPORTANT).all() if e.is_visible()]
    if primary:
        assert important, f"{name}: no primary button or switch on the page"
    for element in important:
        element.scroll_into_view_if_needed()
        expect(element).to_be_in_viewport(ratio=1)
        box = element.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= inner_width, f"{name}: {element} is cut off"


@pytest.fixture
def phone(browser, owner, hubspot_sandbox, settings):
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_AUTHORIZE_URL = ""
    context = browser.new_context(viewport=PHONE, has_touch=True)
    log_in(context, owner, base)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_the_add_source_wizard_fits_a_phone(phone, hubspot_sandbox, workspace):
    base = hubspot_sandbox.server_url
    page = phone
    page.goto(base + reverse("sources:list"))
    check_fits(page, "01_sources_empty")
    page.goto(base + reverse("sources:catalog"))
    check_fits(page, "02_catalog", primary=False)  # nothing is selected yet: no Add Source button
    page.locator(".catalog-card", has_text="HubSpot").click()
    check_fits(page, "02b_catalog_hubspot_selected")
    page.goto(base + reverse("sources:new"))
    check_fits(page, "03_wizard_name")
    page.fill("#id_name", "HubSpot on the go")
    page.locator(".page button.primary").click()
    page.wait_for_url(re.compile(r"/sources/new/connect/$"))
    check_fits(page, "04_wizard_connect")
    page.locator(".page button.primary").click()
    page.wait_for_url(re.compile(r"/sandbox/hubspot/oauth/authorize"))
    check_sandbox_fits(page, "05_consent")
    page.get_by_text("Acme Sandbox").first.click()
    page.locator("button.sbx-hs-connect").click()
    page.wait_for_url(re.compile(r"/sources/new/connect/$"))  # back on the login step, showing the account
    check_fits(page, "05b_wizard_connected")
    page.locator(".page .button.primary, .page button.primary").first.click()
    page.wait_for_url(re.compile(r"/sources/new/schema/$"))
    check_fits(page, "06_wizard_schema")
    page.locator(".page button.primary").click()
    page.wait_for_url(re.compile(r"/sources/new/sync/$"))
    check_fits(page, "07_wizard_sync")
    page.locator(".page button.primary").click()
    page.wait_for_url(re.compile(r"/sources/\d+/$"))
    source = Source.objects.get(workspace=workspace)
    check_fits(page, "08_source_overview", primary=False)
    page.goto(base + reverse("sources:list"))
    check_fits(page, "09_sources")
    # The list is one card per source, each value labelled with its column.
    card = page.locator("table.sources-table tbody tr").first
    expect(card.locator("td[data-label='Schema']")).to_have_text("hubspot_on_the_go")
    # The wizard read the collections' schemas to count their properties, and the source keeps them.
    contacts = source.collections.get(collection="contacts")
    assert "email" in contacts.properties and contacts.schema_discovered_at is not None
    page.goto(base + reverse("models_app:new", args=[source.pk]))
    contacts_card = page.locator(".collection-card", has_text="Contacts")
    expect(contacts_card.locator(".collection-schema")).to_contain_text(re.compile(r"\d+ properties · schema read"))
    expect(contacts_card.locator(".collection-sync")).to_have_text("Never synced")


def check_sandbox_fits(page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width, f"{name}: the page is {scroll_width}px wide on a {inner_width}px screen"


def test_every_workflow_page_fits_a_phone(phone, hubspot_sandbox, workspace):
    base = hubspot_sandbox.server_url
    page = phone
    source = make_source(hubspot_sandbox, workspace)
    mirror = Mirror(source)
    for i in range(1, 4):
        mirror.put(i, contact_props(i))

    pages_before_model = {
        "10_source_overview": (reverse("sources:detail", args=[source.pk]), False),
        "11_source_models_empty": (reverse("sources:models", args=[source.pk]), False),
        "12_source_settings": (reverse("sources:settings", args=[source.pk]), True),
        "13_collection_picker": (reverse("models_app:new", args=[source.pk]), False),
    }
    for name, (url, primary) in pages_before_model.items():
        page.goto(base + url)
        check_fits(page, name, primary=primary)

    # The model builder: tick columns, the preview follows; Create model is within reach without scrolling.
    page.goto(base + reverse("models_app:new", args=[source.pk]) + "?collection=contacts")
    page.wait_for_selector("#preview .preview-table")
    for column in ("email", "firstname", "lastname", "lifecyclestage"):
        page.locator("label.col-option", has=page.locator(f"input[value={column}]")).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#preview .th-name')].some(e => e.textContent.startsWith('lifecycle'))"
    )
    create = page.locator(".page button.primary")
    expect(create).to_be_in_viewport(ratio=1)  # before any scrolling
    check_fits(page, "14_model_builder")
    # The preview's wide table scrolls inside its own box.
    box_width = page.evaluate("document.querySelector('#preview .preview-scroll').clientWidth")
    table_width = page.evaluate("document.querySelector('#preview .preview-table').scrollWidth")
    assert table_width > box_width
    page.fill("#id_name", "Contacts for Profiles")
    create.click()
    page.wait_for_url(re.compile(r"/models/\d+/$"))
    page.wait_for_selector("#preview .preview-table")
    check_fits(page, "15_model_page")
    model = source.data_models.get()

    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Production", write_key="sbx_k", region="sandbox")
    mapping = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Contacts to profiles",
        identifiers={"user_id": "email"},
        traits=[["email", "email"], ["firstname", "first_name"]],
    )
    run = SyncRunFactory(
        source=source,
        status=SyncRun.Status.SUCCEEDED,
        started_at=timezone.now() - timedelta(minutes=5),
        finished_at=timezone.now() - timedelta(minutes=4),
        counts={"contacts": {"read": 3, "new": 3, "updated": 0, "unchanged": 0, "archived": 0, "deleted": 0}},
    )
    delivery = DeliveryRunFactory(mapping=mapping, sync_run=run, status="succeeded", sent=2, rejected=1)
    DeliveryStateFactory(
        mapping=mapping, object_id=3, status=DeliveryState.Status.REJECTED, error="no user_id (email is empty)"
    )

    pages = {
        "16_dashboard": (reverse("dashboard"), False),
        "17_source_models": (reverse("sources:models", args=[source.pk]), False),
        "18_destinations": (reverse("mappings:destinations"), True),
        "19_destination_new": (reverse("mappings:destination_new"), True),
        "20_destination_overview": (reverse("mappings:destination", args=[destination.pk]), True),
        "21_destination_settings": (reverse("mappings:destination_settings", args=[destination.pk]), True),
        "22_profile_space": (reverse("mappings:profile_space", args=[space.pk]), True),
        "23_mapping_new": (reverse("mappings:mapping_new") + f"?destination={destination.pk}", True),
        "24_mapping_edit": (reverse("mappings:mapping_edit", args=[mapping.pk]), True),
        "25_mapping": (reverse("mappings:mapping_detail", args=[mapping.pk]), True),
        "26_mappings": (reverse("mappings:list"), True),
        "27_rejected": (reverse("mappings:rejected", args=[mapping.pk]), False),
        "28_sample_mode": (reverse("mappings:sample_mode", args=[mapping.pk]), False),
        "29_sync_run": (reverse("sync_run", args=[source.pk, run.pk]), False),
        "30_delivery_run": (reverse("delivery_run", args=[delivery.pk]), False),
        "31_record_debugger": (reverse("record_debugger") + "?q=user1@example.com", True),
        "32_alerts": (reverse("alerts"), True),
        "33_settings": (reverse("workspace_settings"), True),
        "34_members": (reverse("members"), False),
        "35_audit_log": (reverse("audit_log"), False),
        "36_source_overview_with_runs": (reverse("sources:detail", args=[source.pk]), False),
    }
    for name, (url, primary) in pages.items():
        response = page.goto(base + url)
        assert response is not None and response.status == 200, f"{name}: {response and response.status}"
        check_fits(page, name, primary=primary)

    # The destination Overview: the mapping is a card, its Mapping Status switch whole on screen, and it works.
    page.goto(base + reverse("mappings:destination", args=[destination.pk]))
    switch = page.get_by_role("switch", name=re.compile("Mapping Status"))
    expect(switch).to_be_in_viewport(ratio=1)
    expect(page.locator("td[data-label='Mapping Status']")).to_be_visible()

    # The Sandbox pages a user opens from the menu fit as well.
    for name, url in {"37_sandbox_hubspot": "/sandbox/hubspot/", "38_sandbox_segment": "/sandbox/segment/"}.items():
        page.goto(base + url)
        check_sandbox_fits(page, name)


def test_the_header_is_one_line_and_its_menu_opens_without_javascript(browser, owner, live_server):
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    log_in(context, owner, live_server.url)
    page = context.new_page()
    try:
        page.goto(live_server.url + reverse("dashboard"))
        header = page.locator("aside.sidebar").bounding_box()
        assert header and header["height"] <= 64, f"the header takes {header and header['height']}px"
        dashboard_link = page.locator(".sidebar nav").get_by_role("link", name="Dashboard")
        expect(dashboard_link).to_be_hidden()
        page.locator("summary.nav-toggle").click()
        expect(dashboard_link).to_be_in_viewport()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "00_menu_open.png"))
        expect(page.locator(".sidebar nav").get_by_role("link", name="Record debugger")).to_be_in_viewport()
        page.locator(".sidebar nav").get_by_role("link", name="Sources").click()
        page.wait_for_url(re.compile(r"/sources/$"))
        expect(page.locator(".sidebar nav").get_by_role("link", name="Sources")).to_be_hidden()
    finally:
        context.close()


def test_the_menu_is_a_button_that_says_whether_it_is_open(browser, owner, live_server):
    context = browser.new_context(viewport=PHONE, has_touch=True)
    log_in(context, owner, live_server.url)
    page = context.new_page()
    try:
        page.goto(live_server.url + reverse("dashboard"))
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_have_attribute("aria-expanded", "false")
        menu.tap()
        expect(menu).to_have_attribute("aria-expanded", "true")
        page.locator(".sidebar nav").get_by_role("link", name="Alerts").tap()
        page.wait_for_url(re.compile(r"/settings/alerts/$"))
        expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")
    finally:
        context.close()


def test_on_a_wide_screen_the_menu_is_the_sidebar(page, owner, live_server):
    log_in(page, owner, live_server.url)
    page.goto(live_server.url + reverse("dashboard"))
    expect(page.locator("summary.nav-toggle")).to_be_hidden()
    for name in ("Dashboard", "Sources", "Destinations", "Alerts", "Record debugger"):
        expect(page.locator(".sidebar nav").get_by_role("link", name=name)).to_be_in_viewport()
    sidebar = page.locator("aside.sidebar").bounding_box()
    assert sidebar and sidebar["width"] >= 200 and sidebar["height"] >= 800


@pytest.mark.parametrize("width", [800, 1024])
def test_tablet_and_laptop_widths_do_not_overflow_either(browser, owner, workspace, live_server, width):
    """Between the phone layout and a wide screen the sidebar takes 240 px: the content beside it must shrink
    (its wide tables scroll in their box) instead of pushing the page wider than the window."""
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot")
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    mapping = MappingFactory(data_model=model, name="Contacts to profiles", identifiers={"user_id": "email"})
    run = SyncRunFactory(source=source, status=SyncRun.Status.SUCCEEDED, counts={"contacts": {"read": 3}})
    DeliveryRunFactory(mapping=mapping, sync_run=run, status="succeeded", sent=3)
    context = browser.new_context(viewport={"width": width, "height": 900})
    log_in(context, owner, live_server.url)
    page = context.new_page()
    try:
        for url in (
            reverse("dashboard"),
            reverse("sources:list"),
            reverse("sources:detail", args=[source.pk]),
            reverse("mappings:destination", args=[mapping.destination_id]),
            reverse("mappings:mapping_detail", args=[mapping.pk]),
            reverse("mappings:list"),
            reverse("sync_run", args=[source.pk, run.pk]),
            reverse("members"),
        ):
            page.goto(live_server.url + url)
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, f"{url}: {scroll_width}px wide in a {width}px window"
            expect(page.locator(".sidebar nav").get_by_role("link", name="Dashboard")).to_be_in_viewport()
    finally:
        context.close()

"""Create Model in Chromium against the HubSpot sandbox: Models tab → Create model → Contacts → tick columns
while the htmx preview follows → save."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from models_app.models import DataModel
from tests.browser.conftest import log_in
from tests.models_app.test_views import make_source

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "model_builder"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def preview_headers(page) -> list[str]:
    return page.locator("#preview .preview-table th .th-name").all_inner_texts()


def test_create_a_model_with_the_live_preview(hubspot_sandbox, page, owner, workspace, settings):
    from sandbox.hubspot import data

    data._CACHE.clear()
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    source = make_source(hubspot_sandbox, workspace)
    log_in(page, owner, base)
    preview_urls: list[str] = []
    page.on("request", lambda r: preview_urls.append(r.url) if "/models/preview/" in r.url else None)

    # The source's Models tab, empty, offers Create model.
    page.goto(f"{base}/sources/{source.pk}/models/")
    expect(page.get_by_text("No data models yet")).to_be_visible()
    shot(page, "01_models_tab_empty")
    page.get_by_role("link", name="Create model").first.click()

    # Step 1: pick the collection; Deals is flagged as not synced.
    page.wait_for_url(re.compile(r"/models/new/$"))
    expect(page.locator(".collection-card", has_text="Deals").get_by_text("Not in selective sync")).to_be_visible()
    # The source never synced: its collections say so (not "Synced").
    expect(page.locator(".collection-card", has_text="Contacts").locator(".collection-sync")).to_have_text(
        "Never synced"
    )
    shot(page, "02_pick_collection")
    page.locator(".collection-card", has_text="Contacts").click()

    # Step 2: the grouped, searchable columns and the preview (system columns only at first).
    page.wait_for_url(re.compile(r"collection=contacts"))
    page.wait_for_selector("#preview .preview-table")
    assert [h.split(" · ")[0] for h in preview_headers(page)] == ["id", "created_at", "updated_at"]
    shot(page, "03_builder_system_columns")
    assert page.locator("#preview .preview-table tbody tr").count() == 10
    expect(page.locator("details.col-group summary", has_text="Contact information")).to_be_visible()

    # Tick columns: the preview follows (htmx, after a short delay).
    page.locator("label.col-option", has=page.locator("input[value=email]")).click()
    page.locator("label.col-option", has=page.locator("input[value=firstname]")).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#preview .th-name')].some(e => e.textContent.startsWith('firstname'))"
    )
    names = [h.split(" · ")[0] for h in preview_headers(page)]
    assert names == ["id", "email", "firstname", "created_at", "updated_at"]
    assert page.locator("#selected-count").inner_text() == "2 selected"
    first_email = page.locator("#preview .preview-table tbody tr").first.locator("td").nth(1).inner_text()
    assert "@" in first_email

    # Search filters the list; tick a match.
    page.fill("#column-search", "lifecycle")
    visible = page.locator("label.col-option:visible").all_inner_texts()
    assert any("Lifecycle Stage" in v for v in visible)
    assert not any("First Name" in v for v in visible)
    page.locator("label.col-option", has=page.locator("input[value=lifecyclestage]")).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#preview .th-name')].some(e => e.textContent.startsWith('lifecycle'))"
    )
    page.fill("#column-search", "")
    # One preview request per change, carrying only the collection and the columns (no CSRF token in URLs/logs).
    assert preview_urls
    for url in preview_urls:
        assert "csrfmiddlewaretoken" not in url and "&name=" not in url and "?name=" not in url
    assert "columns=lifecyclestage" in preview_urls[-1] and "collection=contacts" in preview_urls[-1]
    # The schema validation says so when all is well: the columns and their types.
    valid = page.locator("#preview [data-schema=valid]")
    expect(valid).to_contain_text("Schema valid")
    expect(valid).to_contain_text("6 columns, types: 2 datetime, 2 string, 1 enumeration, 1 number.")
    shot(page, "04_builder_with_preview")

    # Name and save.
    page.fill("#id_name", "Contacts for Profiles")
    page.get_by_role("button", name="Create model").click()
    page.wait_for_url(re.compile(r"/models/\d+/$"))
    # Counted alike everywhere: the message, the model's header and the preview.
    expect(page.get_by_text("was created with 6 columns")).to_be_visible()
    expect(page.locator(".model-meta")).to_contain_text("6 columns")
    model = DataModel.objects.get(source=source)
    assert model.name == "Contacts for Profiles"
    assert sorted(model.columns) == ["email", "firstname", "lifecyclestage"]
    page.wait_for_selector("#preview .preview-table")
    shot(page, "05_saved_model")

    # Back on the Models tab, the model is listed.
    page.goto(f"{base}/sources/{source.pk}/models/")
    row = page.locator("table.models-list tbody tr", has_text="Contacts for Profiles")
    assert row.locator("td.num").inner_text() == "6"
    shot(page, "06_models_tab")

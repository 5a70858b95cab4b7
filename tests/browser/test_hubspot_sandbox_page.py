"""The HubSpot sandbox's page in Chromium: the sandbox app's client id and secret and its URLs are on it, and they
are enough to point HubSpot's official Python SDK at the sandbox (OAuth code flow through the consent page, token
exchange, CRM read). The page fits a wide screen and a phone."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings as django_settings
from hubspot import HubSpot
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_sandbox_app_credentials_drive_the_official_sdk(hubspot_sandbox, browser):
    base = hubspot_sandbox.server_url
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(base + "/sandbox/hubspot/")
        app = page.locator("#app")
        expect(app.get_by_role("heading", name="The sandbox's HubSpot app")).to_be_visible()
        client_id = page.locator("#sbx-client-id").inner_text()
        client_secret = page.locator("#sbx-client-secret").inner_text()
        api_root = page.locator("#sbx-api-root").inner_text()
        authorize_url = page.locator("#sbx-authorize-url").inner_text()
        token_url = page.locator("#sbx-token-url").inner_text()
        assert (client_id, client_secret) == (
            django_settings.SANDBOX_HUBSPOT_CLIENT_ID,
            django_settings.SANDBOX_HUBSPOT_CLIENT_SECRET,
        )
        assert api_root == hubspot_sandbox.base_url and token_url == api_root + "/oauth/v1/token"
        # The examples carry the same values.
        examples = page.locator("pre.sbx-hs-code").all_inner_texts()
        assert any(f"client_secret={client_secret}" in e and token_url in e for e in examples)
        assert any(f'HubSpot(host="{api_root}")' in e and f'basePath: "{api_root}"' in e for e in examples)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400

        # The example authorize link opens the consent screen for the app (no "invalid client" page).
        page.locator("#sbx-example-authorize").click()
        expect(page.get_by_role("button", name="Connect app")).to_be_visible()

        # What a developer does with those values: authorize in the browser, then the SDK.
        redirect_uri = base + "/my-app/oauth-callback"
        query = urlencode(
            {"client_id": client_id, "redirect_uri": redirect_uri, "scope": "oauth crm.objects.contacts.read"}
        )
        page.goto(f"{authorize_url}?{query}")
        page.get_by_text("Acme Sandbox").first.click()
        page.get_by_role("button", name="Connect app").click()
        page.wait_for_url(re.compile(r"/my-app/oauth-callback\?code="))
        code = parse_qs(urlsplit(page.url).query)["code"][0]

        api = HubSpot(host=api_root)
        tokens = api.oauth.tokens_api.create(
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            client_id=client_id,
            client_secret=client_secret,
        )
        api.access_token = tokens.access_token
        contacts = api.crm.contacts.basic_api.get_page(limit=10, properties=["email"])
        assert len(contacts.results) == 10 and all("@" in c.properties["email"] for c in contacts.results)
    finally:
        context.close()


def test_the_sandbox_page_fits_a_phone(hubspot_sandbox, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    failed: list[str] = []  # console errors, e.g. the 404 of /favicon.ico when the page names no icon
    page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
    try:
        for url in ("/sandbox/hubspot/", "/sandbox/hubspot/portals/1001/"):
            page.goto(hubspot_sandbox.server_url + url)
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{url} is {width}px wide on a 390px screen"
        assert not failed
        page.goto(hubspot_sandbox.server_url + "/sandbox/hubspot/")
        expect(page.locator("#sbx-client-secret")).to_be_in_viewport(ratio=1)
    finally:
        context.close()

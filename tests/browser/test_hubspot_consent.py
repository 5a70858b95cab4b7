"""The consent screen in a real browser: choose an account, connect, land on the redirect URI with a code."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_connect_and_cancel_in_the_browser(hubspot_sandbox, page):
    redirect = hubspot_sandbox.base_url + "/"  # any loopback URL will do; the sandbox index is one
    params = {
        "client_id": hubspot_sandbox.client_id,
        "redirect_uri": redirect,
        "state": "xyz",
        "scope": "oauth crm.objects.contacts.read tickets",
        "optional_scope": "crm.objects.owners.read",
    }
    page.goto(hubspot_sandbox.authorize_url + "?" + urlencode(params))
    expect(page.get_by_role("heading", name="Connect hubsync (sandbox app) to your HubSpot account")).to_be_visible()
    if os.environ.get("SANDBOX_SCREENSHOT"):
        page.screenshot(path=os.environ["SANDBOX_SCREENSHOT"], full_page=True)
    page.get_by_label("Globex Demo (EU)", exact=False).check()
    page.get_by_role("button", name="Connect app").click()
    page.wait_for_url(redirect + "?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == ["xyz"]
    token = hubspot_sandbox.token_via_code(query["code"][0], redirect)
    assert token["hub_id"] == 1002 and "crm.objects.owners.read" in token["scopes"]

    page.goto(hubspot_sandbox.authorize_url + "?" + urlencode(params))
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(redirect + "?*")
    assert parse_qs(urlsplit(page.url).query)["error"] == ["access_denied"]

"""Settings → API tokens in Chromium, as an owner uses it: from Settings to the tokens page, create a token (shown
once, copied from the page, working against the API), reload (gone from the page), revoke it with the confirm
dialog (the API refuses it at once); the docs page renders Swagger UI from pinned files under the CSP."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from api.models import ApiToken
from tests.browser.conftest import log_in, screenshot

pytestmark = pytest.mark.browser


def test_create_shown_once_then_revoke(page, owner, workspace, live_server):
    base = live_server.url
    log_in(page, owner, base)
    page.goto(base + "/settings/")
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()
    page.get_by_label("Name").fill("CI deploy")
    page.get_by_label("Admin").check()
    page.get_by_role("button", name="Create token").click()
    value = page.locator("#new-token-value")
    expect(value).to_be_visible()
    token = value.input_value()
    assert token.startswith("hs_")
    screenshot(page, "api-token-created")
    api = f"{base}/api/v1/workspaces/{workspace.pk}/"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(api, headers=headers, timeout=10).json()["token_role"] == "admin"

    page.goto(base + "/settings/api-tokens/")
    expect(page.locator("#new-token-value")).to_have_count(0)
    row = page.locator(f"#token-{ApiToken.objects.get().pk}")
    expect(row).to_contain_text("CI deploy")
    expect(row).to_contain_text(token[:10])
    expect(row).to_contain_text("Active")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(f"#token-{ApiToken.objects.get().pk}")).to_contain_text("Revoked")
    refused = requests.get(api, headers=headers, timeout=10)
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"


def test_the_docs_page_renders_under_the_csp(page, live_server):
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(live_server.url + "/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("hubsync API")
    expect(page.get_by_text("/api/v1/workspaces/{workspace_id}/sources/").first).to_be_visible()
    screenshot(page, "api-docs")
    assert not violations, violations

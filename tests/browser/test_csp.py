"""The Content-Security-Policy in a real browser: the main pages load, and work, without a single violation.

Chromium reports every blocked inline script, handler, style or eval as a console error ("Refused to …") and
fires a `securitypolicyviolation` event; both are collected on every page. The pages carry real objects (the
URL walk's builder fills a workspace), so lists, tables, progress bars and htmx fragments are all exercised."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser.conftest import log_in
from tests.hubsync.test_url_walk import _Builder

COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(
    e.violatedDirective + " " + (e.blockedURI || "inline") + " " + (e.sourceFile || "") + ":" + e.lineNumber
  );
});
"""


@pytest.mark.django_db(transaction=True)
def test_main_pages_load_without_csp_violations(live_server, page, owner, workspace, viewer):
    from hubsync import workspaces

    objects = {m._meta.label: o for m, o in _Builder(workspace, owner).build_all().items()}
    workspaces.invite(workspace=workspace, email="new@example.com", role="viewer", actor=owner)
    log_in(page, owner, live_server.url)
    page.add_init_script(COLLECT)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)

    source = objects["sources.Source"]
    mapping = objects["mappings.Mapping"]
    urls = [
        "/",
        reverse("members"),
        reverse("workspace_settings"),
        reverse("alerts"),
        reverse("audit_log"),
        reverse("record_debugger"),
        reverse("sources:list"),
        reverse("sources:new"),
        reverse("sources:detail", args=[source.pk]),
        reverse("sources:settings", args=[source.pk]),
        reverse("sources:runs", args=[source.pk]),
        reverse("mappings:destinations"),
        reverse("mappings:list"),
        reverse("mappings:mapping_detail", args=[mapping.pk]),
        reverse("mappings:mapping_edit", args=[mapping.pk]),
        reverse("mappings:rejected", args=[mapping.pk]),
        reverse("models_app:detail", args=[objects["models_app.DataModel"].pk]),
        reverse("sync_run", args=[source.pk, objects["sources.SyncRun"].pk]),
        reverse("delivery_run", args=[objects["mappings.DeliveryRun"].pk]),
        "/sandbox/hubspot/",
        "/sandbox/segment/",
        "/accounts/email/",
    ]
    violations = []
    for url in urls:
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        found = page.evaluate("window.__csp")
        violations += [f"{url}: {v}" for v in found]
    refused = [text for text in console if "Content Security Policy" in text or "Refused to" in text]
    assert not violations and not refused, "\n".join(violations + refused)

    # The handlers that replaced inline ones still work: the alert form shows only the chosen kind's field.
    page.goto(live_server.url + reverse("alerts"))
    page.select_option("select[name=kind]", "email")
    assert page.locator("#id_webhook_url").is_hidden()
    page.select_option("select[name=kind]", "webhook")
    assert page.locator("#id_webhook_url").is_visible() and page.locator("#id_emails").is_hidden()
    # ... and confirmations ask first (dismissed: nothing is removed).
    page.goto(live_server.url + reverse("members"))
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("form[data-confirm] button").first.click()
    assert page.url.endswith(reverse("members"))
    assert not page.evaluate("window.__csp")

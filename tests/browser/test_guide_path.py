"""Issue 14, items 4 and 5 in Chromium: the catalog's search, a Profile Space whose sandbox write key picks the
sandbox region, and a custom endpoint (a Segment-compatible proxy) that receives the deliveries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from playwright.sync_api import expect

from mappings.delivery import deliver
from mappings.models import Destination, ProfileSpace
from tests.browser.conftest import log_in
from tests.factories import DataModelFactory, DestinationFactory, MappingFactory, RecordFactory, SourceFactory

pytestmark = pytest.mark.browser

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "guide"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_catalog_search_filters_as_you_type_and_hubspot_is_selectable(live_server, page, owner, workspace):
    base = live_server.url
    log_in(page, owner, base)
    page.goto(base + "/")
    # Connections → Catalog.
    page.locator(".sidebar").get_by_role("link", name="Catalog").click()
    expect(page.get_by_role("heading", name="Catalog")).to_be_visible()
    hubspot = page.locator(".catalog-card", has_text="HubSpot")
    profiles = page.locator(".catalog-card", has_text="Segment Profiles")
    expect(hubspot).to_be_visible()
    expect(profiles).to_be_visible()
    search = page.get_by_role("searchbox", name="Search the catalog")
    search.press_sequentially("hub")
    # Filtered in the page, without a reload.
    expect(profiles).to_be_hidden()
    expect(hubspot).to_be_visible()
    assert "q=" not in page.url
    search.fill("")
    search.press_sequentially("salesforce")
    expect(hubspot).to_be_hidden()
    expect(page.locator("#catalog-empty")).to_contain_text("salesforce")
    search.fill("")
    search.press_sequentially("HubSpot")
    expect(hubspot).to_be_visible()
    expect(page.locator("#catalog-empty")).to_be_hidden()
    shot(page, "01_catalog_search")
    # Select HubSpot, then Add Source.
    hubspot.click()
    expect(page.locator(".catalog-card.selected")).to_contain_text("HubSpot")
    shot(page, "02_catalog_selected")
    page.locator(".catalog-selected").get_by_role("link", name="Add Source").click()
    page.wait_for_url(f"{base}/sources/new/")
    expect(page.get_by_role("button", name="Next")).to_be_visible()


def test_catalog_search_without_javascript(live_server, browser, owner):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(context, owner, live_server.url)
        page.goto(live_server.url + "/sources/catalog/")
        page.get_by_role("searchbox", name="Search the catalog").fill("hubspot")
        page.get_by_role("button", name="Search").click()
        expect(page.locator(".catalog-card", has_text="Segment Profiles")).to_be_hidden()
        # The only match is selected at once.
        page.locator(".catalog-selected").get_by_role("link", name="Add Source").click()
        page.wait_for_url(f"{live_server.url}/sources/new/")
    finally:
        context.close()


def test_profile_space_with_a_sandbox_key_chooses_the_sandbox(segment_sandbox, page, owner, workspace, settings):
    base = segment_sandbox.base_url.rsplit("/sandbox/segment", 1)[0]
    settings.BASE_URL = base
    settings.SANDBOX = True
    inbox = segment_sandbox.with_workspace("Guide space")
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot")
    log_in(page, owner, base)
    page.goto(f"{base}/destinations/new/?source={source.pk}")
    expect(page.get_by_text("Write key (required)")).to_be_visible()
    # The Profile Space part is set apart from the destination's name above it.
    heading = page.get_by_role("heading", name="Profile Space")
    assert heading.evaluate("h => parseFloat(getComputedStyle(h).marginTop)") > 10
    page.get_by_label("Segment Profiles").check()
    page.fill("#id_name", "Segment")
    page.fill("#id_space_name", "Guide space")
    assert page.input_value("#id_region") == "us"
    page.fill("#id_write_key", inbox.write_key)
    # The sandbox key picks the sandbox region as it is typed.
    expect(page.locator("#id_region")).to_have_value("sandbox")
    sandbox_link = page.get_by_role("link", name="Segment sandbox page")
    assert sandbox_link.get_attribute("href") == "/sandbox/segment/"
    shot(page, "03_space_sandbox_key")
    page.get_by_role("button", name="Create destination").click()
    # Where the guide goes next: the source's Models tab, Create model.
    page.wait_for_url(f"{base}/sources/{source.pk}/models/#create-model")
    expect(page.get_by_text("Next: create a data model")).to_be_visible()
    expect(page.locator("#create-model")).to_be_visible()
    space = ProfileSpace.objects.get()
    assert (space.name, space.region, space.write_key) == ("Guide space", "sandbox", inbox.write_key)
    destination = Destination.objects.get()
    page.goto(f"{base}/destinations/{destination.pk}/settings/")
    page.get_by_role("button", name="Check connection").click()
    expect(page.locator(".check-result")).to_contain_text("Connection works")


class _Proxy:
    """A Segment-compatible proxy on 127.0.0.1: POST /seg/v1/<endpoint> is forwarded to the Segment sandbox, and
    every request it took is kept (path and whether it carried the write key)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.path, self.headers.get("Authorization", "")))
                if not self.path.startswith("/seg/v1/"):
                    self.send_response(404)
                    self.end_headers()
                    return
                answer = requests.post(
                    proxy.upstream + self.path.removeprefix("/seg"),
                    data=body,
                    headers={k: v for k, v in self.headers.items() if k in ("Authorization", "Content-Type")},
                    timeout=30,
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/seg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(segment_sandbox) -> Iterator[_Proxy]:
    with _Proxy(segment_sandbox.base_url) as running:
        yield running


def test_a_custom_endpoint_receives_the_deliveries(segment_sandbox, proxy, page, owner, workspace, settings):
    base = segment_sandbox.base_url.rsplit("/sandbox/segment", 1)[0]
    settings.BASE_URL = base
    settings.SANDBOX = True
    # A proxy on this machine over plain http: what tests and local development may use (never production).
    settings.ALERT_WEBHOOK_ALLOW_LOOPBACK = True
    inbox = segment_sandbox.with_workspace("Proxied space")
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot")
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email", "firstname"])
    for n in range(1, 6):
        RecordFactory(source=source, object_id=n, properties={"email": f"p{n}@example.com", "firstname": f"P{n}"})
    destination = DestinationFactory(workspace=workspace, name="Segment")

    log_in(page, owner, base)
    page.goto(f"{base}/destinations/{destination.pk}/settings/")
    page.fill("#id_name", "Through the proxy")
    page.fill("#id_write_key", inbox.write_key)
    # The region left as the key chose it: an endpoint entered is where the space sends.
    page.fill("#id_endpoint", proxy.url + "/v1/batch")  # pasted with the path: the root is kept
    shot(page, "04_custom_endpoint")
    page.get_by_role("button", name="Add Profile Space").click()
    page.wait_for_url(f"{base}/destinations/{destination.pk}/settings/#space-*")
    space = ProfileSpace.objects.get()
    assert (space.region, space.endpoint) == ("custom", proxy.url)
    expect(page.locator(f"#space-{space.pk}")).to_contain_text(proxy.url)
    page.get_by_role("button", name="Check connection").click()
    expect(page.locator(".check-result")).to_contain_text("Connection works")
    assert proxy.requests and proxy.requests[-1][0] == "/seg/v1/batch"

    mapping = MappingFactory(
        data_model=model,
        destination=destination,
        profile_space=space,
        name="Contacts",
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"]],
        enabled=True,
    )
    proxy.requests.clear()
    run = deliver(mapping_id=mapping.pk)
    assert run is not None and (run.status, run.sent) == ("succeeded", 5), run.error
    # Every batch went through the proxy, with the write key; the space behind it holds the profiles.
    assert proxy.requests and all(
        path == "/seg/v1/batch" and auth.startswith("Basic ") for path, auth in proxy.requests
    )
    assert {p["userId"] for p in inbox.profiles()} == {f"p{n}@example.com" for n in range(1, 6)}


def test_the_new_pages_fit_a_phone(live_server, browser, owner, workspace, settings):
    settings.SANDBOX = True
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot")
    destination = DestinationFactory(workspace=workspace, name="Segment")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    log_in(context, owner, live_server.url)
    page = context.new_page()
    try:
        for name, path in {
            "catalog": "/sources/catalog/?q=hubspot",
            "destination_new": f"/destinations/new/?source={source.pk}",
            "destination_settings": f"/destinations/{destination.pk}/settings/",
            "source_settings": f"/sources/{source.pk}/settings/",
        }.items():
            page.goto(live_server.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{name}: the page is {overflow}px wider than a 390px screen"
            shot(page, f"narrow_{name}")
    finally:
        context.close()

"""The HubSpot sandbox's consent screen, sandbox pages, commands and safety."""

from __future__ import annotations

import importlib
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import clear_url_caches

from sandbox.hubspot.models import Knobs, Portal, RecordChange
from sandbox.hubspot.views import developer_app
from tests.fixtures_sandbox import HUBSPOT_READ_SCOPES

pytestmark = pytest.mark.django_db

BASE = "/sandbox/hubspot"
CLIENT_ID = "hubsync-sandbox-app"
REDIRECT = "http://localhost:8000/sources/oauth/callback"


def authorize_params(**extra):
    params = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": " ".join(HUBSPOT_READ_SCOPES),
        "optional_scope": "crm.objects.deals.write",
        "state": "st-123",
    }
    params.update(extra)
    return params


def test_consent_screen_lists_app_scopes_and_accounts(client):
    resp = client.get(f"{BASE}/oauth/authorize", authorize_params())
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "hubsync (sandbox app)" in html
    assert "Acme Sandbox" in html and "Globex Demo (EU)" in html
    assert "View properties and other details about contacts" in html and "tickets" in html
    assert 'name="grant_crm.objects.deals.write"' in html
    assert "Connect app" in html and "Cancel" in html


def test_connect_redirects_with_code_and_state_and_code_works(client):
    csrf_client = Client(enforce_csrf_checks=False)
    form = authorize_params(portal="1002", action="connect")
    form["grant_crm.objects.deals.write"] = "1"
    resp = csrf_client.post(f"{BASE}/oauth/authorize", form)
    assert resp.status_code == 302
    target = urlsplit(resp["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    query = parse_qs(target.query)
    assert query["state"] == ["st-123"] and query["code"][0].startswith("sbx-hs-code-")
    token = client.post(
        f"{BASE}/oauth/v1/token",
        urlencode(
            {
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": REDIRECT,
                "client_id": CLIENT_ID,
                "client_secret": "hubsync-sandbox-secret",
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )
    body = token.json()
    assert token.status_code == 200 and body["hub_id"] == 1002
    assert "crm.objects.deals.write" in body["scopes"] and "tickets" in body["scopes"]


def test_cancel_redirects_with_error(client):
    resp = client.post(f"{BASE}/oauth/authorize", authorize_params(portal="1001", action="cancel"))
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp["Location"]).query)
    assert query["error"] == ["access_denied"] and query["error_description"] and query["state"] == ["st-123"]
    assert "code" not in query


@pytest.mark.parametrize("redirect_uri", ["https://evil.example/cb", "http://localhost.evil.example/cb", ""])
def test_non_loopback_redirect_uri_is_an_error_page(client, redirect_uri):
    resp = client.get(f"{BASE}/oauth/authorize", authorize_params(redirect_uri=redirect_uri))
    assert resp.status_code == 400 and "Redirect URI not allowed" in resp.content.decode()


def test_unknown_client_and_unknown_scope_are_error_pages(client):
    assert client.get(f"{BASE}/oauth/authorize", authorize_params(client_id="other")).status_code == 400
    resp = client.get(f"{BASE}/oauth/authorize", authorize_params(scope="crm.objects.contacts.read bogus.scope"))
    assert resp.status_code == 400 and "bogus.scope" in resp.content.decode()


def test_consent_accepts_optional_scopes_plural_and_127_0_0_1(client):
    params = authorize_params(redirect_uri="http://127.0.0.1:8123/cb", optional_scope="")
    params["optional_scopes"] = "crm.objects.owners.read crm.objects.deals.write"
    resp = client.get(f"{BASE}/oauth/authorize", params)
    assert resp.status_code == 200 and 'name="grant_crm.objects.deals.write"' in resp.content.decode()


# --- sandbox pages -----------------------------------------------------------------------------------------------
def test_index_shows_portals_and_knobs(client):
    resp = client.get(f"{BASE}/")
    html = resp.content.decode()
    assert resp.status_code == 200 and "Acme Sandbox" in html and "Realism knobs" in html


def test_index_shows_the_sandbox_app_and_never_a_production_secret(client, settings, rf):
    settings.HUBSPOT_CLIENT_ID = "real-app-id"
    settings.HUBSPOT_CLIENT_SECRET = "real-production-secret-0123456789"
    html = client.get(f"{BASE}/").content.decode()
    assert settings.SANDBOX_HUBSPOT_CLIENT_ID in html and settings.SANDBOX_HUBSPOT_CLIENT_SECRET in html
    assert "http://testserver/sandbox/hubspot/oauth/v1/token" in html
    assert "real-production-secret" not in html and "real-app-id" not in html
    # The example authorize URL is one the sandbox accepts (loopback redirect, known scopes).
    link = re.search(r'id="sbx-example-authorize" href="([^"]+)"', html)
    assert link
    consent = client.get(link.group(1).replace("&amp;", "&").removeprefix("http://testserver"))
    assert consent.status_code == 200 and b"Connect app" in consent.content
    settings.SANDBOX = False
    assert developer_app(rf.get("/")) is None


def test_knobs_form_saves(client):
    resp = client.post(
        f"{BASE}/knobs",
        {
            "rate_limit_max": "50",
            "rate_limit_interval_ms": "10000",
            "search_rate_limit": "5",
            "latency_ms": "0",
            "error_rate": "0.25",
            "reset_rate": "0",
            "fail_next": "0",
            "fail_next_status": "503",
            "search_lag_seconds": "3",
            "access_token_lifetime": "1800",
        },
    )
    assert resp.status_code == 302
    k = Knobs.load()
    assert k.rate_limits is False  # unchecked checkbox
    assert k.rate_limit_max == 50 and k.error_rate == 0.25 and k.search_lag_seconds == 3
    bad = client.post(f"{BASE}/knobs", {"error_rate": "7"}, follow=True)
    assert "between 0 and 1" in bad.content.decode()
    assert Knobs.load().error_rate == 0.25


def test_knobs_json(client):
    resp = client.post(
        f"{BASE}/_api/knobs", json.dumps({"latency_ms": 5, "rate_limits": False}), content_type="application/json"
    )
    assert resp.status_code == 200 and resp.json()["latency_ms"] == 5 and resp.json()["rate_limits"] is False
    bad = client.post(f"{BASE}/_api/knobs", json.dumps({"nope": 1}), content_type="application/json")
    assert bad.status_code == 400
    assert client.get(f"{BASE}/_api/knobs").json()["latency_ms"] == 5


def test_portal_pages_create_mutate_and_properties(client):
    resp = client.post(
        f"{BASE}/portals/new",
        {"hub_id": "4242", "name": "Tiny", "contacts": "5", "companies": "1", "deals": "0", "tickets": "0"},
    )
    assert resp.status_code == 302 and Portal.objects.get(pk=4242).contacts == 5
    client.post(
        f"{BASE}/portals/4242/mutate",
        {"collection": "contacts", "create": "3", "update": "2", "archive": "1", "same_timestamp": "on"},
    )
    changes = RecordChange.objects.filter(portal_id=4242)
    assert changes.count() == 6 and len(set(changes.values_list("updated_ms", flat=True))) == 1
    client.post(
        f"{BASE}/portals/4242/properties",
        {"action": "add", "collection": "deals", "name": "risk_level", "type": "enumeration", "options": "low, high"},
    )
    client.post(
        f"{BASE}/portals/4242/properties", {"action": "delete", "collection": "contacts", "name": "favorite_color"}
    )
    page = client.get(f"{BASE}/portals/4242/").content.decode()
    assert "risk_level" in page and "favorite_color" in page and "archived" in page
    resp = client.post(
        f"{BASE}/_api/portals/4242/mutate",
        json.dumps({"collection": "contacts", "create": 2}),
        content_type="application/json",
    )
    assert resp.status_code == 200 and len(resp.json()["created"]) == 2


def test_seed_and_mutate_commands(capsys):
    call_command("sandbox_seed", "--portal", "5000", "--contacts", "1000000", "--companies", "10", "--seed", "9")
    portal = Portal.objects.get(pk=5000)
    assert portal.contacts == 1_000_000 and portal.seed == 9
    call_command(
        "sandbox_mutate",
        "--portal",
        "5000",
        "--collection",
        "company",
        "--create",
        "4",
        "--update",
        "3",
        "--archive",
        "2",
        "--same-timestamp",
        "--seed",
        "1",
    )
    assert RecordChange.objects.filter(portal_id=5000, object_type="companies").count() == 9
    call_command(
        "sandbox_mutate",
        "--portal",
        "5000",
        "--collection",
        "deals",
        "--add-property",
        "risk",
        "--type",
        "enumeration",
        "--options",
        "low,high",
    )
    call_command("sandbox_mutate", "--portal", "5000", "--collection", "tickets", "--add-properties", "5")
    out = capsys.readouterr().out
    assert "created 4, updated 3, archived 2" in out and "added property risk" in out
    assert "added 5 properties to tickets" in out


def test_tokens_are_sandbox_only(settings):
    from sandbox.hubspot.tokens import decode_access_token, is_sandbox_token, mint_access_token

    token = mint_access_token(hub_id=1001, scopes=["oauth"], lifetime=60, user_id=1, user="a@b", client_id="c")
    assert token.startswith("sbx-hs-at-") and decode_access_token(token) is not None
    assert is_sandbox_token(token) and not is_sandbox_token("CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQAf3xBKmlwHjX7")
    settings.SECRET_KEY = "another-installation"
    from sandbox.hubspot import tokens

    tokens._VERIFIED.clear()
    assert decode_access_token(token) is None


def test_sandbox_urls_404_when_sandbox_is_off(settings, client):
    import hubsync.urls

    settings.SANDBOX = False
    importlib.reload(hubsync.urls)
    clear_url_caches()
    try:
        assert client.get(f"{BASE}/oauth/authorize", authorize_params()).status_code == 404
        assert client.get(f"{BASE}/crm/v3/objects/contacts").status_code == 404
        assert client.post(f"{BASE}/oauth/v1/token", {"grant_type": "refresh_token"}).status_code == 404
    finally:
        settings.SANDBOX = True
        importlib.reload(hubsync.urls)
        clear_url_caches()


def test_permanent_deletion_from_the_portal_page_json_and_command(client, capsys):
    client.post(
        f"{BASE}/portals/new",
        {"hub_id": "4343", "name": "Tiny", "contacts": "20", "companies": "0", "deals": "0", "tickets": "0"},
    )
    client.post(f"{BASE}/portals/4343/mutate", {"collection": "contacts", "archive": "6"})
    # Given ids first (the random picks below could take them): page, JSON twin, command.
    resp = client.post(f"{BASE}/portals/4343/mutate", {"collection": "contacts", "purge_ids": "5, 777"}, follow=True)
    page = resp.content.decode()
    assert "permanently deleted 1 contacts" in page and "No such record (or deleted already): 777" in page
    resp = client.post(
        f"{BASE}/_api/portals/4343/mutate",
        json.dumps({"collection": "contacts", "purge_ids": [6]}),
        content_type="application/json",
    )
    assert resp.status_code == 200 and resp.json()["purged"] == ["6"]
    call_command("sandbox_mutate", "--portal", "4343", "--collection", "contacts", "--purge-id", "7", "--purge-id", "5")
    assert "permanently deleted 1 contacts; no such record (or deleted already): 5" in capsys.readouterr().out

    # Then picked ones: live (a GDPR delete) and archived (HubSpot's recycle bin after 90 days).
    resp = client.post(
        f"{BASE}/portals/4343/mutate", {"collection": "contacts", "purge": "2", "purge_archived": "1"}, follow=True
    )
    assert "permanently deleted 3 contacts" in resp.content.decode()
    resp = client.post(
        f"{BASE}/_api/portals/4343/mutate",
        json.dumps({"collection": "contacts", "purge": 1}),
        content_type="application/json",
    )
    assert resp.status_code == 200 and len(resp.json()["purged"]) == 1
    call_command(
        "sandbox_mutate",
        "--portal",
        "4343",
        "--collection",
        "contacts",
        "--purge",
        "1",
        "--purge-archived",
        "1",
        "--seed",
        "3",
    )
    out = capsys.readouterr().out
    assert "archived 0, permanently deleted 2" in out and "permanently deleted ids:" in out

    purged = RecordChange.objects.filter(portal_id=4343, purged=True)
    assert purged.count() == 1 + 1 + 1 + 3 + 1 + 2
    assert {5, 6, 7} <= set(purged.values_list("object_id", flat=True))
    assert all(ch.properties == {} for ch in purged)  # the tombstones keep no personal data
    assert "permanently deleted</span>" in client.get(f"{BASE}/portals/4343/").content.decode()
    assert "(9 permanently deleted)" in client.get(f"{BASE}/").content.decode()

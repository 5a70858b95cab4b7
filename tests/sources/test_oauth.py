from __future__ import annotations

import html
import logging
import os
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.urls import reverse

from hubsync.models import AuditEvent
from sources import oauth
from sources.models import Source
from tests.factories import SourceFactory
from tests.sources.wizard_helpers import put_wizard

pytestmark = pytest.mark.django_db


def start(client, workspace):
    put_wizard(client, workspace, name="HubSpot")
    response = client.post(reverse("sources:oauth_start"))
    assert response.status_code == 302
    return response["Location"]


def test_start_sends_the_browser_to_hubspot_with_state_and_pkce(owner_client, workspace, settings):
    settings.BASE_URL = "http://127.0.0.1:8123"
    settings.HUBSPOT_AUTHORIZE_URL = ""
    location = start(owner_client, workspace)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://127.0.0.1:8123/sandbox/hubspot/oauth/authorize"
    query = parse_qs(parts.query)
    flow = owner_client.session[oauth.FLOW_SESSION_KEY]
    assert query["state"] == [flow["state"]] and len(flow["state"]) >= 20
    assert query["client_id"] == [settings.HUBSPOT_CLIENT_ID]
    assert query["redirect_uri"] == ["http://127.0.0.1:8123" + reverse("sources:oauth_callback")]
    assert query["scope"][0].split() == ["oauth", "crm.objects.contacts.read"]
    assert "crm.objects.deals.read" in query["optional_scope"][0].split()
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert flow["verifier"] not in location  # only the challenge travels
    # The flag oauthlib needs for plain http is not left switched on.
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_real_hubspot_never_allows_plain_http(monkeypatch):
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    with oauth._oauthlib_env("https://api.hubapi.com/oauth/v1/token"):
        assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    with oauth._oauthlib_env("http://hubspot.example.com/oauth/v1/token"):
        assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    with oauth._oauthlib_env("http://localhost:8000/sandbox/hubspot/oauth/v1/token"):
        assert os.environ["OAUTHLIB_INSECURE_TRANSPORT"] == "1"
    with oauth._oauthlib_env("http://[::1]:8000/x"), oauth._oauthlib_env("http://127.0.0.5/x"):
        pass
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_callback_with_a_wrong_state_is_403(owner_client, workspace):
    start(owner_client, workspace)
    response = owner_client.get(reverse("sources:oauth_callback"), {"code": "c", "state": "forged"})
    assert response.status_code == 403
    assert b"does not belong to your session" in response.content


def test_a_forged_callback_does_not_discard_the_pending_login(owner_client, workspace):
    """Any page can send the browser to the callback with another state: a 403, and the login this session is
    really waiting for still completes."""
    start(owner_client, workspace)
    state = owner_client.session[oauth.FLOW_SESSION_KEY]["state"]
    for forged in ("other", "", state + "x", "é"):
        response = owner_client.get(reverse("sources:oauth_callback"), {"code": "c", "state": forged})
        assert response.status_code == 403
        assert owner_client.session[oauth.FLOW_SESSION_KEY]["state"] == state
    response = owner_client.get(reverse("sources:oauth_callback"), {"error": "access_denied", "state": state})
    assert response.status_code == 200
    assert oauth.FLOW_SESSION_KEY not in owner_client.session  # the matching callback uses it up


def test_cancelling_the_wizard_is_a_post(owner_client, workspace):
    start(owner_client, workspace)
    response = owner_client.get(reverse("sources:wizard_cancel"))
    assert response.status_code == 405  # a link or an <img> on another site cannot discard the wizard
    assert oauth.FLOW_SESSION_KEY in owner_client.session
    page = owner_client.get(reverse("sources:wizard_connect")).content.decode()
    assert f'<form method="post" action="{reverse("sources:wizard_cancel")}"' in page
    response = owner_client.post(reverse("sources:wizard_cancel"))
    assert response.status_code == 302
    assert oauth.FLOW_SESSION_KEY not in owner_client.session


def test_callback_without_a_started_login_is_403(owner_client, workspace):
    response = owner_client.get(reverse("sources:oauth_callback"), {"code": "c", "state": "anything"})
    assert response.status_code == 403


def test_state_is_single_use(owner_client, workspace):
    start(owner_client, workspace)
    state = owner_client.session[oauth.FLOW_SESSION_KEY]["state"]
    first = owner_client.get(reverse("sources:oauth_callback"), {"error": "access_denied", "state": state})
    assert first.status_code == 200
    again = owner_client.get(reverse("sources:oauth_callback"), {"error": "access_denied", "state": state})
    assert again.status_code == 403


def test_state_of_another_session_is_403(owner_client, admin_client_, workspace):
    start(owner_client, workspace)
    state = owner_client.session[oauth.FLOW_SESSION_KEY]["state"]
    put_wizard(admin_client_, workspace)
    response = admin_client_.get(reverse("sources:oauth_callback"), {"code": "c", "state": state})
    assert response.status_code == 403


def test_declined_consent_explains_and_offers_a_retry(owner_client, workspace):
    start(owner_client, workspace)
    state = owner_client.session[oauth.FLOW_SESSION_KEY]["state"]
    response = owner_client.get(
        reverse("sources:oauth_callback"),
        {"error": "access_denied", "error_description": "The user denied the request", "state": state},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "You declined the connection on HubSpot" in body and "The user denied the request" in body
    assert f'action="{reverse("sources:oauth_start")}"' in body and "Try again" in body
    assert not Source.objects.exists()
    # The wizard is still there: "Try again" starts a fresh login.
    retry = owner_client.post(reverse("sources:oauth_start"))
    assert retry.status_code == 302 and owner_client.session[oauth.FLOW_SESSION_KEY]["state"] != state


def test_error_description_is_escaped(owner_client, workspace):
    start(owner_client, workspace)
    state = owner_client.session[oauth.FLOW_SESSION_KEY]["state"]
    response = owner_client.get(
        reverse("sources:oauth_callback"),
        {"error": "server_error", "error_description": "<script>alert(1)</script>", "state": state},
    )
    assert b"<script>alert(1)</script>" not in response.content
    assert b"HubSpot did not complete the login" in response.content


# --- against the HubSpot sandbox over real HTTP ------------------------------------------------------------


@pytest.fixture
def sandbox(hubspot_sandbox, settings):
    settings.BASE_URL = hubspot_sandbox.server_url
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_AUTHORIZE_URL = ""
    return hubspot_sandbox


def consent(location: str, *, action: str = "connect", portal: int = 1001) -> str:
    """Fill in the sandbox's consent page like a user would; returns the path + query HubSpot sends back to."""
    browser = requests.Session()
    page = browser.get(location, timeout=20)
    assert page.status_code == 200, page.text[:500]
    fields = {
        k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    grants = dict.fromkeys(re.findall(r'name="(grant_[^"]+)"', page.text), "1")
    answer = browser.post(
        location, data={**fields, **grants, "portal": str(portal), "action": action}, allow_redirects=False, timeout=20
    )
    assert answer.status_code == 302, answer.text[:500]
    back = urlsplit(answer.headers["Location"])
    assert back.path == reverse("sources:oauth_callback")
    return f"{back.path}?{back.query}"


def test_login_reads_the_account_and_keeps_tokens_encrypted(sandbox, owner_client, workspace):
    callback = consent(start(owner_client, workspace))
    response = owner_client.get(callback)
    # Back on the login step, showing the account, with Next (the guide's words).
    assert response["Location"] == reverse("sources:wizard_connect")
    page = owner_client.get(reverse("sources:wizard_connect")).content.decode()
    assert "acme-sandbox.example" in page and ">Next</a>" in page
    wizard = owner_client.session["source_wizard"]
    conn = wizard["connection"]
    assert conn["hub_id"] == 1001 and conn["hub_domain"] == "acme-sandbox.example"
    assert conn["user"] == "sandbox-admin@acme-sandbox.example"
    assert {"crm.objects.contacts.read", "crm.objects.companies.read", "tickets"} <= set(conn["scopes"])
    assert conn["account"]["timeZone"]
    plain = oauth.Connection.from_session(conn)
    assert plain.access_token.startswith("sbx-hs-at-") and plain.refresh_token.startswith("sbx-hs-rt-")
    stored = Session.objects.get(session_key=owner_client.session.session_key).session_data
    raw = str(SessionStore().decode(stored))
    assert plain.access_token not in raw and plain.refresh_token not in raw
    assert oauth.FLOW_SESSION_KEY not in owner_client.session

    # Schema name, then selective sync with property counts read live from the sandbox.
    owner_client.post(reverse("sources:wizard_schema"), {"schema_name": "hubspot"})
    page = owner_client.get(reverse("sources:wizard_sync")).content.decode()
    counts = {d["name"]: d["count"] for d in owner_client.session["source_wizard"]["discovered"]}
    assert {"contacts", "companies", "deals", "tickets"} <= set(counts)
    assert all(isinstance(counts[c], int) and counts[c] > 5 for c in ("contacts", "companies", "deals", "tickets"))
    assert f"{counts['contacts']} properties" in page
    response = owner_client.post(
        reverse("sources:wizard_sync"),
        {"start_date": "", "sync_interval": "10800", "collections": ["contacts", "companies"]},
    )
    source = Source.objects.get(workspace=workspace)
    assert response["Location"] == reverse("sources:detail", args=[source.pk])
    assert source.enabled is False and source.hub_id == 1001 and source.start_date is None
    assert source.token == plain.refresh_token and source.access_token == plain.access_token
    assert source.access_token_expires_at is not None


def test_declining_on_the_consent_page(sandbox, owner_client, workspace):
    callback = consent(start(owner_client, workspace), action="cancel")
    response = owner_client.get(callback)
    assert response.status_code == 200
    assert b"You declined the connection on HubSpot" in response.content and b"Try again" in response.content
    assert "connection" not in owner_client.session["source_wizard"]


def test_token_error_explains_and_offers_a_retry(sandbox, owner_client, workspace):
    callback = consent(start(owner_client, workspace))
    response = owner_client.get(callback.replace("code=", "code=spoiled"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "HubSpot refused the login code" in body and "Try again" in body
    assert "connection" not in owner_client.session["source_wizard"]
    assert "sbx-hs-code" not in body  # the code is not echoed back


def test_pkce_verifier_is_checked(sandbox, owner_client, workspace):
    callback = consent(start(owner_client, workspace))
    session = owner_client.session
    session[oauth.FLOW_SESSION_KEY]["verifier"] = "x" * 64
    session.save()
    response = owner_client.get(callback)
    assert b"HubSpot refused the login code" in response.content


def test_an_account_already_connected_warns_first(sandbox, owner_client, workspace, other_workspace):
    SourceFactory(workspace=other_workspace, name="Theirs", hub_id=1001, schema_name="hubspot", token="t")
    existing = SourceFactory(workspace=workspace, name="Ours", hub_id=1001, schema_name="hubspot", token="t")
    response = owner_client.get(consent(start(owner_client, workspace)))
    assert response["Location"] == reverse("sources:wizard_duplicate")
    # The warning blocks the later steps until answered.
    assert owner_client.get(reverse("sources:wizard_schema"))["Location"] == reverse("sources:wizard_duplicate")
    assert owner_client.get(reverse("sources:wizard_sync"))["Location"] == reverse("sources:wizard_duplicate")
    page = owner_client.get(reverse("sources:wizard_duplicate")).content.decode()
    assert "already connected in this workspace" in page and "Ours" in page and "Theirs" not in page
    assert reverse("sources:detail", args=[existing.pk]) in page
    response = owner_client.post(reverse("sources:wizard_duplicate"), {"action": "continue"})
    assert response["Location"] == reverse("sources:wizard_schema")
    assert owner_client.get(reverse("sources:wizard_schema")).status_code == 200
    # Cancel instead: nothing is added and the wizard is gone.
    owner_client.get(consent(start(owner_client, workspace)))
    response = owner_client.post(reverse("sources:wizard_duplicate"), {"action": "cancel"})
    assert response["Location"] == reverse("sources:list")
    assert "source_wizard" not in owner_client.session
    assert Source.objects.filter(workspace=workspace).count() == 1


def test_an_account_connected_in_another_workspace_does_not_warn(sandbox, owner_client, workspace, other_workspace):
    SourceFactory(workspace=other_workspace, name="Theirs", hub_id=1001, schema_name="hubspot", token="t")
    response = owner_client.get(consent(start(owner_client, workspace)))
    assert response["Location"] == reverse("sources:wizard_connect")


def _reconnect(client, source) -> str:
    response = client.post(reverse("sources:reconnect", args=[source.pk]))
    assert response.status_code == 302
    return response["Location"]


def test_reconnect_with_the_same_account_replaces_the_tokens(sandbox, owner_client, workspace, owner):
    source = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        hub_id=1001,
        schema_name="hubspot",
        token="old-refresh",
        access_token="old-access",
        status=Source.Status.NEEDS_RECONNECT,
        status_detail="revoked",
    )
    response = owner_client.get(consent(_reconnect(owner_client, source)))
    assert response["Location"] == reverse("sources:settings", args=[source.pk])
    source.refresh_from_db()
    assert source.status == Source.Status.OK and source.status_detail == ""
    assert source.token.startswith("sbx-hs-rt-") and source.access_token.startswith("sbx-hs-at-")
    assert source.hub_domain == "acme-sandbox.example"
    event = AuditEvent.objects.get(verb="reconnect", object_id=str(source.pk))
    assert event.actor == owner and "sbx-hs" not in str(event.changes)


def test_reconnect_with_another_account_is_refused(sandbox, owner_client, workspace):
    source = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        hub_id=1001,
        hub_domain="acme-sandbox.example",
        schema_name="hubspot",
        token="old-refresh",
        status=Source.Status.NEEDS_RECONNECT,
    )
    response = owner_client.get(consent(_reconnect(owner_client, source), portal=1002))
    body = response.content.decode()
    assert "You logged in to HubSpot account 1002" in body and "account 1001" in body
    assert reverse("sources:reconnect", args=[source.pk]) in body
    source.refresh_from_db()
    assert source.token == "old-refresh" and source.status == Source.Status.NEEDS_RECONNECT


def test_settings_offer_the_collections_hubspot_offers(sandbox, owner_client, workspace):
    token = sandbox.token(portal=1001)
    source = SourceFactory(
        workspace=workspace,
        name="HubSpot",
        hub_id=1001,
        schema_name="hubspot",
        token=token["refresh_token"],
        access_token=token["access_token"],
        scopes=sorted(token.get("scopes") or sandbox_scopes()),
    )
    body = owner_client.get(reverse("sources:settings", args=[source.pk])).content.decode()
    contacts = len(
        requests.get(sandbox.base_url + "/crm/v3/properties/contacts", headers=sandbox.headers()).json()["results"]
    )
    assert f"{contacts} properties" in body
    assert "Tickets" in body and "Products" not in body  # the sandbox has no products


def sandbox_scopes() -> list[str]:
    from tests.fixtures_sandbox import HUBSPOT_READ_SCOPES

    return HUBSPOT_READ_SCOPES


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"status":"EXPIRED_AUTH_CODE","message":"auth code is expired"}',
            "EXPIRED_AUTH_CODE: auth code is expired",
        ),
        (502, b"<html>Bad gateway</html>", "http_502"),
    ],
)
def test_older_and_broken_token_error_bodies_are_explained(status, body, expected):
    from oauthlib.oauth2.rfc6749.parameters import parse_token_response

    response = requests.Response()
    response.status_code, response._content, response.reason = status, body, "Bad Gateway"
    normalized = oauth._normalize_token_error(response)
    with pytest.raises(Exception) as caught:
        parse_token_response(normalized.text)
    assert expected in oauth._describe_token_error(caught.value)


def test_no_secret_reaches_the_logs_or_the_pages(sandbox, owner_client, workspace, caplog, settings):
    caplog.set_level(logging.DEBUG)
    owner_client.get(consent(start(owner_client, workspace)))
    owner_client.post(reverse("sources:wizard_schema"), {"schema_name": "hubspot"})
    pages = [owner_client.get(reverse("sources:wizard_sync")).content.decode()]
    owner_client.post(reverse("sources:wizard_sync"), {"sync_interval": "10800", "collections": ["contacts"]})
    source = Source.objects.get(workspace=workspace)
    for name in ("detail", "settings", "models"):
        pages.append(owner_client.get(reverse(f"sources:{name}", args=[source.pk])).content.decode())
    secrets = [source.token, source.access_token, settings.HUBSPOT_CLIENT_SECRET]
    for secret in secrets:
        assert secret not in caplog.text
        assert all(secret not in page for page in pages)
    assert "sbx-hs-code-" not in caplog.text

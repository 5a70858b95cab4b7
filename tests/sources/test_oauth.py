from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from sources import oauth
from sources.models import Source
from tests.sources.conftest import put_wizard

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

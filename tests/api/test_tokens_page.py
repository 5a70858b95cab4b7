"""Settings → API tokens: owners and admins create (shown once), list and revoke; viewers cannot."""

from __future__ import annotations

import pytest

from api.models import ApiToken, hash_token
from hubsync.models import AuditEvent
from tests.api.conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_a_token_is_shown_once_and_stored_hashed(owner_client, workspace):
    page = owner_client.post("/settings/api-tokens/", {"name": "CI deploy", "role": "admin"})
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    token = ApiToken.objects.get()
    html = page.content.decode()
    start = html.index('id="new-token-value"')
    plain = html[start:].split('value="', 1)[1].split('"', 1)[0]
    assert plain.startswith("hs_") and len(plain) > 40
    assert token.token_hash == hash_token(plain) and plain not in str(list(ApiToken.objects.values_list()))
    assert plain not in owner_client.get("/settings/api-tokens/").content.decode()  # never again
    assert plain not in str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert ApiClient(plain).get(f"/api/v1/workspaces/{workspace.pk}/").status_code == 200


def test_admins_manage_tokens_viewers_cannot(admin_client_, viewer_client, workspace, owner):
    assert admin_client_.get("/settings/api-tokens/").status_code == 200
    assert viewer_client.get("/settings/api-tokens/").status_code == 403
    assert viewer_client.post("/settings/api-tokens/", {"name": "x", "role": "admin"}).status_code == 403
    assert not ApiToken.objects.exists()


def test_bad_input_is_refused_on_the_page(owner_client):
    assert owner_client.post("/settings/api-tokens/", {"name": " ", "role": "admin"}).status_code == 400
    assert owner_client.post("/settings/api-tokens/", {"name": "x", "role": "owner"}).status_code == 400
    past = owner_client.post("/settings/api-tokens/", {"name": "x", "role": "admin", "expires_on": "2001-01-01"})
    assert past.status_code == 400 and not ApiToken.objects.exists()


def test_revoke_stops_the_token_at_once(owner_client, admin_token, workspace):
    client = ApiClient(admin_token.token)
    assert client.get(f"/api/v1/workspaces/{workspace.pk}/").status_code == 200
    assert owner_client.post(f"/settings/api-tokens/{admin_token.pk}/revoke/").status_code == 302
    answer = client.get(f"/api/v1/workspaces/{workspace.pk}/")
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]
    assert AuditEvent.objects.filter(verb="api_token.revoke").count() == 1


def test_another_workspaces_owner_cannot_revoke(outsider_client, admin_token):
    assert outsider_client.post(f"/settings/api-tokens/{admin_token.pk}/revoke/").status_code == 404
    admin_token.refresh_from_db()
    assert admin_token.revoked_at is None


def test_api_calls_show_in_the_audit_log(owner_client, api, workspace):
    assert api.post(f"/api/v1/workspaces/{workspace.pk}/destinations/", {"name": "Segment"}).status_code == 201
    page = owner_client.get("/audit/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "api.call" in html and "Segment" in html
    assert api.token not in html

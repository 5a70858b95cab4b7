from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_dashboard_requires_login(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_dashboard_shows_empty_state(owner_client):
    response = owner_client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert b"Connect your first source" in response.content


def test_htmx_requests_are_sent_to_login_as_a_whole_page(client):
    response = client.get(reverse("members"), headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith(reverse("account_login") + "?next=/members/")


def test_viewer_post_is_refused_with_a_clear_message(viewer_client, workspace):
    response = viewer_client.post(reverse("workspace_settings"), {"name": "Renamed"})
    assert response.status_code == 403
    assert "Your role (viewer) cannot do this; it needs owner." in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.name == "Acme"

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

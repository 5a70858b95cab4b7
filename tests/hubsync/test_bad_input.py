"""Bad input to the workspace views gets a clear answer, never a 500 (each case was a 500 before)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hubsync.middleware import SESSION_KEY

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value", ["abc", "", "1e3", "-1", "99999999999999999999999", "１", "1 OR 1=1"])
def test_switching_to_a_workspace_id_that_is_not_a_number_is_ignored(owner_client, workspace, value):
    response = owner_client.post(reverse("workspace_switch"), {"workspace": value})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert owner_client.session[SESSION_KEY] == workspace.pk


def test_preview_collection_and_debugger_queries_with_nul_are_a_400(owner_client):
    for url, data in [
        (reverse("record_debugger"), {"q": "1\x00"}),
        (reverse("record_debugger"), {"object_id": "\x00"}),
    ]:
        assert owner_client.get(url, data).status_code == 400

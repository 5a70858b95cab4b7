"""Helpers for the source wizard and source page tests (not a conftest: fixtures live in the test modules)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from sources.oauth import Connection

ACCESS_TOKEN = "pat-na1-access-0123456789abcdef"
REFRESH_TOKEN = "refresh-0123456789abcdef"


def make_connection(hub_id: int = 4242, **kw) -> Connection:
    return Connection(
        hub_id=hub_id,
        hub_domain=kw.pop("hub_domain", f"portal-{hub_id}.hubspot.test"),
        user=kw.pop("user", "marketing@acme.test"),
        scopes=kw.pop("scopes", ["crm.objects.companies.read", "crm.objects.contacts.read", "oauth", "tickets"]),
        access_token=kw.pop("access_token", ACCESS_TOKEN),
        refresh_token=kw.pop("refresh_token", REFRESH_TOKEN),
        expires_at=kw.pop("expires_at", timezone.now() + timedelta(minutes=30)),
        **kw,
    )


def put_wizard(client, workspace, **data) -> None:
    """Put the wizard's session state as if the earlier steps had run (the OAuth steps are tested with the
    sandbox in test_oauth.py)."""
    session = client.session
    state = {"workspace_id": workspace.pk, "name": "HubSpot", "label": ""}
    state.update(data)
    if isinstance(state.get("connection"), Connection):
        state["connection"] = state["connection"].to_session()
    session["source_wizard"] = state
    session.save()

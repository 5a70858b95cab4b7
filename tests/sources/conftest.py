"""Helpers for the source wizard and source page tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sources.models import Source, SourceCollection
from sources.oauth import Connection, DiscoveredCollection, remember_available

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


@pytest.fixture
def source(workspace) -> Source:
    s = Source.objects.create(
        workspace=workspace,
        name="HubSpot",
        hub_id=4242,
        hub_domain="portal-4242.hubspot.test",
        scopes=["crm.objects.companies.read", "crm.objects.contacts.read", "oauth"],
        token=REFRESH_TOKEN,
        access_token=ACCESS_TOKEN,
        schema_name="hubspot",
    )
    SourceCollection.objects.create(source=s, collection="contacts")
    SourceCollection.objects.create(source=s, collection="companies")
    # What the wizard leaves behind: the collections HubSpot offered, so the Settings tab needs no HTTP here.
    remember_available(s, [DiscoveredCollection(n, n.title(), 10) for n in ("contacts", "companies", "deals")])
    return s


@pytest.fixture
def foreign_source(other_workspace) -> Source:
    return Source.objects.create(
        workspace=other_workspace, name="Globex HubSpot", hub_id=777, token="x", schema_name="hubspot"
    )

"""The audit log page: owners and admins read it (newest first, paged), viewers get 403; secrets stay out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from hubsync import audit
from hubsync.models import AuditEvent
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("who", ["owner_client", "admin_client_"])
def test_owners_and_admins_see_the_log(request, who, workspace, owner):
    audit.record(workspace=workspace, actor=owner, verb="update", obj=workspace, changes={"name": ["Old", "Acme"]})
    html = request.getfixturevalue(who).get(reverse("audit_log")).content.decode()
    assert owner.email in html
    assert "update" in html
    assert "hubsync.Workspace" in html
    assert "<del>Old</del> → <ins>Acme</ins>" in html


def test_viewers_get_403(viewer_client):
    response = viewer_client.get(reverse("audit_log"))
    assert response.status_code == 403
    assert "needs admin" in response.content.decode()
    assert reverse("audit_log") not in viewer_client.get(reverse("dashboard")).content.decode()  # not in the nav


def test_newest_first_and_paged(owner_client, workspace, owner):
    start = timezone.now() - timedelta(days=1)
    AuditEvent.objects.bulk_create(
        AuditEvent(
            workspace=workspace,
            actor=owner,
            verb="update",
            object_type="t",
            object_repr=f"event-{i:03d}",
            at=start + timedelta(minutes=i),
        )
        for i in range(120)
    )
    first = owner_client.get(reverse("audit_log")).content.decode()
    assert first.index("event-119") < first.index("event-118")
    assert "event-070" in first and "event-069" not in first  # 50 per page
    assert "Page 1 of 3" in first
    last = owner_client.get(reverse("audit_log") + "?page=3").content.decode()
    assert "event-000" in last and "event-020" not in last
    beyond = owner_client.get(reverse("audit_log") + "?page=999").content.decode()
    assert "Page 3 of 3" in beyond


def test_only_this_workspaces_events(owner_client, other_workspace, outsider):
    audit.record(workspace=other_workspace, actor=outsider, verb="create", object_type="x", object_repr="globex-secret")
    html = owner_client.get(reverse("audit_log")).content.decode()
    assert "globex-secret" not in html
    assert "No changes recorded yet" in html  # the empty state says what will appear


def test_secret_fields_are_redacted(workspace, owner, owner_client):
    source = SourceFactory(workspace=workspace, name="HubSpot", schema_name="hubspot", token="refresh-123")
    audit.record(
        workspace=workspace,
        actor=owner,
        verb="update",
        obj=source,
        changes={"token": ["old-token", "refresh-123"], "name": ["A", "HubSpot"]},
    )
    event = AuditEvent.objects.get(object_type="sources.Source")
    assert event.changes["token"] == audit.REDACTED
    html = owner_client.get(reverse("audit_log")).content.decode()
    assert "refresh-123" not in html and "old-token" not in html

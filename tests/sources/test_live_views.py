"""The source page's "Live" panel and switch (sources.views.detail.source_live, services.set_live, selectors
.live_summary, mappings' live_delivery tag): figures, roles, audit, tenancy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hubsync.models import AuditEvent
from sources.models import LiveCounter, LiveEvent, Source, SourceCollection
from sources.selectors import live_summary
from tests.factories import (
    DataModelFactory,
    DeliveryStateFactory,
    MappingFactory,
    SourceFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(workspace) -> Source:
    source = SourceFactory(workspace=workspace, hub_id=4242, enabled=True)
    SourceCollection.objects.create(source=source, collection="contacts")
    return source


def _applied(source: Source, object_id: int, *, lag: float, event_id: int) -> LiveEvent:
    applied = timezone.now() - timedelta(seconds=30)
    return LiveEvent.objects.create(
        source=source,
        event_id=event_id,
        collection="contacts",
        object_id=object_id,
        kind="change",
        occurred_at=applied - timedelta(seconds=lag),
        applied_at=applied,
        state=LiveEvent.State.APPLIED,
    )


def test_summary_counts_and_lag(source):
    LiveCounter.objects.create(source=source, received=12, duplicates=2, applied=9, last_event_at=timezone.now())
    for n, lag in enumerate([1.0, 2.0, 3.0, 10.0]):
        _applied(source, 100 + n, lag=lag, event_id=n)
    LiveEvent.objects.create(
        source=source, event_id=99, collection="contacts", object_id=5, kind="change", occurred_at=timezone.now()
    )
    summary = live_summary(source)
    assert (summary["received"], summary["applied"], summary["duplicates"], summary["pending"]) == (12, 9, 2, 1)
    assert summary["mirror_lag"] == {"n": 4, "p50": 3.0, "p95": 10.0}


def test_page_shows_live_figures_and_the_segment_lag(owner_client, source):
    LiveCounter.objects.create(source=source, received=3, duplicates=1, applied=2, last_event_at=timezone.now())
    event = _applied(source, 501, lag=1.5, event_id=1)
    mapping = MappingFactory(data_model=DataModelFactory(source=source, collection="contacts"))
    DeliveryStateFactory(mapping=mapping, object_id=501, delivered_at=event.applied_at + timedelta(seconds=2))
    html = owner_client.get(f"/sources/{source.pk}/").content.decode()
    assert 'id="live"' in html and "3 / 2" in html and "1 duplicate" in html
    assert "p50 1.5 s" in html  # HubSpot -> mirror
    assert "p50 3.5 s" in html  # HubSpot -> Segment accepted (occurred + 1.5 s applied + 2 s delivered)
    assert "/hooks/hubspot/" in html
    assert "Turn live updates off" in html


def test_viewer_sees_figures_but_no_switch_and_cannot_post(viewer_client, source):
    html = viewer_client.get(f"/sources/{source.pk}/").content.decode()
    assert 'id="live"' in html and "Turn live updates" not in html
    assert viewer_client.post(f"/sources/{source.pk}/live/", {"live": "0"}).status_code == 403
    source.refresh_from_db()
    assert source.live_enabled is True


@pytest.mark.parametrize("client_fixture", ["owner_client", "admin_client_"])
def test_owner_and_admin_switch_live_updates_audited(request, client_fixture, source, workspace):
    client = request.getfixturevalue(client_fixture)
    LiveEvent.objects.create(
        source=source, event_id=7, collection="contacts", object_id=5, kind="change", occurred_at=timezone.now()
    )
    response = client.post(f"/sources/{source.pk}/live/", {"live": "0"})
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.live_enabled is False
    assert not LiveEvent.objects.filter(source=source, state="pending").exists()  # dropped: syncs carry on
    assert AuditEvent.objects.filter(workspace=workspace, verb="live.off", object_id=str(source.pk)).exists()
    client.post(f"/sources/{source.pk}/live/", {"live": "1"})
    source.refresh_from_db()
    assert source.live_enabled is True
    assert AuditEvent.objects.filter(verb="live.on", object_id=str(source.pk)).count() == 1


def test_outsider_cannot_switch(outsider_client, source):
    assert outsider_client.post(f"/sources/{source.pk}/live/", {"live": "0"}).status_code == 404
    source.refresh_from_db()
    assert source.live_enabled is True

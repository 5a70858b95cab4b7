"""The record debugger page for an id that left the mirror, and the sync run page's per-collection counts."""

from __future__ import annotations

from django.urls import reverse

from sources.models import MergedRecord
from tests.factories import SourceFactory, SyncRunFactory


def test_a_merged_id_is_headed_merged_not_deleted(owner_client, workspace):
    source = SourceFactory(workspace=workspace)
    MergedRecord.objects.create(source=source, collection="contacts", object_id=501, merged_into=777)
    page = owner_client.get(reverse("record_debugger"), {"q": "501"}).content.decode()
    assert "<strong>Merged in HubSpot.</strong>" in page
    assert "Deleted in HubSpot." not in page
    assert "777" in page


def test_the_sync_run_page_counts_merged_records(owner_client, workspace):
    source = SourceFactory(workspace=workspace)
    counts = {
        "contacts": {"read": 10, "new": 0, "updated": 2, "unchanged": 8, "archived": 0, "deleted": 1, "merged": 3}
    }
    run = SyncRunFactory(source=source, status="succeeded", counts=counts)
    page = owner_client.get(reverse("sync_run", args=[source.pk, run.pk])).content.decode()
    assert ">Merged</th>" in page
    assert '<td class="right">3</td><td class="right">1</td></tr>' in page  # merged, then deleted

"""Record history (sources.history): written by the extraction engine for every real change of an existing
record, against the HubSpot sandbox over real HTTP; bounded values; constant queries per page; retention."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from sources import history
from sources.models import Record, RecordChange, SyncRun
from tests.factories import SourceFactory
from tests.sources.extract_helpers import PORTAL, make_source, sync

pytestmark = pytest.mark.django_db(transaction=True)


def test_diff_lists_changed_properties_and_caps_long_values():
    long = "x" * (history.VALUE_CHARS + 50)
    changes, cut = history.diff_properties(
        {"a": "1", "b": "same", "gone": "old", "text": "short"}, {"a": "2", "b": "same", "new": "n", "text": long}
    )
    assert list(changes) == ["a", "gone", "new", "text"]
    assert changes["a"] == ["1", "2"] and changes["gone"] == ["old", None] and changes["new"] == [None, "n"]
    assert changes["text"][1] == "x" * history.VALUE_CHARS + history.ELLIPSIS and cut
    assert history.diff_properties({"a": "1"}, {"a": "1"}) == ({}, False)


def test_engine_records_updates_archives_and_restores_but_not_creations(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=60, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    assert not RecordChange.objects.exists()
    before = {r.object_id: r for r in Record.objects.filter(source=source)}

    result = sandbox.mutate(PORTAL, "contacts", create=3, update=5, archive=2, seed=21)
    run = sync(source)

    updated = {int(i) for i in result.updated}
    archived = {int(i) for i in result.archived}
    rows = {c.object_id: c for c in RecordChange.objects.filter(source=source)}
    assert set(rows) == updated | archived  # nothing for the 3 new records
    for object_id in updated:
        change = rows[object_id]
        now = Record.objects.get(source=source, object_id=object_id)
        old = before[object_id].properties
        expected = {
            k: [old.get(k), now.properties.get(k)]
            for k in old.keys() | now.properties.keys()
            if old.get(k) != now.properties.get(k)
        }
        assert change.changes == expected and change.changes  # exactly the properties that changed
        assert change.change_seq == now.change_seq and change.run_id == run.pk and change.archived is None
        assert change.previous_updated_at == before[object_id].updated_at
    for object_id in archived:
        assert rows[object_id].archived is True and rows[object_id].changes == {}

    # Restored in HubSpot: a change with archived=False.
    from sandbox.hubspot.models import RecordChange as SandboxChange

    gone = next(iter(archived))
    SandboxChange.objects.filter(object_id=gone).update(
        archived=False, archived_ms=None, updated_ms=int(time.time() * 1000)
    )
    sync(source)
    restored = RecordChange.objects.filter(source=source, object_id=gone).order_by("-change_seq").first()
    assert restored.archived is False


def test_history_costs_a_constant_number_of_queries_per_page(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=600, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)

    def queries_for_updates(n: int, seed: int) -> int:
        sandbox.mutate(PORTAL, "contacts", update=n, seed=seed)
        count = [0]

        def counter(execute, sql, params, many, context):
            count[0] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            run = sync(source)
        assert run.counts["contacts"]["updated"] == n
        return count[0]

    one_page = queries_for_updates(200, 1)  # search pages hold 200 records
    three_pages = queries_for_updates(600, 2)
    per_page = (three_pages - one_page) / 2
    # The engine's page (<= 8) plus the history's SELECT of the old versions and its INSERT.
    assert per_page <= 10, (one_page, three_pages)
    assert RecordChange.objects.filter(source=source).count() == 800


def test_no_history_when_turned_off(workspace, sandbox, settings):
    settings.HUBSYNC_RECORD_HISTORY_DAYS = 0
    sandbox.seed(PORTAL, contacts=20, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    sandbox.mutate(PORTAL, "contacts", update=5, seed=4)
    assert sync(source).counts["contacts"]["updated"] == 5
    assert not RecordChange.objects.exists()


@pytest.mark.django_db
def test_prune_deletes_only_what_is_older_than_the_retention(workspace, settings):

    settings.HUBSYNC_RECORD_HISTORY_DAYS = 30
    source = SourceFactory(workspace=workspace, name="s", schema_name="s")
    now = timezone.now()
    for i, age in enumerate([90, 45, 31, 29, 1, 0]):
        RecordChange.objects.create(
            source=source, collection="contacts", object_id=i, change_seq=i, seen_at=now - timedelta(days=age)
        )
    assert history.prune(now=now) == 3
    assert sorted(RecordChange.objects.values_list("object_id", flat=True)) == [3, 4, 5]
    assert history.prune(now=now) == 0
    settings.HUBSYNC_RECORD_HISTORY_DAYS = 0
    assert history.prune(now=now) == 3 and not RecordChange.objects.exists()

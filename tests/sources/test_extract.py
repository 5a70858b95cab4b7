"""The extraction engine against the HubSpot sandbox over real HTTP (a connector acceptance suite).

The oracle is the sandbox itself, read independently of our client with plain `requests` (every property, every
page): after each scenario the mirror must equal it exactly.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import sources.extraction as extract
from sources.extraction import base, deletions, mirror, reads
from sources.hubspot import HubSpotClient
from sources.models import Record, Source, SourceCollection, SyncRun
from sources.runs import create_run
from tests.sources.extract_helpers import (
    PORTAL,
    assert_mirror_equals_sandbox,
    make_source,
    max_seq,
    sandbox_ids,
    sandbox_truth,
    sync,
)


class Stop(Exception):
    """Raised from the after-page hook to kill a run at a chosen checkpoint."""


# --- connection, discovery ----------------------------------------------------------------------------------


def test_connection_check_good_and_bad_credentials(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=20, companies=0, deals=0, tickets=0)
    good = make_source(workspace, sandbox)
    details = HubSpotClient(good).account_details()
    assert int(details["portalId"]) == PORTAL

    bad = Source.objects.create(
        workspace=workspace,
        name="bad",
        schema_name="bad",
        hub_id=PORTAL,
        token="not-a-refresh-token",
        access_token="not-a-token",
        access_token_expires_at=timezone.now() + timedelta(hours=1),
    )
    SourceCollection.objects.create(source=bad, collection="contacts")
    run = sync(bad)
    assert run.status == SyncRun.Status.FAILED
    assert "credentials" in run.error
    bad.refresh_from_db()
    assert bad.status == Source.Status.NEEDS_RECONNECT
    assert bad.next_sync_at is None  # the schedule stays stopped until the admin reconnects
    assert "not-a-token" not in run.error and "not-a-refresh-token" not in run.error
    assert not Record.objects.filter(source=bad).exists()


def test_discovery_stores_schema_and_records_changes(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=10, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    sc = SourceCollection.objects.get(source=source, collection="contacts")
    names = {
        p["name"]
        for p in requests.get(
            f"{sandbox.base_url}/crm/v3/properties/contacts", headers=sandbox.headers(PORTAL), timeout=30
        ).json()["results"]
    }
    assert set(sc.properties) == names
    assert sc.properties["email"]["type"] == "string"
    assert sc.schema_changes == []  # the first discovery is not a change

    sandbox.add_property("loyalty_tier", portal=PORTAL, collection="contacts")
    sandbox.delete_property(
        next(n for n in sorted(names) if n.startswith("hs_") is False and n != "email"),
        portal=PORTAL,
        collection="contacts",
    )
    sync(source)
    sc.refresh_from_db()
    assert "loyalty_tier" in sc.properties
    change = sc.schema_changes[-1]
    assert change["added"] == ["loyalty_tier"] and len(change["removed"]) == 1 and change["at"]


# --- reads ----------------------------------------------------------------------------------------------


def test_full_read_equals_sandbox_and_second_full_read_agrees(workspace, sandbox, monkeypatch):
    sandbox.seed(PORTAL, contacts=250, companies=120, deals=0, tickets=0)
    notified: list = []
    monkeypatch.setattr(base, "notify_changes", lambda source, collections, sync_run=None: notified.append(collections))
    source = make_source(workspace, sandbox, collections=("contacts", "companies"))

    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["new"] == 250 and run.counts["companies"]["new"] == 120
    assert run.progress_done == 370 and run.progress_total == 370
    assert run.api_calls > 0
    # The run's use of the budget, stored by the engine: two searches per collection (the size estimate and the
    # largest id, asked at once), the rest list/read requests; no 429, nothing left in flight.
    assert 2 <= run.peak_search_1s <= 4 and 0 < run.peak_requests_10s <= run.api_calls - 4
    assert (run.rate_limited, run.requests_in_flight) == (0, 0)
    assert_mirror_equals_sandbox(source, sandbox, "contacts")
    assert_mirror_equals_sandbox(source, sandbox, "companies")
    assert notified[-1] == ["companies", "contacts"]
    source.refresh_from_db()
    assert source.last_run_id == run.pk and source.first_synced_at
    assert source.next_sync_at > timezone.now() + source.sync_interval - timedelta(minutes=1)
    seqs = list(Record.objects.filter(source=source).values_list("change_seq", flat=True))
    assert len(set(seqs)) == len(seqs) == 370  # every change its own sequence number

    top = max_seq(source)
    again = sync(source, SyncRun.Trigger.FULL)
    assert again.status == SyncRun.Status.SUCCEEDED
    assert again.counts["contacts"]["unchanged"] == 250 and again.counts["contacts"]["new"] == 0
    assert again.counts["contacts"]["updated"] == 0
    assert max_seq(source) == top  # nothing rewritten
    assert_mirror_equals_sandbox(source, sandbox, "contacts")


def test_a_large_load_refreshes_the_statistics_the_mirrors_lookups_need(workspace, sandbox):
    """After a load of more than a thousand rows the engine ANALYZEs the mirror (the per-page lookup scans a
    source's whole collection on an empty table's statistics), on the columns its queries and the delivery's
    filter on: PostgreSQL then knows the rows, and the properties documents cost nothing to sample."""
    if connection.vendor != "postgresql":
        pytest.skip("ANALYZE is PostgreSQL's")
    sandbox.seed(PORTAL, contacts=1_200, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    with CaptureQueriesContext(connection) as queries:
        run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    table = Record._meta.db_table
    analyzed = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("ANALYZE")]
    assert analyzed == [f"ANALYZE {table} ({', '.join(base.ANALYZE_COLUMNS)})"]
    with connection.cursor() as cur:
        cur.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        assert cur.fetchone()[0] >= 1_200
        cur.execute("SELECT attname FROM pg_stats WHERE tablename = %s", [table])
        assert {"source_id", "collection", "object_id"} <= {row[0] for row in cur.fetchall()}


def test_incremental_picks_up_exactly_the_changes(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=300, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    top = max_seq(source)

    result = sandbox.mutate(PORTAL, "contacts", create=5, update=7, archive=3, seed=11)
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    counts = run.counts["contacts"]
    assert (counts["new"], counts["updated"], counts["archived"]) == (5, 7, 3), counts
    changed = set(Record.objects.filter(source=source, change_seq__gt=top).values_list("object_id", flat=True))
    assert changed == {int(i) for i in result.created + result.updated + result.archived}
    assert set(Record.objects.filter(source=source, archived=True).values_list("object_id", flat=True)) == {
        int(i) for i in result.archived
    }
    assert_mirror_equals_sandbox(source, sandbox)

    # No change: a handful of requests, nothing written.
    quiet = sync(source)
    assert quiet.counts["contacts"]["new"] == quiet.counts["contacts"]["updated"] == 0
    assert quiet.counts["contacts"]["archived"] == 0
    assert quiet.api_calls <= 6
    assert quiet.peak_search_1s >= 1  # an incremental read searches
    assert max_seq(source) == top + 15


def test_restored_record_is_unarchived(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=30, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    gone = sandbox.mutate(PORTAL, "contacts", archive=1, seed=3).archived[0]
    sync(source)
    assert Record.objects.get(source=source, object_id=int(gone)).archived
    from sandbox.hubspot.models import RecordChange

    RecordChange.objects.filter(object_id=int(gone)).update(
        archived=False, archived_ms=None, updated_ms=int(time.time() * 1000)
    )
    sync(source)
    assert not Record.objects.get(source=source, object_id=int(gone)).archived
    assert_mirror_equals_sandbox(source, sandbox)


def test_start_date_reads_only_records_modified_since(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=200, companies=0, deals=0, tickets=0)
    recent = sandbox.mutate(PORTAL, "contacts", update=4, create=2, seed=5)
    source = make_source(workspace, sandbox, start_date=(timezone.now() - timedelta(days=1)).date())
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert set(Record.objects.filter(source=source).values_list("object_id", flat=True)) == {
        int(i) for i in recent.created + recent.updated
    }


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_resuming_from_every_checkpoint_loses_nothing(workspace, sandbox, monkeypatch, mode):
    """For every page k: kill the run after page k, run again, and the mirror is complete; the rerun starts at
    the checkpoint (it reads only what came after page k)."""
    sandbox.seed(PORTAL, contacts=450, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    changed: set[int] = set()
    start_cursor: dict = {}
    if mode == "incremental":
        sync(source, SyncRun.Trigger.FIRST)
        result = sandbox.mutate(PORTAL, "contacts", update=120, create=30, seed=9)
        changed = {int(i) for i in result.created + result.updated}
        start_cursor = SourceCollection.objects.get(source=source).cursor
        monkeypatch.setattr(reads, "SEARCH_LIMIT", 40)  # several search pages from a small change set
        page_size, expected = 40, len(changed)
    else:
        page_size, expected = 100, 450
    pages = {"n": 0, "stop_at": 0}

    def stop_after(engine, sc):
        pages["n"] += 1
        if pages["n"] == pages["stop_at"]:
            raise Stop

    monkeypatch.setattr(mirror, "after_page", stop_after)
    checkpoints = -(-expected // page_size)
    assert checkpoints >= 4
    for k in range(1, checkpoints):
        # Back to the state before the scenario's run.
        if mode == "full":
            Record.objects.filter(source=source).delete()
        else:
            Record.objects.filter(source=source, object_id__in=changed).delete()
        SourceCollection.objects.filter(source=source).update(cursor=start_cursor)
        pages.update(n=0, stop_at=k)
        with pytest.raises(Stop):
            sync(source, SyncRun.Trigger.MANUAL)
        killed = SyncRun.objects.filter(source=source).first()
        assert killed.status == SyncRun.Status.FAILED and "Stop" in killed.error
        pages.update(n=0, stop_at=0)
        resumed = sync(source, SyncRun.Trigger.MANUAL)
        assert resumed.status == SyncRun.Status.SUCCEEDED, resumed.error
        assert resumed.counts["contacts"]["new"] == expected - k * page_size, k
        assert_mirror_equals_sandbox(source, sandbox)


def test_cursor_in_the_future_reads_nothing(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=40, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    sandbox.mutate(PORTAL, "contacts", update=3, seed=2)
    future = int((time.time() + 86400) * 1000)
    SourceCollection.objects.filter(source=source).update(cursor={"mode": "idle", "modified_since_ms": future})
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.counts["contacts"]["read"] == 0
    assert SourceCollection.objects.get(source=source).cursor == {"mode": "idle", "modified_since_ms": future}


def test_failing_collection_makes_the_run_partial(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=30, companies=0, deals=0, tickets=10)
    source = make_source(
        workspace, sandbox, collections=("contacts", "tickets"), scopes=["oauth", "crm.objects.contacts.read"]
    )
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.PARTIAL
    assert run.counts["tickets"]["error"].startswith("MissingScopes")
    assert run.counts["contacts"]["new"] == 30 and not run.counts["contacts"]["error"]
    assert "MissingScopes" in SourceCollection.objects.get(source=source, collection="tickets").last_error
    assert_mirror_equals_sandbox(source, sandbox)


def test_sync_command_runs_in_the_foreground(workspace, sandbox, capsys):
    sandbox.seed(PORTAL, contacts=120, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    call_command("sync", str(source.pk))
    out = capsys.readouterr().out
    assert "contacts: done: 120 read, 120 new" in out
    assert "succeeded" in out
    call_command("sync", str(source.pk), "--full")
    assert "120 unchanged" in capsys.readouterr().out
    assert SyncRun.objects.filter(source=source).first().trigger == SyncRun.Trigger.FULL


# --- faults ---------------------------------------------------------------------------------------------


def test_429_storm(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=600, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    # The sandbox enforces a tiny budget; our limiter is off, so HubSpot's 429s do the talking.
    sandbox.set_knobs(rate_limits=True, rate_limit_max=3, rate_limit_interval_ms=300, search_rate_limit=2)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.retries > 0
    sandbox.mutate(PORTAL, "contacts", update=50, create=10, seed=4)
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    sandbox.set_knobs(rate_limits=False)
    assert_mirror_equals_sandbox(source, sandbox)


def test_5xx_and_connection_resets(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=800, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    # Each attempt fails with p ≈ 0.19, so a request spends its 7 attempts with p ≈ 1e-5 (at 0.25 + 0.1 it was
    # 4e-4 a request, and one CI run in a few dozen failed); the first three requests fail for sure.
    sandbox.set_knobs(error_rate=0.15, reset_rate=0.05, fail_next=3, fail_next_status="503")
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    sandbox.mutate(PORTAL, "contacts", update=40, archive=4, seed=8)
    run2 = sync(source)
    assert run2.status == SyncRun.Status.SUCCEEDED, run2.error
    assert run.retries + run2.retries > 0
    sandbox.set_knobs(error_rate=0, reset_rate=0)
    assert_mirror_equals_sandbox(source, sandbox)


def test_token_expires_mid_run(workspace, sandbox, monkeypatch):
    sandbox.seed(PORTAL, contacts=500, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    pages = {"n": 0}

    def expire_token(engine, sc):
        pages["n"] += 1
        if pages["n"] == 2:
            # HubSpot expires the token earlier than the expiry we stored: the next call gets a 401.
            engine.client.source.access_token = sandbox.access_token(PORTAL, lifetime=-60)

    monkeypatch.setattr(mirror, "after_page", expire_token)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.retries >= 1
    assert_mirror_equals_sandbox(source, sandbox)


def test_search_lag_is_covered_by_the_overlap(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=100, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    sandbox.set_knobs(search_lag_seconds=2)
    sandbox.mutate(PORTAL, "contacts", update=10, create=3, seed=6)
    early = sync(source)  # runs at once: the search index does not show the changes yet
    assert early.counts["contacts"]["new"] + early.counts["contacts"]["updated"] < 13
    time.sleep(2.2)
    late = sync(source)  # its window starts an overlap before the previous end: the lagging records are in it
    assert (
        late.counts["contacts"]["new"]
        + late.counts["contacts"]["updated"]
        + early.counts["contacts"]["new"]
        + early.counts["contacts"]["updated"]
        == 13
    )
    sandbox.set_knobs(search_lag_seconds=0)
    assert_mirror_equals_sandbox(source, sandbox)


def test_15000_records_with_one_timestamp(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=10, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    sandbox.mutate(PORTAL, "contacts", create=15_000, same_timestamp=True, seed=1)
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["new"] == 15_000
    assert_mirror_equals_sandbox(source, sandbox)


def test_ids_of_different_lengths_compare_as_numbers(workspace, sandbox, monkeypatch):
    from sandbox.hubspot.data import id_for_index

    sandbox.seed(PORTAL, contacts=10_001, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    SourceCollection.objects.filter(source=source).update(
        cursor={"mode": "idle", "modified_since_ms": int(time.time() * 1000)}
    )
    stamp = int(time.time() * 1000)
    ids = [id_for_index(i) for i in (0, 10, 40, 100, 200, 10_000)]  # 1, 101, 1001, 20001, 1000001, 50000001
    ids += [int(i) for i in sandbox.mutate(PORTAL, "contacts", create=1, seed=3, at_ms=stamp).created]  # 11 digits
    assert len({len(str(i)) for i in ids}) == len(ids)
    for object_id in ids:
        sandbox.set_properties(object_id, {"jobtitle": f"len {len(str(object_id))}"}, portal=PORTAL, at_ms=stamp)
    monkeypatch.setattr(reads, "SEARCH_LIMIT", 2)  # keyset pages cross every id length boundary
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert set(Record.objects.filter(source=source).values_list("object_id", flat=True)) == set(ids)
    for record in Record.objects.filter(source=source):
        assert record.properties["jobtitle"] == f"len {len(str(record.object_id))}"


# --- ownership -----------------------------------------------------------------------------------------


def test_a_presumed_dead_worker_cannot_write_after_the_takeover(workspace, sandbox, monkeypatch):
    """Fencing: the page heartbeat only matches while this worker owns the run, so a worker that was taken
    over (it looked dead, but was only slow) rolls back its page and stops."""
    from sources.runs import mark_lost

    sandbox.seed(PORTAL, contacts=500, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    pages = {"n": 0}

    def taken_over(engine, sc):
        pages["n"] += 1
        if pages["n"] == 2:
            mark_lost(SyncRun.objects.get(pk=engine.run_row.pk))

    monkeypatch.setattr(mirror, "after_page", taken_over)
    run = create_run(source=source, trigger=SyncRun.Trigger.FIRST)
    assert extract.execute_run(run_id=run.pk) is None
    assert Record.objects.filter(source=source).count() == 200  # page 3 was rolled back
    assert SourceCollection.objects.get(source=source).cursor["after"]
    run.refresh_from_db()
    assert run.status == SyncRun.Status.FAILED and "worker lost" in run.error

    monkeypatch.setattr(mirror, "after_page", lambda engine, sc: None)
    resumed = sync(source)
    assert resumed.counts["contacts"]["new"] == 300
    assert_mirror_equals_sandbox(source, sandbox)


def test_time_limit_ends_the_run_partial_and_due_again(workspace, sandbox, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    sandbox.seed(PORTAL, contacts=300, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)

    def out_of_time(engine, sc):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(mirror, "after_page", out_of_time)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.PARTIAL and "time limit" in run.error
    source.refresh_from_db()
    assert source.next_sync_at <= timezone.now()  # the dispatcher continues it at its next tick
    assert Record.objects.filter(source=source).count() == 100


def test_full_sync_rereads_and_honours_the_start_date(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=150, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)  # full history
    recent = sandbox.mutate(PORTAL, "contacts", update=6, seed=12)
    source.start_date = (timezone.now() - timedelta(days=2)).date()
    source.save(update_fields=["start_date"])
    run = sync(source, SyncRun.Trigger.FULL)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["read"] == 6 and run.counts["contacts"]["updated"] == 6
    assert Record.objects.filter(source=source).count() == 150  # older mirror rows stay
    assert {int(i) for i in recent.updated} <= set(
        Record.objects.filter(source=source, change_seq__gt=150).values_list("object_id", flat=True)
    )


def test_a_page_costs_a_constant_number_of_queries(workspace, sandbox):
    from django.db import connection

    def queries_for_first_sync(hub_id: int, size: int) -> int:
        sandbox.seed(hub_id, contacts=size, companies=0, deals=0, tickets=0)
        source = make_source(workspace, sandbox, hub_id=hub_id)
        count = [0]

        def counter(execute, sql, params, many, context):
            count[0] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            run = sync(source, SyncRun.Trigger.FIRST)
        assert run.counts["contacts"]["new"] == size
        return count[0]

    one_page = queries_for_first_sync(3101, 100)
    ten_pages = queries_for_first_sync(3102, 1000)
    per_page = (ten_pages - one_page) / 9
    assert per_page <= 8, (one_page, ten_pages)


def test_long_reads_trigger_deliveries_along_the_way(workspace, sandbox, monkeypatch, settings):
    settings.HUBSYNC_NOTIFY_EVERY = 200
    calls: list[list[str]] = []
    monkeypatch.setattr(
        base, "notify_changes", lambda source, collections, sync_run=None: calls.append(list(collections))
    )
    sandbox.seed(PORTAL, contacts=650, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    assert calls == [["contacts"]] * 3 + [["contacts"]]  # at 200, 400, 600 changed records, then at the end
    calls.clear()
    sync(source)
    assert calls == [[]]  # the end of every run calls the hook, naming the collections that changed


# --- records deleted in HubSpot (GDPR deletes, permanent deletes, the 90-day recycle bin) -------------------------


def _mapping_with_states(workspace, source, payloads: dict[int, dict | None]):
    """A mapping on the source's contacts with one delivery state per id; `payloads` its last_payload (what a
    rejected record keeps: the message as built, personal data included)."""
    from mappings.models import DeliveryState, Destination, Mapping, ProfileSpace
    from models_app.models import DataModel

    destination = Destination.objects.create(workspace=workspace, name="Segment")
    space = ProfileSpace.objects.create(destination=destination, name="Space", write_key="wk", region="sandbox")
    model = DataModel.objects.create(source=source, collection="contacts", name="Contacts", columns=["email"])
    mapping = Mapping.objects.create(
        destination=destination,
        data_model=model,
        profile_space=space,
        identifiers={"user_id": "email"},
        traits=[["email", "email"]],
    )
    for object_id, payload in payloads.items():
        DeliveryState.objects.create(
            mapping=mapping,
            object_id=object_id,
            delivered_hash="h" * 64,
            last_payload=payload,
            status=DeliveryState.Status.REJECTED if payload else DeliveryState.Status.DELIVERED,
        )
    return mapping


def _mirror_ids(source: Source, **filters) -> list[int]:
    return sorted(
        Record.objects.filter(source=source, collection="contacts", **filters).values_list("object_id", flat=True)
    )


def test_full_sync_removes_records_deleted_in_hubspot_and_everything_kept_of_them(workspace, sandbox):
    """Records purged in HubSpot (live ones, and archived ones emptied from the recycle bin) leave the mirror with
    their history and kept payloads, while records archived, created and updated meanwhile are synced as usual:
    afterwards the mirror equals HubSpot exactly, live and archived."""
    from mappings.models import DeliveryState
    from sources.models import RecordChange

    sandbox.seed(PORTAL, contacts=450, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    first = sync(source, SyncRun.Trigger.FIRST)
    assert first.counts["contacts"]["deleted"] == 0
    ids = _mirror_ids(source)
    # Pages of 100: ids[0] opens page 1, ids[99] / ids[100] sit on a page boundary, ids[-1] ends the last page.
    doomed = [ids[0], ids[3], ids[99], ids[100], ids[101], ids[250], ids[-2], ids[-1]]
    kept = [ids[1], ids[200]]
    for object_id in (ids[3], ids[250], ids[-1], kept[0]):
        sandbox.set_properties(object_id, {"jobtitle": f"Edited {object_id}"}, portal=PORTAL)
    binned = [int(i) for i in sandbox.mutate(PORTAL, "contacts", archive=3, seed=4).archived]
    sync(source)  # history for the edited records; the mirror holds the three archived ones as archived
    assert set(_mirror_ids(source, archived=True)) == set(binned)
    assert RecordChange.objects.filter(source=source, object_id__in=doomed).count() == 3
    mapping = _mapping_with_states(
        workspace,
        source,
        {
            **{i: {"userId": f"user{i}@example.com", "traits": {"jobtitle": "secret"}} for i in doomed + binned},
            **{i: {"userId": f"user{i}@example.com"} for i in kept},
        },
    )

    # Meanwhile in HubSpot: GDPR deletes, the recycle bin emptied, and ordinary changes.
    assert sandbox.purge(doomed + binned, portal=PORTAL) == doomed + binned
    changes = sandbox.mutate(PORTAL, "contacts", create=10, update=10, archive=5, seed=7)
    assert not {int(i) for i in changes.updated + changes.archived} & set(doomed + binned)
    top = max_seq(source)

    run = sync(source, SyncRun.Trigger.FULL)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    c = run.counts["contacts"]
    assert (c["deleted"], c["archived"], c["new"], c["updated"]) == (len(doomed) + 3, 5, 10, 10), c
    assert "notes" not in c
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert not set(_mirror_ids(source)) & set(doomed + binned)
    assert set(_mirror_ids(source, archived=True)) == {int(i) for i in changes.archived}
    # Their history went with them; the kept record's stayed.
    assert not RecordChange.objects.filter(source=source, object_id__in=doomed + binned).exists()
    assert RecordChange.objects.filter(source=source, object_id=kept[0]).exists()
    # Delivery states stay (ids and hashes), without the personal data of the deleted ones.
    states = {s.object_id: s for s in DeliveryState.objects.filter(mapping=mapping)}
    assert len(states) == len(doomed) + 3 + 2
    assert all(states[i].last_payload is None and states[i].delivered_hash for i in doomed + binned)
    assert all(states[i].last_payload for i in kept)
    # Deletions need no change_seq: exactly the 10 new, 10 updated and 5 archived rows were written.
    assert Record.objects.filter(source=source, change_seq__gt=top).count() == 25

    again = sync(source, SyncRun.Trigger.FULL)
    c = again.counts["contacts"]
    assert (c["deleted"], c["archived"], c["new"], c["updated"]) == (0, 0, 0, 0), c
    # No candidates, no batch reads: the properties, the estimate, the list pages and one archived page.
    live = len(_mirror_ids(source, archived=False))
    assert again.api_calls == 1 + 1 + -(-live // 100) + 1


def test_deleting_records_sends_sample_mode_mappings_back_to_reconsider_the_collection(workspace, sandbox):
    """The sample's cutoff (the N-th lowest id) moves up when records below it are deleted for good: records that
    now enter the sample were skipped below the watermark, so a sample-mode mapping must look again."""
    from mappings.models import Mapping

    sandbox.seed(PORTAL, contacts=30, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    sampled = _mapping_with_states(workspace, source, {})
    whole = Mapping.objects.create(
        destination=sampled.destination,
        data_model=sampled.data_model,
        profile_space=sampled.profile_space,
        identifiers={"user_id": "email"},
        traits=[["email", "email"]],
    )
    Mapping.objects.filter(pk=sampled.pk).update(sample_size=10)
    Mapping.objects.filter(pk__in=[sampled.pk, whole.pk]).update(watermark=max_seq(source))
    sandbox.purge(_mirror_ids(source)[:2], portal=PORTAL)
    run = sync(source, SyncRun.Trigger.FULL)
    assert run.counts["contacts"]["deleted"] == 2
    sampled.refresh_from_db()
    whole.refresh_from_db()
    assert sampled.watermark == 0  # reconsiders: ids 11 and 12 of the old order are in the sample now
    assert whole.watermark == max_seq(source)  # not in sample mode: nothing to reconsider


def test_incremental_syncs_never_delete(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=120, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    binned = sandbox.mutate(PORTAL, "contacts", archive=2, seed=1).archived
    sync(source)
    gone = sandbox.mutate(PORTAL, "contacts", purge=4, update=3, seed=2).purged
    sandbox.purge(binned, portal=PORTAL)
    run = sync(source)
    assert run.counts["contacts"]["deleted"] == 0 and run.counts["contacts"]["updated"] == 3
    assert set(_mirror_ids(source)) >= {int(i) for i in gone + binned}
    full = sync(source, SyncRun.Trigger.FULL)
    assert full.counts["contacts"]["deleted"] == 6
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_candidates_only_archived_are_marked_archived_not_deleted(workspace, sandbox, monkeypatch):
    """The list check alone (archived scan switched off) sorts candidates out with batch reads."""
    from sources.models import RecordChange

    sandbox.seed(PORTAL, contacts=230, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    changes = sandbox.mutate(PORTAL, "contacts", archive=6, purge=2, seed=3)
    monkeypatch.setattr(extract.Engine, "scan_archived", lambda self, sc, check_deleted=False: None)
    run = sync(source, SyncRun.Trigger.FULL)
    c = run.counts["contacts"]
    assert (c["archived"], c["deleted"]) == (6, 2), c
    assert set(_mirror_ids(source, archived=True)) == {int(i) for i in changes.archived}
    assert not set(_mirror_ids(source)) & {int(i) for i in changes.purged}
    # Archived like the archived scan does it: a new change_seq, a history row saying "archived".
    flips = RecordChange.objects.filter(source=source, archived=True)
    assert set(flips.values_list("object_id", flat=True)) == {int(i) for i in changes.archived}
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_records_missing_from_the_list_but_found_live_are_left_alone(workspace, sandbox, monkeypatch):
    sandbox.seed(PORTAL, contacts=150, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    hidden = [_mirror_ids(source)[k] for k in (5, 120, 149)]
    original = HubSpotClient.list_page

    def flaky_list(self, collection, **kwargs):  # HubSpot's list leaves out a few records it still has
        page = original(self, collection, **kwargs)
        if not kwargs.get("archived"):
            page["results"] = [r for r in page["results"] if int(r["id"]) not in hidden]
        return page

    monkeypatch.setattr(HubSpotClient, "list_page", flaky_list)
    run = sync(source, SyncRun.Trigger.FULL)
    assert run.counts["contacts"]["deleted"] == 0 and run.counts["contacts"]["archived"] == 0
    assert set(hidden) <= set(_mirror_ids(source, archived=False))


def test_a_list_out_of_id_order_stops_the_check_and_says_so(workspace, sandbox, monkeypatch):
    sandbox.seed(PORTAL, contacts=350, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    ids = _mirror_ids(source)
    gone = [ids[10], ids[300]]  # one before the disorder, one after
    sandbox.purge(gone, portal=PORTAL)
    original = HubSpotClient.list_page
    calls = {"n": 0}

    def shuffled(self, collection, **kwargs):
        page = original(self, collection, **kwargs)
        if not kwargs.get("archived"):
            calls["n"] += 1
            if calls["n"] == 2:
                page["results"].reverse()
        return page

    monkeypatch.setattr(HubSpotClient, "list_page", shuffled)
    run = sync(source, SyncRun.Trigger.FULL)
    assert run.status == SyncRun.Status.SUCCEEDED and not run.error
    c = run.counts["contacts"]
    assert c["deleted"] == 1 and c["notes"] == [extract.ORDER_NOTE]  # page 1 was checked, nothing after
    assert ids[300] in _mirror_ids(source) and ids[10] not in _mirror_ids(source)
    monkeypatch.setattr(HubSpotClient, "list_page", original)
    assert sync(source, SyncRun.Trigger.FULL).counts["contacts"]["deleted"] == 1
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_deletion_check_converges_through_429s_and_5xx(workspace, sandbox):
    sandbox.seed(PORTAL, contacts=500, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    changes = sandbox.mutate(PORTAL, "contacts", purge=40, archive=10, update=20, create=5, seed=13)
    sandbox.set_knobs(rate_limits=True, rate_limit_max=4, rate_limit_interval_ms=300, error_rate=0.15, reset_rate=0.05)
    run = sync(source, SyncRun.Trigger.FULL)
    sandbox.set_knobs(rate_limits=False, error_rate=0, reset_rate=0)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.retries > 0
    c = run.counts["contacts"]
    assert (c["deleted"], c["archived"], c["new"], c["updated"]) == (40, 10, 5, 20), c
    assert not set(_mirror_ids(source)) & {int(i) for i in changes.purged}
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


@pytest.mark.parametrize("stop_at", [1, 2, 3, 4, 5, 6])
def test_a_killed_full_sync_resumes_its_deletion_check(workspace, sandbox, monkeypatch, stop_at):
    """A mass deletion at the end of the id range (more candidates than one batch read holds) and deletions
    spread over the pages: kill the full sync after commit k, resume it, and every deleted record is gone."""
    monkeypatch.setattr(deletions, "BATCH_READ_LIMIT", 40)
    sandbox.seed(PORTAL, contacts=330, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    ids = _mirror_ids(source)
    doomed = [ids[7], ids[150]] + ids[-100:]  # the last 100 ids: the last page is all candidates, 3 batches of 40
    sandbox.purge(doomed, portal=PORTAL)
    # Commits: page 1 and page 2 (one candidate each, pending in the cursor), three confirmed batches of 40, 40
    # and 22 (the cursor still before the last page), page 3.
    commits = {"n": 0}

    def stop_after(engine, sc):
        commits["n"] += 1
        if commits["n"] == stop_at:
            raise Stop

    monkeypatch.setattr(mirror, "after_page", stop_after)
    with pytest.raises(Stop):
        sync(source, SyncRun.Trigger.FULL)
    killed = SyncRun.objects.filter(source=source).first()
    assert commits["n"] == stop_at and killed.status == SyncRun.Status.FAILED
    monkeypatch.setattr(mirror, "after_page", lambda engine, sc: None)
    resumed = sync(source, SyncRun.Trigger.MANUAL)
    # It resumes after the last commit: a kill inside the last page's batches re-reads that page only.
    assert resumed.counts["contacts"]["read"] == {1: 128, 2: 28, 3: 28, 4: 28, 5: 28, 6: 0}[stop_at]
    assert resumed.status == SyncRun.Status.SUCCEEDED, resumed.error
    assert killed.counts["contacts"]["deleted"] + resumed.counts["contacts"]["deleted"] == len(doomed)
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_the_deletion_check_holds_one_batch_of_ids_at_a_time(workspace, sandbox, monkeypatch):
    """Bounded memory: candidates come from keyset range queries, at most BATCH_READ_LIMIT ids per confirmation,
    however many records were deleted (no set of all ids is ever built)."""
    sandbox.seed(PORTAL, contacts=700, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    ids = _mirror_ids(source)
    sandbox.purge(ids[50:640], portal=PORTAL)  # pages 1-6 almost empty, then everything at the end
    asked: list[int] = []
    original = HubSpotClient.batch_read_found

    def counting(self, collection, object_ids, properties, **kwargs):
        asked.append(len(object_ids))
        return original(self, collection, object_ids, properties, **kwargs)

    monkeypatch.setattr(HubSpotClient, "batch_read_found", counting)
    run = sync(source, SyncRun.Trigger.FULL)
    assert run.counts["contacts"]["deleted"] == 590
    assert max(asked) <= extract.BATCH_READ_LIMIT and sum(asked) == 2 * 590
    assert len(asked) == 2 * 6  # candidates collected across pages: full batches of 100, then the last 90
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_a_purged_record_and_its_successor_with_another_id(workspace, sandbox):
    """A GDPR delete, then the same person comes back (a new contact, a new id, the same e-mail): the mirror ends up
    with the new record only."""
    from monitoring.debugger import email_lookup

    sandbox.seed(PORTAL, contacts=60, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    old = Record.objects.filter(source=source, properties__email__isnull=False).order_by("object_id")[3]
    email = old.properties["email"]
    sandbox.purge([old.object_id], portal=PORTAL)
    new_id = int(sandbox.mutate(PORTAL, "contacts", create=1, seed=5).created[0])
    sandbox.set_properties(new_id, {"email": email}, portal=PORTAL)
    incremental = sync(source)  # the new record arrives; the old one stays until a full read
    assert incremental.counts["contacts"]["new"] == 1
    assert {r.object_id for r in email_lookup(Record.objects.filter(source=source), email)} == {old.object_id, new_id}
    full = sync(source, SyncRun.Trigger.FULL)
    assert full.counts["contacts"]["deleted"] == 1 and full.counts["contacts"]["new"] == 0
    assert [r.object_id for r in email_lookup(Record.objects.filter(source=source), email)] == [new_id]
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


# --- records deleted in HubSpot, for a source with a start date: the ids-only pass of a Full sync ---------------


def _windowed_source(workspace, sandbox, contacts: int):
    """A portal whose records were last modified over the last 2.5 years, and a source starting 600 days ago:
    about two thirds of the records lie in its window. Returns (source, the window's start in ms)."""
    sandbox.seed(PORTAL, contacts=contacts, companies=0, deals=0, tickets=0, generated_at_ms=int(time.time() * 1000))
    start = (timezone.now() - timedelta(days=600)).date()
    source = make_source(workspace, sandbox, start_date=start)
    since_ms = int(datetime.combine(start, datetime.min.time(), tzinfo=UTC).timestamp() * 1000)
    return source, since_ms


class _Calls:
    """Counts the HubSpot requests of the deletion check: ids-only list pages (live), batch reads by id with
    `hs_object_id` only (the confirmations) and archived list pages."""

    def __init__(self, monkeypatch):
        self.ids_pages = self.confirmations = self.archived_pages = 0
        list_page, found = HubSpotClient.list_page, HubSpotClient.batch_read_found

        def counting_list(client, collection, **kwargs):
            if kwargs.get("archived"):
                self.archived_pages += 1
            elif kwargs.get("properties") == ["hs_object_id"]:
                self.ids_pages += 1
            return list_page(client, collection, **kwargs)

        def counting_found(client, collection, object_ids, properties, **kwargs):
            if properties == ["hs_object_id"]:  # not the batch reads of the search read (all properties)
                self.confirmations += -(-len(object_ids) // 100)
            return found(client, collection, object_ids, properties, **kwargs)

        monkeypatch.setattr(HubSpotClient, "list_page", counting_list)
        monkeypatch.setattr(HubSpotClient, "batch_read_found", counting_found)

    def reset(self):
        self.ids_pages = self.confirmations = self.archived_pages = 0


def test_full_sync_with_a_start_date_removes_records_deleted_in_hubspot(workspace, sandbox, monkeypatch):
    """The search read of the window, then the ids-only pass over the list: records purged in HubSpot (live ones
    and archived ones emptied from the recycle bin) leave the mirror, archived, created and updated ones are
    synced as usual, and the records outside the window are neither read nor written. Afterwards the mirror
    equals HubSpot exactly for the window."""
    from mappings.models import DeliveryState
    from sources.models import RecordChange

    source, since_ms = _windowed_source(workspace, sandbox, 450)
    first = sync(source, SyncRun.Trigger.FIRST)
    assert first.counts["contacts"]["deleted"] == 0 and "listed" not in first.counts["contacts"]
    window = _mirror_ids(source)
    assert 250 < len(window) < 350, len(window)
    assert_mirror_equals_sandbox(source, sandbox, exact=True, since_ms=since_ms)
    everything = sorted(sandbox_ids(sandbox))
    outside = sorted(set(everything) - set(window))
    # The pass's pages of 100 cover all 450 records; pick doomed ones at its page boundaries and at both ends.
    boundary = [i for k, i in enumerate(everything) if k % 100 in (99, 0) and i in window]
    doomed = sorted({window[0], window[3], *boundary[:3], window[-2], window[-1]})
    kept = [window[1], window[200]]
    for object_id in (window[3], window[-1], kept[0]):
        sandbox.set_properties(object_id, {"jobtitle": f"Edited {object_id}"}, portal=PORTAL)
    binned = [int(i) for i in sandbox.mutate(PORTAL, "contacts", archive=3, seed=6).archived]
    assert set(binned) <= set(window) - set(doomed) - set(kept)  # the seed picks records of the window
    sync(source)  # history for the edited records; the mirror holds the three archived ones as archived
    assert set(_mirror_ids(source, archived=True)) == set(binned)
    mapping = _mapping_with_states(
        workspace,
        source,
        {
            **{i: {"userId": f"user{i}@example.com", "traits": {"jobtitle": "secret"}} for i in doomed + binned},
            **{i: {"userId": f"user{i}@example.com"} for i in kept},
        },
    )

    # Meanwhile in HubSpot: GDPR deletes (one of a record outside the window), the recycle bin emptied, changes.
    purged = doomed + binned + [outside[5]]
    assert sandbox.purge(purged, portal=PORTAL) == purged
    changes = sandbox.mutate(PORTAL, "contacts", create=10, update=10, archive=5, seed=1)
    updated = {int(i) for i in changes.updated}
    assert not (updated | {int(i) for i in changes.archived}) & set(purged)
    assert {int(i) for i in changes.archived} <= set(window)  # the seed archives records of the window
    calls = _Calls(monkeypatch)

    run = sync(source, SyncRun.Trigger.FULL)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    c = run.counts["contacts"]
    # Updated records from outside the window entered it: new to the mirror.
    assert (c["deleted"], c["archived"], c["new"], c["updated"]) == (
        len(doomed) + 3,
        5,
        10 + len(updated - set(window)),
        len(updated & set(window)),
    ), c
    assert "notes" not in c
    live_in_hubspot = len(everything) - len(purged) + 10 - 5  # the binned ones were among `everything` too
    assert live_in_hubspot == len(sandbox_ids(sandbox))
    assert c["listed"] == live_in_hubspot
    # The progress bar moved through the pass: the window's records read, then every id listed.
    assert run.progress_done == c["read"] + c["listed"] and run.progress_total
    assert_mirror_equals_sandbox(source, sandbox, exact=True, since_ms=since_ms)
    assert not set(_mirror_ids(source)) & set(purged)
    assert set(_mirror_ids(source, archived=True)) == {int(i) for i in changes.archived}
    assert not set(_mirror_ids(source)) & (set(outside) - updated)  # listed by the pass, never written
    assert not RecordChange.objects.filter(source=source, object_id__in=purged).exists()
    assert RecordChange.objects.filter(source=source, object_id=kept[0]).exists()
    states = {s.object_id: s for s in DeliveryState.objects.filter(mapping=mapping)}
    assert all(states[i].last_payload is None and states[i].delivered_hash for i in doomed + binned)
    assert all(states[i].last_payload for i in kept)
    # The pass: one ids-only page per 100 live records; the candidates confirmed two batch reads at a time (the
    # live ones in one batch, the three binned ones found by the archived scan in another).
    assert calls.ids_pages == -(-live_in_hubspot // 100)
    assert calls.confirmations == 2 + 2
    assert SourceCollection.objects.get(source=source).cursor["mode"] == "idle"

    calls.reset()
    again = sync(source, SyncRun.Trigger.FULL)
    c = again.counts["contacts"]
    assert (c["deleted"], c["archived"], c["new"], c["updated"]) == (0, 0, 0, 0), c
    # No candidates, no confirmations: the pass costs its list pages only.
    assert (calls.ids_pages, calls.confirmations, calls.archived_pages) == (-(-live_in_hubspot // 100), 0, 1)
    calls.reset()
    assert sync(source).counts["contacts"]["deleted"] == 0
    assert (calls.ids_pages, calls.confirmations) == (0, 0)  # incremental: no pass at all


def test_syncs_of_a_start_date_source_other_than_full_never_delete(workspace, sandbox, monkeypatch):
    source, since_ms = _windowed_source(workspace, sandbox, 240)
    calls = _Calls(monkeypatch)
    sync(source, SyncRun.Trigger.FIRST)
    assert (calls.ids_pages, calls.confirmations) == (0, 0)  # a first sync: nothing in the mirror to check
    window = _mirror_ids(source)
    binned = sandbox.mutate(PORTAL, "contacts", archive=2, seed=1).archived
    sync(source)
    sandbox.purge(window[:4] + [int(i) for i in binned], portal=PORTAL)
    sandbox.mutate(PORTAL, "contacts", update=3, seed=2)
    for trigger in (SyncRun.Trigger.SCHEDULED, SyncRun.Trigger.MANUAL):
        run = sync(source, trigger)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert run.counts["contacts"]["deleted"] == 0 and "listed" not in run.counts["contacts"]
    assert (calls.ids_pages, calls.confirmations) == (0, 0)
    assert set(_mirror_ids(source)) >= set(window[:4])
    full = sync(source, SyncRun.Trigger.FULL)
    assert full.counts["contacts"]["deleted"] == 4 + len([i for i in binned if int(i) in window])
    assert_mirror_equals_sandbox(source, sandbox, since_ms=since_ms)
    assert not set(_mirror_ids(source)) & set(window[:4])


@pytest.mark.parametrize("stop_at", [1, 2, 3, 4, 5, 6, 7])
def test_a_killed_full_sync_with_a_start_date_resumes_its_deletion_check(workspace, sandbox, monkeypatch, stop_at):
    """Kill the Full sync after commit k (search pages, then the pass's pages and confirmed batches), resume it
    with an ordinary sync, and every deleted record is gone; the window is not read again once its search read
    was complete."""
    monkeypatch.setattr(deletions, "BATCH_READ_LIMIT", 40)
    monkeypatch.setattr(reads, "SEARCH_LIMIT", 100)
    source, since_ms = _windowed_source(workspace, sandbox, 330)
    sync(source, SyncRun.Trigger.FIRST)
    window = _mirror_ids(source)
    doomed = [window[7], window[100]] + window[-90:]  # the end of the id range: several batches of 40
    sandbox.purge(doomed, portal=PORTAL)
    commits = {"n": 0, "search": 0}
    search_pages = -(-(len(window) - len(doomed)) // 100)

    def stop_after(engine, sc):
        commits["n"] += 1
        if commits["n"] == stop_at:
            raise Stop

    monkeypatch.setattr(mirror, "after_page", stop_after)
    with pytest.raises(Stop):
        sync(source, SyncRun.Trigger.FULL)
    killed = SyncRun.objects.filter(source=source).first()
    assert commits["n"] == stop_at and killed.status == SyncRun.Status.FAILED
    cursor = SourceCollection.objects.get(source=source).cursor
    assert cursor["mode"] == ("search" if stop_at < search_pages else "ids"), cursor
    monkeypatch.setattr(mirror, "after_page", lambda engine, sc: None)
    resumed = sync(source, SyncRun.Trigger.SCHEDULED)
    assert resumed.status == SyncRun.Status.SUCCEEDED, resumed.error
    if stop_at >= search_pages:
        assert resumed.counts["contacts"]["read"] == 0  # only the pass goes on
    assert killed.counts["contacts"]["deleted"] + resumed.counts["contacts"]["deleted"] == len(doomed)
    assert SourceCollection.objects.get(source=source).cursor["mode"] == "idle"
    assert_mirror_equals_sandbox(source, sandbox, exact=True, since_ms=since_ms)


# --- the last update before an archive; merged records ----------------------------------------------------------


MARKER = {"contacts": "jobtitle", "companies": "description"}


@pytest.mark.parametrize("collection", ["contacts", "companies"])
def test_a_record_updated_then_archived_before_the_next_sync_is_mirrored_with_its_final_values(
    workspace, sandbox, collection
):
    """Search never returns archived records, so the update made just before the archive is read from HubSpot's
    archived records: the mirror's archived rows hold exactly what HubSpot holds, at the cost of one batch read
    per 100 records archived since the last run (none when nothing was archived)."""
    from tests.sources.extract_helpers import archive, sandbox_archived

    sandbox.seed(PORTAL, contacts=40 if collection == "contacts" else 0, companies=40 if collection == "companies"
                 else 0, deals=0, tickets=0)  # fmt: skip
    source = make_source(workspace, sandbox, collections=(collection,))
    sync(source, SyncRun.Trigger.FIRST)
    quiet = sync(source)
    marker = MARKER[collection]
    ids = sorted(Record.objects.filter(source=source).values_list("object_id", flat=True))[5:8]
    for object_id in ids:
        sandbox.set_properties(object_id, {marker: f"Final {object_id}"}, portal=PORTAL, collection=collection)
    archive(sandbox, ids, collection=collection)
    plain = sorted(Record.objects.filter(source=source).values_list("object_id", flat=True))[20]
    archive(sandbox, [plain], collection=collection)  # archived without a change
    before = {i: Record.objects.get(source=source, object_id=i) for i in ids}

    run = sync(source)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    held = sandbox_archived(sandbox, PORTAL, collection)
    for object_id in ids:
        row = Record.objects.get(source=source, object_id=object_id)
        assert row.archived and row.properties[marker] == f"Final {object_id}"
        assert row.properties == held[object_id]
        assert row.change_seq > before[object_id].change_seq and row.content_hash != before[object_id].content_hash
        assert row.archived_update  # values the mirror never had live: "Do nothing" mappings still send them
    row = Record.objects.get(source=source, object_id=plain)
    assert row.archived and row.properties == held[plain] and not row.archived_update
    c = run.counts[collection]
    assert (c["archived"], c["updated"], c["new"]) == (4, 0, 0), c
    assert run.api_calls == quiet.api_calls + 1  # one batch read for the four archived records
    assert_mirror_equals_sandbox(source, sandbox, collection, exact=True)

    again = sync(source)
    assert again.counts[collection]["archived"] == 0 and again.counts[collection]["updated"] == 0
    assert again.api_calls == quiet.api_calls  # nothing archived since: no extra request


def test_archived_rows_holding_old_values_are_completed_once(workspace, sandbox):
    """A row archived with the values of the previous read (archived by a full read's check, or by an earlier
    version of hubsync) gets HubSpot's final values at the next run, once."""
    from tests.sources.extract_helpers import archive

    sandbox.seed(PORTAL, contacts=30, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    object_id = sorted(Record.objects.filter(source=source).values_list("object_id", flat=True))[4]
    sandbox.set_properties(object_id, {"jobtitle": "Final"}, portal=PORTAL)
    archive(sandbox, [object_id])
    Record.objects.filter(source=source, object_id=object_id).update(archived=True)  # archived, old values

    run = sync(source)
    assert Record.objects.get(source=source, object_id=object_id).properties["jobtitle"] == "Final"
    assert run.counts["contacts"]["updated"] == 1 and run.counts["contacts"]["archived"] == 0
    assert sync(source).counts["contacts"]["updated"] == 0


def _merged_rows(source) -> dict[int, int]:
    from sources.models import MergedRecord

    return dict(MergedRecord.objects.filter(source=source).values_list("object_id", "merged_into"))


@pytest.mark.parametrize("trigger", [SyncRun.Trigger.FULL, SyncRun.Trigger.SCHEDULED])
def test_merged_records_leave_the_mirror_and_the_merge_is_recorded(workspace, sandbox, trigger):
    """HubSpot merges two contacts into a record with a new id (or keeps the primary's id): the merged record is
    read like any other, names the ids it replaced in hs_merged_object_ids, and those ids leave the mirror; a
    MergedRecord row says into which record each went. Before this, merged-away ids stayed live for good."""
    from tests.sources.extract_helpers import merge

    sandbox.seed(PORTAL, contacts=60, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    ids = sorted(Record.objects.filter(source=source).values_list("object_id", flat=True))
    a, b, c, d = ids[5], ids[6], ids[20], ids[40]
    new = merge(sandbox, a, b)
    kept = merge(sandbox, c, d, keep_id=True)
    assert kept == c

    run = sync(source, trigger)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    mirrored = set(Record.objects.filter(source=source).values_list("object_id", flat=True))
    assert {a, b, d}.isdisjoint(mirrored) and {new, c} <= mirrored
    counts = run.counts["contacts"]
    assert counts["merged"] == 3 and counts["deleted"] == 0, counts
    assert _merged_rows(source) == {a: new, b: new, d: c}
    assert Record.objects.get(source=source, object_id=new).properties["hs_merged_object_ids"] == f"{a};{b}"
    assert_mirror_equals_sandbox(source, sandbox, exact=True)

    for again in (sync(source, SyncRun.Trigger.FULL), sync(source)):
        assert again.counts["contacts"].get("merged", 0) == 0 and again.counts["contacts"]["new"] == 0
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_a_full_sync_finds_merged_ids_by_the_id_that_answers_for_them(workspace, sandbox, monkeypatch):
    """When the merged record does not name the ids it replaced (no hs_merged_object_ids served), a full read
    still finds them: the ids HubSpot no longer lists are confirmed by batch read, which answers an old id with
    the merged record under its new id, and a read by id says which record that is."""
    from sandbox.hubspot import records as sandbox_records
    from tests.sources.extract_helpers import merge

    monkeypatch.setattr(sandbox_records, "MERGED_IDS", "hs_merged_ids_not_served")
    sandbox.seed(PORTAL, contacts=250, companies=30, deals=0, tickets=0)
    source = make_source(workspace, sandbox, collections=("contacts", "companies"))
    sync(source, SyncRun.Trigger.FIRST)
    contacts = sorted(Record.objects.filter(source=source, collection="contacts").values_list("object_id", flat=True))
    companies = sorted(Record.objects.filter(source=source, collection="companies").values_list("object_id", flat=True))
    new_contact = merge(sandbox, contacts[10], contacts[150])
    new_company = merge(sandbox, companies[3], companies[4], collection="companies")

    run = sync(source, SyncRun.Trigger.FULL)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    mirrored = set(Record.objects.filter(source=source).values_list("collection", "object_id"))
    assert {("contacts", contacts[10]), ("contacts", contacts[150]), ("companies", companies[3])}.isdisjoint(mirrored)
    assert run.counts["contacts"]["merged"] == 2 and run.counts["companies"]["merged"] == 2
    assert run.counts["contacts"]["deleted"] == 0 and run.counts["companies"]["deleted"] == 0
    from sources.models import MergedRecord

    assert set(MergedRecord.objects.filter(source=source).values_list("collection", "object_id", "merged_into")) == {
        ("contacts", contacts[10], new_contact), ("contacts", contacts[150], new_contact),
        ("companies", companies[3], new_company), ("companies", companies[4], new_company),
    }  # fmt: skip
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert_mirror_equals_sandbox(source, sandbox, "companies", exact=True)


def test_debug_query_log_stays_one_page_deep(workspace, sandbox, monkeypatch, settings):
    """With DEBUG on (the embedded default) Django logs every statement; a sync must not keep them all."""
    from django.db import connection

    sandbox.seed(PORTAL, contacts=3000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    settings.DEBUG = True
    logged: list[int] = []
    monkeypatch.setattr(mirror, "after_page", lambda engine, sc: logged.append(len(connection.queries_log)))
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.counts["contacts"]["new"] == 3000
    assert len(logged) >= 30
    # A page costs a constant handful of statements (test_a_page_costs_a_constant_number_of_queries).
    assert max(logged) <= 40, logged
    assert len(connection.queries_log) <= 40


TRICKY = [
    "O'Brien's",
    "back\\slash \\n and \\u0041",
    "100% of %s and %(name)s",
    "$$ dollar-quoted $$ E'x'",
    "'); DROP TABLE sources_record; --",
    "é ünïcödé 中文 🚀",
    'quotes " inside',
]


@pytest.mark.parametrize("partitioned", [False, True])
def test_property_values_that_look_like_sql_are_stored_as_they_are(workspace, sandbox, settings, partitioned):
    """The writer sends a page's rows as SQL literals (PostgreSQL): quotes, backslashes, percent signs, dollar
    quotes and multi-byte text come back exactly, on the first write and on an update."""
    if partitioned:
        settings.HUBSYNC_PARTITION_MIN_RECORDS = 20
        settings.HUBSYNC_PARTITION_RECORDS = 10
    sandbox.seed(PORTAL, contacts=40, companies=0, deals=0, tickets=0)
    ids = sorted(sandbox_truth(sandbox, PORTAL, "contacts")[0])[:: 40 // len(TRICKY)][: len(TRICKY)]
    for object_id, value in zip(ids, TRICKY, strict=True):
        sandbox.set_properties(object_id, {"jobtitle": value, "firstname": value[::-1]}, portal=PORTAL)
    source = make_source(workspace, sandbox)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    stored = dict(Record.objects.filter(source=source, object_id__in=ids).values_list("object_id", "properties"))
    assert [stored[i]["jobtitle"] for i in ids] == TRICKY
    assert [stored[i]["firstname"] for i in ids] == [v[::-1] for v in TRICKY]
    for object_id, value in zip(ids, TRICKY, strict=True):
        sandbox.set_properties(object_id, {"jobtitle": value + " (edited)"}, portal=PORTAL)
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    stored = dict(Record.objects.filter(source=source, object_id__in=ids).values_list("object_id", "properties"))
    assert [stored[i]["jobtitle"] for i in ids] == [v + " (edited)" for v in TRICKY]
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


@pytest.mark.django_db
def test_the_page_upserts_literals_read_back_as_the_values_themselves():
    """Each literal the PostgreSQL page upsert writes reads back, in the database, as the value psycopg would
    have sent as a parameter: texts of every awkward kind, with standard_conforming_strings on and off, and dates
    in UTC, in other zones and naive."""
    from datetime import timezone as dt_timezone
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the literals are PostgreSQL's")
    texts = [*TRICKY, "", "'", "''", "\\", "\\'", "a\tb\nc\r", '{"k":"v\\"w"}', "\u2028", "x" * 5000]
    dates = [
        None,
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(2024, 1, 1, 12, 0, tzinfo=ZoneInfo("Europe/London")),
        datetime(2024, 1, 1, 12, 0, tzinfo=dt_timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2024, 1, 1, 12, 0),
    ]
    connection.ensure_connection()
    with connection.cursor() as cur:
        for conforming, zone in (("on", "UTC"), ("off", "UTC"), ("on", "America/New_York")):
            cur.execute(f"SET standard_conforming_strings = {conforming}")
            cur.execute(f"SET TIME ZONE '{zone}'")
            literal = mirror._PgLiteral(connection.connection)
            for text in texts:
                cur.execute(f"SELECT {literal.text(text)}")
                assert cur.fetchone() == (text,), (conforming, text)
            for when in dates:
                # Compared as instants (Django's loader labels every timestamptz UTC, whatever the session's zone);
                # a naive datetime is read in the session's zone, as psycopg's own literal is.
                cur.execute(f"SELECT extract(epoch FROM {literal.when(when)}::timestamptz)")
                (epoch,) = cur.fetchone()
                expected = None if when is None else (when if when.tzinfo else when.replace(tzinfo=ZoneInfo(zone)))
                assert epoch == (None if expected is None else Decimal(str(expected.timestamp()))), (zone, when)
        cur.execute("SET standard_conforming_strings = on")
        cur.execute("SET TIME ZONE 'UTC'")
    assert literal.text("O'Brien") == "'O''Brien'"

"""Partitioned reads (sources.extraction.partitions) against the HubSpot sandbox over real HTTP: several requests in
flight, both budgets, each id range checkpointed on its own row. The oracle is the sandbox read independently
(tests.sources.extract_helpers.sandbox_truth); the thresholds are lowered so that small portals are partitioned."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

import sources.extraction as extract
from sources.extraction import mirror, partitions, plan
from sources.models import ChangeCounter, ReadPartition, Record, SourceCollection, SyncRun
from sources.runs import create_run
from sources.selectors import partition_progress
from tests.sources.extract_helpers import PORTAL, assert_mirror_equals_sandbox, make_source, sync


class Stop(Exception):
    """Raised from the after-page hook to kill a run at a chosen checkpoint."""


@pytest.fixture
def partitioned(settings):
    settings.HUBSYNC_PARTITION_MIN_RECORDS = 200
    settings.HUBSYNC_PARTITION_RECORDS = 150
    settings.HUBSYNC_FETCHERS = 4
    settings.HUBSYNC_PARTITION_HELPERS = 0
    return settings


def vias_seen(monkeypatch) -> list[set[str]]:
    """The vias of the collection's ranges, as they stood at each committed page."""
    seen: list[set[str]] = []

    def look(engine, sc):
        seen.append(set(ReadPartition.objects.filter(collection=sc).values_list("via", flat=True)))

    monkeypatch.setattr(mirror, "after_page", look)
    return seen


def changes_allocated(source) -> int:
    return ChangeCounter.objects.get(source=source).value


def test_partitioned_first_sync_equals_the_sandbox_through_both_budgets(workspace, sandbox, partitioned, monkeypatch):
    sandbox.seed(PORTAL, contacts=1_200, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    seen = vias_seen(monkeypatch)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    c = run.counts["contacts"]
    assert c["read"] == c["new"] == 1_200 and c["partitions"]["total"] >= 4
    assert c["partitions"]["done"] == c["partitions"]["total"]
    assert run.progress_done == 1_200
    assert seen and {plan.LIST, plan.SEARCH} <= set().union(*seen)  # both budgets at once
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    # Ids of mixed lengths (1 to 7 digits here) all arrived, compared as numbers.
    lengths = {len(str(i)) for i in Record.objects.filter(source=source).values_list("object_id", flat=True)}
    assert {1, 2, 3, 4, 7} <= lengths
    # Every record was written once: one change_seq each.
    assert changes_allocated(source) == 1_200
    sc = SourceCollection.objects.get(source=source)
    assert sc.cursor["mode"] == "idle" and not ReadPartition.objects.filter(collection=sc).exists()
    assert run.api_calls > 0

    # The next run is incremental and quiet: nothing new, nothing re-written.
    again = sync(source)
    assert again.status == SyncRun.Status.SUCCEEDED
    assert changes_allocated(source) == 1_200


def test_a_kill_at_every_checkpoint_loses_nothing_and_rewrites_nothing(workspace, sandbox, partitioned, monkeypatch):
    sandbox.seed(PORTAL, contacts=700, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    pages = {"n": 0}

    def stop_after_one(engine, sc):
        pages["n"] += 1
        raise Stop

    monkeypatch.setattr(mirror, "after_page", stop_after_one)
    runs = 0
    while True:
        runs += 1
        assert runs < 60, "the read never finished"
        try:
            run = sync(source, SyncRun.Trigger.FIRST if runs == 1 else SyncRun.Trigger.MANUAL)
        except Stop:
            killed = SyncRun.objects.filter(source=source).first()
            assert killed.status == SyncRun.Status.FAILED
            sc = SourceCollection.objects.get(source=source)
            assert sc.cursor["mode"] == "partitioned"
            assert not ReadPartition.objects.filter(collection=sc, status=ReadPartition.Status.RUNNING).exists()
            progress = partition_progress(source.pk)["contacts"]
            assert progress["running"] == 0 and progress["done"] + progress["pending"] == progress["total"] >= 4
            continue
        break
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert runs >= 8  # one run per committed page: every checkpoint was a kill
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 700  # no record re-read into a new change_seq


def test_more_than_10000_records_with_one_timestamp_in_one_search_range(workspace, sandbox, partitioned, monkeypatch):
    """A search range is keyset-paged on hs_object_id, so the 10,000-result cap of one query never applies."""
    sandbox.seed(PORTAL, contacts=10_300, companies=0, deals=0, tickets=0)
    sandbox.mutate(PORTAL, "contacts", update=10_300, same_timestamp=True, seed=4)
    source = make_source(workspace, sandbox)
    partitioned.HUBSYNC_PARTITION_RECORDS = 50_000  # one range
    monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.SEARCH] * len(ranges))
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["read"] == 10_300
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_deletion_check_per_range_on_a_full_sync(workspace, sandbox, partitioned):
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    assert sync(source, SyncRun.Trigger.FIRST).status == SyncRun.Status.SUCCEEDED
    ids = sorted(Record.objects.filter(source=source).values_list("object_id", flat=True))
    doomed = ids[5::100]  # spread over every range
    sandbox.purge(doomed, portal=PORTAL)
    archived = sandbox.mutate(PORTAL, "contacts", archive=3, seed=5).archived
    full = sync(source, SyncRun.Trigger.FULL)
    assert full.status == SyncRun.Status.SUCCEEDED, full.error
    c = full.counts["contacts"]
    assert c["partitions"]["total"] >= 2  # planned from the mirror's quantiles
    assert c["deleted"] == len(doomed) and c["archived"] == len(archived)
    assert not Record.objects.filter(source=source, object_id__in=doomed).exists()
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_list_ranges_fall_back_to_search_when_after_is_not_an_id(workspace, sandbox, partitioned):
    sandbox.set_knobs(opaque_list_after=True)
    sandbox.seed(PORTAL, contacts=800, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert any("read through search instead" in n for n in run.counts["contacts"].get("notes", []))
    assert run.counts["contacts"]["new"] == 800
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 800


def test_a_429_storm_with_several_requests_in_flight(workspace, sandbox, partitioned, monkeypatch):
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    storm = {"on": False}

    def start_storm(engine, sc):
        # After the first committed page, while the fetchers have their ranges' requests in flight.
        if not storm["on"]:
            storm["on"] = True
            sandbox.set_knobs(fail_next=12, fail_next_status="429")

    monkeypatch.setattr(mirror, "after_page", start_storm)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.retries >= 12  # every 429 retried, and counted in the run
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 900


def test_a_bulk_change_is_re_read_partitioned_and_says_why(workspace, sandbox, partitioned):
    sandbox.seed(PORTAL, contacts=600, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sync(source, SyncRun.Trigger.FIRST)
    small = sandbox.mutate(PORTAL, "contacts", update=5, seed=6)
    quiet = sync(source)
    assert quiet.counts["contacts"]["path"] == "window"
    assert any(n.startswith("Read the") for n in quiet.counts["contacts"]["notes"])
    before = changes_allocated(source)
    bulk = sandbox.mutate(PORTAL, "contacts", update=400, seed=7)
    run = sync(source)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    c = run.counts["contacts"]
    assert c["path"] == "reread" and any(n.startswith("Re-read all") for n in c["notes"])
    assert c["read"] == 600 and c["updated"] == len(set(bulk.updated))
    # Unchanged records got no new change_seq.
    assert changes_allocated(source) - before == c["updated"]
    assert_mirror_equals_sandbox(source, sandbox)
    assert small.updated


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="several writers need PostgreSQL")
def test_two_workers_execute_one_runs_ranges(workspace, sandbox, partitioned):
    """The run's own engine and a helper (another engine, its own writer and database connection) claim and
    commit the ranges of one run; the run finishes when the last range is done, with everyone's counts."""
    assert connection.vendor == "postgresql"
    partitioned.HUBSYNC_FETCHERS = 2
    partitioned.HUBSYNC_PARTITION_RECORDS = 100
    sandbox.seed(PORTAL, contacts=1_500, companies=0, deals=0, tickets=0)
    sandbox.set_knobs(latency_ms=30)
    source = make_source(workspace, sandbox)
    run = create_run(source=source, trigger=SyncRun.Trigger.FIRST)
    helped = {"ranges": 0}

    def helper() -> None:
        try:
            deadline = time.monotonic() + 60
            sc = SourceCollection.objects.get(source=source)
            while time.monotonic() < deadline and not ReadPartition.objects.filter(collection=sc).exists():
                time.sleep(0.05)
            helped["ranges"] = extract.execute_partitions(run_id=run.pk)
        finally:
            connections.close_all()

    thread = threading.Thread(target=helper)
    thread.start()
    finished = extract.execute_run(run_id=run.pk)
    thread.join(timeout=120)
    assert finished is not None and finished.status == SyncRun.Status.SUCCEEDED, finished and finished.error
    assert helped["ranges"] >= 1
    assert finished.counts["contacts"]["read"] == finished.counts["contacts"]["new"] == 1_500
    assert finished.progress_done == 1_500
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 1_500


def test_a_helper_of_a_finished_run_does_nothing(workspace, sandbox, partitioned):
    sandbox.seed(PORTAL, contacts=50, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert extract.execute_partitions(run_id=run.pk) == 0
    assert partition_progress(source.pk) == {}  # the read is finished: its ranges are gone
    assert partitions.READ_PARTITIONS == "sources.read_partitions"


def test_pages_waiting_for_the_writer_commit_in_one_transaction(workspace, sandbox, partitioned, monkeypatch):
    """A slow writer finds several ranges' pages waiting: they commit together (one change_seq block and one fence
    per group), each range's row with its own last position, and nothing is lost or written twice."""
    sandbox.seed(PORTAL, contacts=1_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    groups: list[tuple[int, int]] = []  # (pages, ranges) of each commit
    allocations = {"n": 0}
    commit, allocate = partitions.Partitions.commit_partition_pages, mirror.MirrorWrites.allocate

    def recorded(engine, items):
        groups.append((len(items), len({part.pk for part, *_rest in items})))
        return commit(engine, items)

    def counted(engine, n):
        allocations["n"] += 1
        return allocate(engine, n)

    monkeypatch.setattr(partitions.Partitions, "commit_partition_pages", recorded)
    monkeypatch.setattr(mirror.MirrorWrites, "allocate", counted)
    monkeypatch.setattr(mirror, "after_page", lambda engine, sc: time.sleep(0.05))  # the fetchers get ahead
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert max(ranges for _pages, ranges in groups) >= 2  # pages of several ranges in one transaction
    assert sum(pages for pages, _ranges in groups) > len(groups)
    assert allocations["n"] <= len(groups)  # one change_seq block per group
    assert run.counts["contacts"]["read"] == run.counts["contacts"]["new"] == 1_000
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 1_000


def test_search_ranges_are_read_through_the_list_when_it_would_finish_first(
    workspace, sandbox, partitioned, monkeypatch
):
    """The plan's split is a guess: an unbegun search range is claimed through the list when what the list ranges
    hold would run out first, so neither budget finishes alone."""
    sandbox.seed(PORTAL, contacts=1_200, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    # A lopsided plan: one range through the list, every other one through search.
    monkeypatch.setattr(
        plan, "assign", lambda ranges, search_carries_all: [plan.LIST] + [plan.SEARCH] * (len(ranges) - 1)
    )
    through_list: list[int] = []
    monkeypatch.setattr(
        mirror,
        "after_page",
        lambda engine, sc: through_list.append(ReadPartition.objects.filter(collection=sc, via=plan.LIST).count()),
    )
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["partitions"]["total"] >= 4
    assert max(through_list) >= 2  # planned through search, read through the list
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 1_200

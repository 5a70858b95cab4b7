"""Partitioned reads (sources.extraction.partitions) against the HubSpot sandbox over real HTTP: several requests in
flight, both budgets, each id range checkpointed on its own row. The oracle is the sandbox read independently
(tests.sources.extract_helpers.sandbox_truth); the thresholds are lowered so that small portals are partitioned."""

from __future__ import annotations

import bisect
import threading
import time

import pytest
import requests
from django.db import connection, connections

import sources.extraction as extract
from sources.extraction import mirror, partitions, plan
from sources.hubspot import HubSpotClient
from sources.models import ChangeCounter, ReadPartition, Record, SourceCollection, SyncRun
from sources.ratelimit import get_rate_limiter
from sources.runs import create_run
from sources.selectors import partition_progress
from tests.sources.extract_helpers import PORTAL, assert_mirror_equals_sandbox, make_source, sandbox_truth, sync


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


def splits_made(monkeypatch) -> list[int]:
    """The cut of every split a run made (Partitions.split_partition), in order."""
    splits: list[int] = []
    real = partitions.Partitions.split_partition

    def counted(engine, active, *args, **kwargs):
        highs = {pk: part.high for pk, part in active.items()}
        done = real(engine, active, *args, **kwargs)
        if done:
            splits.extend(part.high for pk, part in active.items() if part.high != highs[pk])
        return done

    monkeypatch.setattr(partitions.Partitions, "split_partition", counted)
    return splits


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


def test_running_ranges_split_so_no_fetcher_idles_and_nothing_is_lost(workspace, sandbox, partitioned, monkeypatch):
    # Two planned ranges for four fetchers: the running ranges are split (the upper half a new range, through
    # search while it has room), down to SPLIT_MIN_RECORDS; pages read above a cut are the new range's.
    partitioned.HUBSYNC_PARTITION_MAX = 2
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 60)
    sandbox.seed(PORTAL, contacts=1_500, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    seen = vias_seen(monkeypatch)
    splits = splits_made(monkeypatch)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    c = run.counts["contacts"]
    assert len(splits) >= 2 and c["partitions"]["total"] - len(splits) in (1, 2)  # planned: at most 2
    assert c["partitions"]["done"] == c["partitions"]["total"]
    assert c["read"] == c["new"] == 1_500 and run.progress_done == 1_500
    assert {plan.LIST, plan.SEARCH} <= set().union(*seen)
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 1_500  # no record committed twice (by a range and its split-off half)


def test_list_ranges_leave_fetchers_to_search_which_reads_unbegun_list_ranges(
    workspace, sandbox, partitioned, monkeypatch
):
    """With more than twice SEARCH_FETCHERS fetchers the list never holds them all: a free fetcher the list may not
    have reads through search, and finding only list ranges pending it reads an unbegun one (not read ahead)
    through search while search holds the shorter read. Planned all through the list, no splits: search ranges
    appear all the same (the turn is what this asserts), and the mirror is exact."""
    partitioned.HUBSYNC_FETCHERS = 6
    partitioned.HUBSYNC_PARTITION_MAX = 16
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)  # no splits: only the turns make search ranges
    monkeypatch.setattr(partitions, "HEADS", 1)
    monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.LIST] * len(ranges))
    sandbox.seed(PORTAL, contacts=2_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    seen = vias_seen(monkeypatch)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert plan.SEARCH in set().union(*seen)
    assert run.counts["contacts"]["read"] == run.counts["contacts"]["new"] == 2_000
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 2_000


def test_a_range_split_off_for_search_holds_whole_search_pages(workspace, sandbox, partitioned, monkeypatch):
    """A range's last page is part-filled, and a search page is worth two of the list's: a range split off for
    search is sized in whole search pages (less WHOLE_PAGE_MARGIN for the estimate), the list range keeping the
    rest. Exact mirror, one change_seq per record."""
    partitioned.HUBSYNC_PARTITION_MAX = 2
    partitioned.HUBSYNC_PARTITION_RECORDS = 1_500
    monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.LIST] * len(ranges))
    sandbox.seed(PORTAL, contacts=3_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    split_off: dict[int, tuple[str, int]] = {}

    def look(engine, sc):
        for index, via, estimate in ReadPartition.objects.filter(collection=sc, index__gte=2).values_list(
            "index", "via", "estimate"
        ):
            split_off.setdefault(index, (via, estimate))

    monkeypatch.setattr(mirror, "after_page", look)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    page = int(partitions.SEARCH_LIMIT * (1 - partitions.WHOLE_PAGE_MARGIN))
    searched = [estimate for via, estimate in split_off.values() if via == plan.SEARCH and estimate >= page]
    assert searched, split_off
    assert all(estimate % page == 0 for estimate in searched), split_off
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 3_000


def test_the_balance_keeps_the_list_windows_rhythm():
    """How long the list takes to send its requests follows the slots it holds: free ones now, held ones as they
    free, and a slot again a hold after the request that took it (a read that spent its window early waits for
    it); search at its budget. Unknown slots: the list's average rate."""
    hold = 10.025
    frees = [2.0 + i * 0.05 for i in range(100)]  # 100 of 110 held, freeing from 2 s on
    balance = partitions.Balance({plan.LIST: 0, plan.SEARCH: 0}, {plan.LIST: 0, plan.SEARCH: 0}, (frees, hold, 110))
    assert balance.seconds() == {plan.LIST: 0.0, plan.SEARCH: 0.0}
    ten = partitions.Balance(  # one list range, no records: half a page
        {plan.LIST: 0, plan.SEARCH: 0}, {plan.LIST: 1, plan.SEARCH: 0}, (frees, hold, 110)
    )
    assert ten.seconds()[plan.LIST] == 0.0
    left = partitions.Balance({plan.LIST: 1_950, plan.SEARCH: 0}, {plan.LIST: 1, plan.SEARCH: 0}, (frees, hold, 110))
    assert left.seconds()[plan.LIST] == pytest.approx(frees[9])  # 20 requests: 10 free now, then the held ones
    big = partitions.Balance({plan.LIST: 12_950, plan.SEARCH: 0}, {plan.LIST: 1, plan.SEARCH: 0}, (frees, hold, 110))
    assert big.seconds()[plan.LIST] == pytest.approx(frees[9] + hold)  # 130: the 130th waits for the 20th's slot
    # The scan of archived records after the read owes the list a request per collection.
    scan = partitions.Balance(
        {plan.LIST: 1_950, plan.SEARCH: 0}, {plan.LIST: 1, plan.SEARCH: 0}, (frees, hold, 110), after=1
    )
    assert scan.seconds()[plan.LIST] == pytest.approx(frees[10])
    unknown = partitions.Balance({plan.LIST: 11_000, plan.SEARCH: 0}, {plan.LIST: 0, plan.SEARCH: 0})
    assert 9.9 < unknown.seconds()[plan.LIST] < 10.1
    # Search: 5 pages/s less its guard and the counts it pays for the list; a range ends on half a page.
    search = partitions.Balance({plan.LIST: 0, plan.SEARCH: 1_900}, {plan.LIST: 0, plan.SEARCH: 1}, (frees, hold, 110))
    assert 2.0 < search.seconds()[plan.SEARCH] < 2.2
    moved = search.moved(1_000, plan.SEARCH, plan.LIST)
    assert moved.left == {plan.LIST: 1_000, plan.SEARCH: 900} and moved.ranges == {plan.LIST: 1, plan.SEARCH: 0}
    assert moved.seconds()[plan.LIST] == pytest.approx(frees[0])  # 10.5 pages: the 11th waits for a slot


def test_small_rests_of_list_ranges_are_split_towards_an_idle_search(workspace, sandbox, partitioned, monkeypatch):
    """Ranges below SPLIT_MIN_RECORDS are not split towards the list, but towards search from SPLIT_SEARCH_SHARE
    of it while the list holds the longer read (a part-filled search page is a page less for a range that fills
    it): at the read's end the list's window is often spent while search idles."""
    partitioned.HUBSYNC_PARTITION_MAX = 2
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 600)  # both planned ranges below it
    monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.LIST] * len(ranges))
    sandbox.seed(PORTAL, contacts=500, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    seen = vias_seen(monkeypatch)
    splits = splits_made(monkeypatch)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert splits and plan.SEARCH in set().union(*seen)
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 500


@pytest.mark.parametrize("mode", ["planned", "splitting", "rest-by-list"])
def test_a_kill_at_every_checkpoint_loses_nothing_and_rewrites_nothing(
    workspace, sandbox, partitioned, monkeypatch, mode
):
    split = mode == "splitting"
    if split:  # fewer ranges than fetchers: every run splits the ranges it holds
        partitioned.HUBSYNC_PARTITION_MAX = 2
        monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 40)
        # From a run's start, not once a fetcher read a page: each run commits one page and dies, and a resumed
        # range whose fetcher raced to its end first could leave a whole read without a split (seen under load).
        monkeypatch.setattr(partitions.Part, "begun", lambda part: True)
    else:  # ranges of a few hundred: a split towards search (from 40 % of SPLIT_MIN_RECORDS) could come with timing
        monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)
    if mode == "rest-by-list":  # search ranges of ~230 records: a page, then the rest through the list
        partitioned.HUBSYNC_PARTITION_RECORDS = 280
        monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.SEARCH] * len(ranges))
        monkeypatch.setattr(partitions.Partitions, "_finishes_first", lambda engine, left, row, to: to == plan.SEARCH)
        monkeypatch.setattr(partitions, "HEADS", 1)  # no range but the first starts where the list read ahead
        # (so no stream from a cut proves the list's `after`, which the sandbox's list does take: given here)
        monkeypatch.setattr(partitions.FetcherPool, "after_proven", lambda pool, collection_id: True)
    monkeypatch.setattr(partitions, "GROUP_PAGES", 1)  # a checkpoint per page (group commits: their own test)
    splits = splits_made(monkeypatch)
    contacts = 680 if mode == "rest-by-list" else 700  # (rest-by-list: a search range's rest of ~80)
    sandbox.seed(PORTAL, contacts=contacts, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    pages = {"n": 0}

    switched: list[int] = []

    def stop_after_one(engine, sc):
        pages["n"] += 1
        switched.extend(
            pk
            for pk, low, last_id, after in ReadPartition.objects.filter(collection=sc, via=plan.LIST).values_list(
                "pk", "low", "last_id", "after"
            )
            if last_id > low and after == str(last_id)
        )
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
            assert progress["running"] == 0 and progress["done"] + progress["pending"] == progress["total"]
            # (splitting: a first page may commit before any split)
            assert progress["total"] >= {"planned": 4, "splitting": 1, "rest-by-list": 2}[mode]
            continue
        break
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    # One run per committed page: every checkpoint a kill (splits go towards search, pages of 200: 700 in 4 pages
    # at the least).
    assert runs >= {"planned": 8, "splitting": 5, "rest-by-list": 6}[mode]
    assert bool(splits) == split
    if mode == "rest-by-list":
        assert switched  # a kill right after a search page handed its range's rest to the list
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == contacts  # no record re-read into a new change_seq


def test_more_than_10000_records_with_one_timestamp_in_one_search_range(workspace, sandbox, partitioned, monkeypatch):
    """A search range is keyset-paged on hs_object_id, so the 10,000-result cap of one query never applies."""
    sandbox.seed(PORTAL, contacts=10_300, companies=0, deals=0, tickets=0)
    sandbox.mutate(PORTAL, "contacts", update=10_300, same_timestamp=True, seed=4)
    source = make_source(workspace, sandbox)
    partitioned.HUBSYNC_PARTITION_RECORDS = 50_000  # one range
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)  # and it stays one
    monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.SEARCH] * len(ranges))
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["read"] == 10_300
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


@pytest.mark.parametrize("split", [False, True], ids=["planned", "splitting"])
def test_deletion_check_per_range_on_a_full_sync(workspace, sandbox, partitioned, monkeypatch, split):
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    assert sync(source, SyncRun.Trigger.FIRST).status == SyncRun.Status.SUCCEEDED
    if split:  # two ranges for four fetchers: split while they run, each half checking its own ids
        partitioned.HUBSYNC_PARTITION_MAX = 2
        monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 30)
    else:  # ranges of ~150: a split towards search (from 40 % of SPLIT_MIN_RECORDS) could come with the timing
        monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)
    splits = splits_made(monkeypatch)
    ids = sorted(Record.objects.filter(source=source).values_list("object_id", flat=True))
    doomed = ids[5::100]  # spread over every range
    sandbox.purge(doomed, portal=PORTAL)
    archived = sandbox.mutate(PORTAL, "contacts", archive=3, seed=5).archived
    full = sync(source, SyncRun.Trigger.FULL)
    assert full.status == SyncRun.Status.SUCCEEDED, full.error
    c = full.counts["contacts"]
    assert c["partitions"]["total"] >= 2  # planned from the mirror's quantiles
    assert bool(splits) == split
    assert c["deleted"] == len(doomed) and c["archived"] == len(archived)
    assert not Record.objects.filter(source=source, object_id__in=doomed).exists()
    assert_mirror_equals_sandbox(source, sandbox, exact=True)


def test_records_deleted_at_the_ranges_bounds_are_found(workspace, sandbox, partitioned, monkeypatch):
    """A Full sync cuts its ranges at ids the mirror holds (its quantiles): a range's high bound is a record. Those
    very records, deleted in HubSpot once the ranges are planned, are found by the deletion check of the range
    they end (its candidates run up to and including the high bound) and removed; nothing else is."""
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    assert sync(source, SyncRun.Trigger.FIRST).status == SyncRun.Status.SUCCEEDED
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)
    doomed: list[int] = []
    real = partitions.Partitions.plan_partitions

    def plan_then_purge(engine, sc, *args, **kwargs):
        real(engine, sc, *args, **kwargs)
        highs = ReadPartition.objects.filter(collection=sc, high__isnull=False).values_list("high", flat=True)
        doomed.extend(sandbox.purge(list(highs), portal=PORTAL))

    monkeypatch.setattr(partitions.Partitions, "plan_partitions", plan_then_purge)
    held = Record.objects.filter(source=source).count()
    full = sync(source, SyncRun.Trigger.FULL)
    assert full.status == SyncRun.Status.SUCCEEDED, full.error
    assert len(doomed) >= 2 and full.counts["contacts"]["deleted"] == len(doomed)
    assert not Record.objects.filter(source=source, object_id__in=doomed).exists()
    assert Record.objects.filter(source=source).count() == held - len(doomed)
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


def _list_where_after_means(monkeypatch, meaning: str) -> None:
    """The sandbox's list with another reading of its documented-as-opaque `after`: "last" (the last id returned:
    the page starts above it) or "offset" (records to skip, in id order)."""
    from sandbox.hubspot import records

    real = records.list_page

    def last_returned(td, *, after, limit, wanted, archived):
        results, nxt = real(td, after=after + 1 if after else 0, limit=limit, wanted=wanted, archived=archived)
        return results, (nxt - 1 if nxt is not None else None)

    def offset(td, *, after, limit, wanted, archived):
        every, at = [], 0
        while True:  # the whole collection in id order (a few hundred records in these tests)
            page, at = real(td, after=at, limit=100, wanted=wanted, archived=archived)
            every += page
            if at is None:
                break
        page = every[after : after + limit]
        return page, (after + limit if after + limit < len(every) else None)

    monkeypatch.setattr(records, "list_page", last_returned if meaning == "last" else offset)


@pytest.mark.parametrize("meaning", ["last", "offset"])
def test_list_ranges_lose_nothing_whatever_after_means(workspace, sandbox, partitioned, monkeypatch, meaning):
    # HubSpot documents `after` as opaque: read as the last id returned, a range started at its low bound skips
    # nothing; read as an offset, the first page's check sends the ranges to search.
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    ids = sorted(sandbox_truth(sandbox, PORTAL, "contacts")[0])
    real_split = plan.split

    def cut_below_records(*args, **kwargs):
        # Every cut just below a record (low + 1 exists): the case where the two readings of an id differ.
        ranges = real_split(*args, **kwargs)
        moved = [ids[bisect.bisect_right(ids, r.low)] - 1 if r.low > 0 else 0 for r in ranges]
        return [
            plan.Range(low, moved[n + 1] if n + 1 < len(ranges) else None, r.estimate)
            for n, (low, r) in enumerate(zip(moved, ranges, strict=True))
        ]

    monkeypatch.setattr(plan, "split", cut_below_records)
    _list_where_after_means(monkeypatch, meaning)
    source = make_source(workspace, sandbox)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    notes = run.counts["contacts"].get("notes", [])
    assert any("read through search instead" in n for n in notes) == (meaning == "offset"), notes
    assert run.counts["contacts"]["new"] == 900
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 900


def test_a_list_out_of_id_order_is_read_through_search(workspace, sandbox, partitioned, monkeypatch):
    # HubSpot's list pages come in ascending id order in practice, but that is not documented: a list whose
    # pages come in another order cannot say where a range ends, so its ranges are read through search.
    from sandbox.hubspot import records

    real = records.list_page

    def reversed_pages(td, *, after, limit, wanted, archived):
        results, nxt = real(td, after=after, limit=limit, wanted=wanted, archived=archived)
        return list(reversed(results)), nxt

    monkeypatch.setattr(records, "list_page", reversed_pages)
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    notes = run.counts["contacts"].get("notes", [])
    assert any("through search instead" in n for n in notes), notes
    assert run.counts["contacts"]["new"] == 900
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 900


def test_two_proofs_of_the_id_after_spare_the_other_ranges_a_count(workspace, sandbox, partitioned, monkeypatch):
    partitioned.HUBSYNC_PARTITION_RECORDS = 60
    partitioned.HUBSYNC_PARTITION_MAX = 40
    # Only the stream from id 0 reads ahead (it proves nothing): the proofs must come from the ranges' own checks.
    monkeypatch.setattr(partitions, "HEADS", 1)
    sandbox.seed(PORTAL, contacts=2_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    checks: list[int] = []
    starts: list[int] = []
    real_count, real_step = partitions.Partitions.count_range, partitions.Partitions._list_step

    def counted(engine, sc, low, high):
        checks.append(low)
        return real_count(engine, sc, low, high)

    def step(engine, sc, low, high, pos, names):
        if not pos.verified:
            starts.append(low)
        return real_step(engine, sc, low, high, pos, names)

    monkeypatch.setattr(partitions.Partitions, "count_range", counted)
    monkeypatch.setattr(partitions.Partitions, "_list_step", step)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["new"] == 2_000
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 2_000
    # Many list ranges started; a check (one search) for the first two (the others waited for their outcome),
    # and none after.
    assert len(starts) >= 10, starts
    assert 1 <= len(checks) <= partitions.AFTER_PROOFS + 1, (checks, starts)


def test_a_429_storm_with_several_requests_in_flight(workspace, sandbox, partitioned, monkeypatch):
    sandbox.seed(PORTAL, contacts=900, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    flight = {"now": 0, "stormed": False}
    lock = threading.Lock()
    real_send = HubSpotClient._send

    def send(client, *args):
        # The storm starts the first time three requests are in flight at once (the fetchers' ranges).
        with lock:
            flight["now"] += 1
            storm = flight["now"] >= 3 and not flight["stormed"]
            flight["stormed"] = flight["stormed"] or storm
        if storm:
            sandbox.set_knobs(fail_next=12, fail_next_status="429")
        try:
            return real_send(client, *args)
        finally:
            with lock:
                flight["now"] -= 1

    monkeypatch.setattr(HubSpotClient, "_send", send)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert flight["stormed"]
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
def test_two_workers_execute_one_runs_ranges(workspace, sandbox, partitioned, monkeypatch):
    """The run's own engine and a helper (another engine, its own writer and database connection) claim and
    commit the ranges of one run; the run finishes when the last range is done, with everyone's counts."""
    assert connection.vendor == "postgresql"
    partitioned.HUBSYNC_FETCHERS = 2
    partitioned.HUBSYNC_PARTITION_RECORDS = 100
    # Budgets that never make anyone wait, so the shared limiter keeps its windows (the run's busiest 10 s).
    partitioned.HUBSPOT_RATE_LIMIT, partitioned.HUBSPOT_SEARCH_RATE_LIMIT = 100_000, 10_000
    get_rate_limiter().reset(str(PORTAL))
    sandbox.seed(PORTAL, contacts=1_500, companies=0, deals=0, tickets=0)
    sandbox.set_knobs(latency_ms=30)
    source = make_source(workspace, sandbox)
    run = create_run(source=source, trigger=SyncRun.Trigger.FIRST)
    helped = {"ranges": 0}
    sent = {"n": 0, "general": 0}
    lock = threading.Lock()
    real_send = HubSpotClient._send

    def counted(client, method, url, data, token, kind):
        with lock:
            sent["n"] += 1
            sent["general"] += kind == "general"
        return real_send(client, method, url, data, token, kind)

    monkeypatch.setattr(HubSpotClient, "_send", counted)
    # The helper's first requests meet 429s (HubSpot's answer, stubbed at the HTTP boundary of its clients only).
    limited = {"n": 0}
    real_reader = partitions.Partitions.thread_reader

    def reader(engine):
        copy = real_reader(engine)
        if engine.helper:
            real_request = copy.client.session.request

            def request(method, url, **kwargs):
                with lock:
                    refuse = limited["n"] < 3
                    limited["n"] += refuse
                if not refuse:
                    return real_request(method, url, **kwargs)
                response = requests.Response()
                response.status_code, response._content = 429, b'{"status":"error","category":"RATE_LIMITS"}'
                return response

            copy.client.session.request = request
        return copy

    monkeypatch.setattr(partitions.Partitions, "thread_reader", reader)

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
    # The run's request figure counts the helper's requests too (they reach it through the ranges' rows).
    assert finished.api_calls == sent["n"]
    # The helper's 429s and retries too.
    assert limited["n"] == 3 and finished.rate_limited == 3 and finished.retries >= 3
    # And so does its busiest 10 s (the shared limiter's window, sampled at the heartbeats): the whole run took
    # less than 10 s, so its busiest window holds every list request of both workers.
    elapsed = (finished.finished_at - finished.started_at).total_seconds()
    if elapsed < 9:
        assert finished.peak_requests_10s == sent["general"], (finished.peak_requests_10s, sent)
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


def test_a_search_ranges_last_records_that_fit_a_list_page_come_through_the_list(
    workspace, sandbox, partitioned, monkeypatch
):
    """A search page is a slot worth 200 records, a list page one worth 100: once the list's id `after` is proven,
    a search range whose rest (the page's `total` less its records) fits one list page reads it through the list,
    from the last id read. Exact mirror, one change_seq per record, and no part-filled search page of a range's
    rest."""
    partitioned.HUBSYNC_PARTITION_RECORDS = 280  # ranges of ~280 records: a full search page and a rest of ~80
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)
    sandbox.seed(PORTAL, contacts=2_400, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    monkeypatch.setattr(plan, "assign", lambda ranges, search_carries_all: [plan.SEARCH] * len(ranges))
    # Every range stays on search (the balance would move unbegun ones to the idle list, as many as the timing
    # of the run allows), so that every range has a rest to move.
    monkeypatch.setattr(partitions.Partitions, "_finishes_first", lambda self, left, row, to: False)
    searched: list[tuple[bool, int]] = []  # (a range's rest: keyset-continued, records) per search page
    listed: list[str] = []
    real_search, real_list = HubSpotClient.search_page, HubSpotClient.list_page
    ends: set[str] = set()

    def search_page(client, collection, body):
        page = real_search(client, collection, body)
        if body.get("limit") != 1:
            low = body["filterGroups"][0]["filters"][0]["value"]
            results = page.get("results") or []
            searched.append((low in ends, len(results)))
            if results:
                ends.add(results[-1]["id"])
        return page

    def list_page(client, collection, *, properties, after=None, limit=100, archived=False):
        if limit == 100 and not archived:
            listed.append(after or "")
        return real_list(client, collection, properties=properties, after=after, limit=limit, archived=archived)

    monkeypatch.setattr(HubSpotClient, "search_page", search_page)
    monkeypatch.setattr(HubSpotClient, "list_page", list_page)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 2_400
    assert run.counts["contacts"]["partitions"]["total"] >= 6
    switched = [after for after in listed if after in ends]
    assert len(switched) >= 3, (listed, sorted(ends))  # rests read through the list, after a search page's last id
    assert not [n for rest, n in searched if rest and 0 < n <= 98], searched


def test_fetcher_threads_keep_their_debug_query_log_one_page_deep(workspace, sandbox, partitioned, monkeypatch):
    """With DEBUG on (the embedded default) a fetcher thread's own connection logs the deletion check's queries:
    a long read must not keep them all (up to 9,000 per thread)."""
    sandbox.seed(PORTAL, contacts=2_500, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    assert sync(source, SyncRun.Trigger.FIRST).status == SyncRun.Status.SUCCEEDED
    partitioned.DEBUG = True
    partitioned.HUBSYNC_PARTITION_MAX = 2  # long ranges: many pages per fetcher thread
    monkeypatch.setattr(partitions, "SPLIT_MIN_RECORDS", 10**9)
    depths: list[int] = []
    real = partitions.Partitions.candidate_batches

    def candidates(engine, *args, **kwargs):
        depths.append((threading.current_thread().name, len(connections["default"].queries_log)))
        yield from real(engine, *args, **kwargs)

    monkeypatch.setattr(partitions.Partitions, "candidate_batches", candidates)
    full = sync(source, SyncRun.Trigger.FULL)  # the deletion check: queries in the fetcher threads
    assert full.status == SyncRun.Status.SUCCEEDED, full.error
    fetchers = [depth for name, depth in depths if name.startswith("hubsync-fetch")]
    assert len(fetchers) >= 20
    assert max(fetchers) <= 3, fetchers


def test_pages_read_ahead_while_planning_are_not_asked_again(workspace, sandbox, partitioned, monkeypatch):
    """While the plan counts, the list reads ahead from id 0 and from the first cuts found; the ranges that start
    there take those pages: every list page is asked for once, and the mirror is exact."""
    sandbox.set_knobs(latency_ms=80)  # the plan's counts take long enough for the read-ahead to read
    sandbox.seed(PORTAL, contacts=3_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    asked: list[tuple[str, str]] = []
    real = HubSpotClient.list_page

    def list_page(client, collection, *, properties, after=None, limit=100, archived=False):
        if limit == 100 and not archived:
            asked.append((threading.current_thread().name, after or ""))
        return real(client, collection, properties=properties, after=after, limit=limit, archived=archived)

    monkeypatch.setattr(HubSpotClient, "list_page", list_page)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 3_000
    ahead = [after for name, after in asked if name.startswith("hubsync-ahead")]
    assert ahead, asked  # the read-ahead read
    afters = [after for _name, after in asked]
    assert len(afters) == len(set(afters)), sorted(a for a in afters if afters.count(a) > 1)


def test_a_first_read_asks_its_properties_and_its_size_at_once(workspace, sandbox, partitioned, monkeypatch):
    """The properties (list budget) are read while search tells the collection's total and smallest id, and its
    largest id: the plan starts two round trips sooner, and the largest id is not asked twice."""
    sandbox.set_knobs(latency_ms=150)
    sandbox.seed(PORTAL, contacts=1_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    sent: list[tuple[str, float, float]] = []
    real = HubSpotClient._send

    def timed(client, method, url, data, token, kind):
        started = time.monotonic()
        response = real(client, method, url, data, token, kind)
        body = data or b""
        what = (
            "properties"
            if "/crm/v3/properties/" in url
            else "largest"
            if b'"DESCENDING"' in body
            else "estimate"
            if b'"filterGroups":[]' in body and b'"ASCENDING"' in body
            else "other"
        )
        sent.append((what, started, time.monotonic()))
        return response

    monkeypatch.setattr(HubSpotClient, "_send", timed)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.counts["contacts"]["partitions"]["total"] >= 2
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    first = {what: (start, end) for what, start, end in reversed(sent)}
    assert [what for what, *_ in sent].count("largest") == 1
    assert first["estimate"][0] < first["properties"][1]  # asked while the properties were on their way
    assert first["largest"][0] < first["properties"][1]


def test_streams_read_ahead_from_cuts_prove_the_list_takes_an_id_after(workspace, sandbox, partitioned, monkeypatch):
    """The count that found a cut says the smallest id above it; the list's first id after the cut (read ahead while
    the plan counts) must be that one. Two such proofs, and no list range spends a search count on its first page."""
    partitioned.HUBSYNC_PARTITION_RECORDS = 100
    partitioned.HUBSYNC_PARTITION_MAX = 20
    sandbox.seed(PORTAL, contacts=2_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    checks: list[int] = []
    real = partitions.Partitions.count_range

    def counted(engine, sc, low, high):
        checks.append(low)
        return real(engine, sc, low, high)

    monkeypatch.setattr(partitions.Partitions, "count_range", counted)
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 2_000
    assert SourceCollection.objects.get(source=source).cursor["mode"] == "idle"
    assert not checks, checks


def test_a_list_that_reads_after_as_an_offset_is_caught_by_the_streams_read_ahead(
    workspace, sandbox, partitioned, monkeypatch
):
    """The same streams disprove it: where HubSpot's list took `after` as an offset, the first id after a cut is not
    the one the count saw, and every list range goes to search (exact mirror)."""
    partitioned.HUBSYNC_PARTITION_RECORDS = 100
    partitioned.HUBSYNC_PARTITION_MAX = 20
    _list_where_after_means(monkeypatch, "offset")
    sandbox.seed(PORTAL, contacts=2_000, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox)
    verdicts: list = []
    real = partitions.Heads.verdict
    monkeypatch.setattr(partitions.Heads, "verdict", lambda heads: verdicts.append(real(heads)) or verdicts[-1])
    run = sync(source, SyncRun.Trigger.FIRST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert verdicts == [False]
    assert_mirror_equals_sandbox(source, sandbox, exact=True)
    assert changes_allocated(source) == 2_000

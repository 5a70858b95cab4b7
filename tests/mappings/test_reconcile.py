"""Reconciliation: HubSpot sandbox → extraction engine → mirror → delivery engine → Segment sandbox, over real HTTP.

After rounds of random creates, updates and archives in the HubSpot sandbox with a sync (and its deliveries) in
between, the Segment sandbox's merged profiles equal what the mapping defines for the sandbox's current data,
and a sync that follows no change sends zero messages. The same with Segment failing (5xx / 429 storms, a full
outage), and with records that cannot be sent (no user id, oversize values): those are rejected, visibly, and
the rest is delivered. The engine and the deliveries run in this process, as `manage.py sync` runs them."""

from __future__ import annotations

import contextlib
import random

import pytest
from django.core.management import call_command

from mappings.delivery import collections_behind, deliver
from mappings.delivery import sender as deliver_module
from mappings.models import DeliveryRun, DeliveryState
from sources.models import SyncRun
from tests.mappings.conftest import profiles_by_user as profiles
from tests.mappings.reconcile_helpers import (
    PORTAL,
    Oracle,
    inbox_total,
    make_group_mapping,
    merge_pairs,
    set_archived_option,
    setup_pipeline,
    sync_and_deliver,
    update_then_archive,
)
from tests.sources.extract_helpers import archive, make_source, merge

pytestmark = pytest.mark.django_db(transaction=True)


def assert_quiet_sync_sends_nothing(source, segment) -> None:
    before = inbox_total(segment)
    run, deliveries = sync_and_deliver(source)
    assert all(c["new"] == 0 and c["updated"] == 0 for c in run.counts.values()), run.counts
    assert all(d is None or (d.sent, d.requests) == (0, 0) for d in deliveries)
    assert inbox_total(segment) == before


@pytest.mark.parametrize("seed", [11, 2027])
def test_random_rounds_reconcile_and_no_change_sends_nothing(workspace, hub, segment, seed):
    rng = random.Random(seed)
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=120)
    oracle = Oracle(hub, PORTAL)

    run, deliveries = sync_and_deliver(source, SyncRun.Trigger.FIRST)
    assert [d.status for d in deliveries] == [DeliveryRun.Status.SUCCEEDED]
    assert profiles(segment) == oracle.after_sync()
    # Some sandbox contacts have no email, like real portals: rejected, the rest sent.
    assert deliveries[0].sent == len(oracle.profiles) and deliveries[0].sent + deliveries[0].rejected == 120
    assert_quiet_sync_sends_nothing(source, segment)

    for round_no in range(4):
        hub.mutate(
            PORTAL, "contacts", create=rng.randint(0, 12), update=rng.randint(1, 25), archive=rng.randint(0, 6),
            seed=rng.randint(0, 10**6),
        )  # fmt: skip
        update_then_archive(hub, PORTAL, rng, rng.randint(0, 4))
        merge_pairs(hub, PORTAL, rng, rng.randint(0, 3))
        # Full syncs now and then: they find what incremental ones cannot (records deleted for good).
        trigger = SyncRun.Trigger.FULL if round_no % 2 else SyncRun.Trigger.SCHEDULED
        run, deliveries = sync_and_deliver(source, trigger)
        assert [d.status for d in deliveries] == [DeliveryRun.Status.SUCCEEDED], round_no
        assert profiles(segment) == oracle.after_sync(), round_no
        assert_quiet_sync_sends_nothing(source, segment)
    counts = segment.counts()
    assert counts["discarded"] == 0 and counts["rejected_requests"] == 0


class Kill(Exception):
    """Raised inside the extraction engine: the worker dies there."""


def test_random_rounds_with_kills_and_segment_faults_reconcile(workspace, hub, segment, settings, monkeypatch):
    """Rounds of random changes (updates just before an archive and merges included), each first sync killed at a
    random point (after a read page, or while writing archived records' final values) and resumed by the next,
    with Segment failing a share of the requests: the profiles always equal what the mapping defines for
    HubSpot's current data, and the mirror holds nothing HubSpot merged away."""
    from sources import extraction as extract
    from sources.extraction import mirror, reads
    from sources.models import MergedRecord, Record
    from sources.runs import create_run

    rng = random.Random(41)
    settings.SEGMENT_MAX_ATTEMPTS = 20
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 9)
    monkeypatch.setattr(reads, "SEARCH_LIMIT", 10)  # several search pages from a round's changes
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=150)
    oracle = Oracle(hub, PORTAL)
    sync_and_deliver(source, SyncRun.Trigger.FIRST)
    assert profiles(segment) == oracle.after_sync()
    segment.set_knobs(error_rate=0.25, rate_limit_rate=0.1, retry_after=0)
    write_final = extract.Engine.write_final
    merged: list[int] = []
    kills = 0
    for round_no in range(4):
        hub.mutate(PORTAL, "contacts", create=rng.randint(0, 8), update=rng.randint(5, 20), archive=rng.randint(0, 4),
                   seed=rng.randint(0, 10**6))  # fmt: skip
        update_then_archive(hub, PORTAL, rng, rng.randint(1, 4))
        merge_pairs(hub, PORTAL, rng, rng.randint(1, 2))
        where, stop_at, pages = ("page", "archived")[round_no % 2], rng.randint(1, 3), {"n": 0}

        def after_page(engine, sc, where=where, stop_at=stop_at, pages=pages):
            pages["n"] += 1
            if where == "page" and pages["n"] == stop_at:
                raise Kill

        def dying_write_final(engine, sc, records, where=where):
            if where == "archived" and records:
                raise Kill
            return write_final(engine, sc, records)

        monkeypatch.setattr(mirror, "after_page", after_page)
        monkeypatch.setattr(extract.Engine, "write_final", dying_write_final)
        trigger = SyncRun.Trigger.FULL if round_no % 2 else SyncRun.Trigger.SCHEDULED
        killed = create_run(source=source, trigger=trigger)
        with contextlib.suppress(Kill):
            extract.execute_run_foreground(run_id=killed.pk)
        killed.refresh_from_db()
        kills += killed.status == SyncRun.Status.FAILED
        monkeypatch.setattr(mirror, "after_page", lambda engine, sc: None)
        monkeypatch.setattr(extract.Engine, "write_final", write_final)

        run, deliveries = sync_and_deliver(source)
        assert all(d is None or d.status == DeliveryRun.Status.SUCCEEDED for d in deliveries), round_no
        assert profiles(segment) == oracle.after_sync(), round_no
        merged = list(MergedRecord.objects.filter(source=source).values_list("object_id", flat=True))
        assert not Record.objects.filter(source=source, object_id__in=merged).exists()
    assert merged and kills == 4
    segment.set_knobs(error_rate=0.0, rate_limit_rate=0.0)
    assert_quiet_sync_sends_nothing(source, segment)
    assert segment.counts()["discarded"] == 0


def test_segment_storms_and_an_outage_reconcile(workspace, hub, segment, settings, monkeypatch):
    """5xx and 429 storms are retried through; a full outage fails the delivery, and the next sync (even with no
    HubSpot change) resends what was not accepted, deduplicated by messageId."""
    rng = random.Random(5)
    settings.SEGMENT_MAX_ATTEMPTS = 20
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 9)  # many batches, many chances to fail
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=90)
    oracle = Oracle(hub, PORTAL)

    segment.set_knobs(error_rate=0.3, rate_limit_rate=0.2, retry_after=0)
    run, deliveries = sync_and_deliver(source, SyncRun.Trigger.FIRST)
    assert deliveries[0].status == DeliveryRun.Status.SUCCEEDED, deliveries[0].error
    assert deliveries[0].requests > deliveries[0].batches  # the storm was real: retries happened
    assert profiles(segment) == oracle.after_sync()

    for _round in range(2):
        hub.mutate(PORTAL, "contacts", create=5, update=15, archive=3, seed=rng.randint(0, 10**6))
        update_then_archive(hub, PORTAL, rng, 3)
        merge_pairs(hub, PORTAL, rng, 2)
        run, deliveries = sync_and_deliver(source)
        assert deliveries[0].status == DeliveryRun.Status.SUCCEEDED, deliveries[0].error
        assert profiles(segment) == oracle.after_sync()

    # Segment down: nothing accepted, the watermark stays, the run says why.
    segment.set_knobs(error_rate=1.0, rate_limit_rate=0.0)
    settings.SEGMENT_MAX_ATTEMPTS = 2
    hub.mutate(PORTAL, "contacts", create=4, update=10, seed=99)
    run, deliveries = sync_and_deliver(source)
    assert deliveries[0].status == DeliveryRun.Status.FAILED and deliveries[0].error
    assert collections_behind(source) == {"contacts"}

    # Segment back, HubSpot unchanged: the next sync still delivers what is behind.
    segment.set_knobs(error_rate=0.0)
    run, deliveries = sync_and_deliver(source)
    assert run.counts["contacts"]["new"] == 0 and run.counts["contacts"]["updated"] == 0
    assert [d.status for d in deliveries] == [DeliveryRun.Status.SUCCEEDED]
    assert profiles(segment) == oracle.after_sync()
    assert collections_behind(source) == set()
    assert_quiet_sync_sends_nothing(source, segment)


@pytest.mark.parametrize("behaviour", ["nothing", "trait"])
def test_an_update_made_just_before_an_archive_reaches_the_profile(workspace, hub, segment, behaviour):
    """Contacts changed in HubSpot and archived before the next sync: their profiles get the changed values (and,
    with "Set a trait", the trait true), once; a sync that follows sends nothing."""
    rng = random.Random(3)
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=40)
    set_archived_option(mapping, behaviour)
    sync_and_deliver(source, SyncRun.Trigger.FIRST)
    delivered = list(
        DeliveryState.objects.filter(mapping=mapping, status="delivered").values_list("object_id", flat=True)
    )
    ids = sorted(rng.sample(delivered, 3))
    for object_id in ids:
        hub.set_properties(object_id, {"firstname": f"Final{object_id}"}, portal=PORTAL)
    archive(hub, ids, hub_id=PORTAL)
    before = {m["messageId"] for m in segment.messages()}

    run, deliveries = sync_and_deliver(source)

    sent = [m["payload"] for m in segment.messages() if m["messageId"] not in before]
    assert sorted(m["traits"]["hubspot_id"] for m in sent) == ids
    for message in sent:
        assert message["traits"]["first_name"] == f"Final{message['traits']['hubspot_id']}"
        if behaviour == "trait":
            assert message["traits"]["hubspot_archived"] is True
        else:
            assert "hubspot_archived" not in message["traits"]
    found = profiles(segment)
    for message in sent:
        assert found[message["userId"]]["first_name"] == message["traits"]["first_name"]
    assert deliveries[0].sent == 3
    assert_quiet_sync_sends_nothing(source, segment)


@pytest.mark.parametrize("behaviour", ["nothing", "trait"])
def test_an_update_made_just_before_an_archive_reaches_the_account(workspace, hub, segment, behaviour):
    """The same for companies and a group mapping: the account gets the values the company was archived with."""
    hub.seed(PORTAL, contacts=0, companies=30, deals=0, tickets=0)
    source = make_source(workspace, hub, hub_id=PORTAL, collections=("companies",))
    mapping = make_group_mapping(source, segment.write_key)
    set_archived_option(mapping, behaviour)
    sync_and_deliver(source, SyncRun.Trigger.FIRST)
    ids = sorted(DeliveryState.objects.filter(mapping=mapping, status="delivered").values_list("object_id", flat=True))[
        4:7
    ]
    for object_id in ids:
        hub.set_properties(object_id, {"description": f"Final {object_id}"}, portal=PORTAL, collection="companies")
    archive(hub, ids, hub_id=PORTAL, collection="companies")

    run, deliveries = sync_and_deliver(source)

    accounts = {a["groupId"]: a["traits"] for a in segment.accounts()}
    for object_id in ids:
        assert accounts[str(object_id)]["description"] == f"Final {object_id}"
        assert accounts[str(object_id)].get("hubspot_archived") is (True if behaviour == "trait" else None)
    assert deliveries[0].sent == 3
    assert_quiet_sync_sends_nothing(source, segment)


def test_a_merge_delivers_the_merged_record_and_leaves_the_old_profiles(workspace, hub, segment):
    """Two contacts merged in HubSpot: the merged record (a new id) is delivered to the profile its e-mail names
    (the primary's), the other old profile stays as it was; a Full sync afterwards changes nothing."""
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=40)
    oracle = Oracle(hub, PORTAL)
    sync_and_deliver(source, SyncRun.Trigger.FIRST)
    assert profiles(segment) == oracle.after_sync()
    delivered = sorted(
        DeliveryState.objects.filter(mapping=mapping, status="delivered").values_list("object_id", flat=True)
    )
    primary, other = delivered[3], delivered[9]
    old = dict(profiles(segment))
    new = merge(hub, primary, other, hub_id=PORTAL)

    run, deliveries = sync_and_deliver(source, SyncRun.Trigger.FULL)

    assert run.counts["contacts"]["merged"] == 2
    expected = oracle.after_sync()
    assert profiles(segment) == expected
    merged_profile = next(t for t in expected.values() if t["hubspot_id"] == new)
    assert old[next(u for u, t in old.items() if t["hubspot_id"] == other)]["hubspot_id"] == other  # untouched
    assert merged_profile["hubspot_id"] == new
    assert deliveries[0].sent == 1
    assert_quiet_sync_sends_nothing(source, segment)
    run, deliveries = sync_and_deliver(source, SyncRun.Trigger.FULL)
    assert all(d is None or d.sent == 0 for d in deliveries)
    # The record debugger says what became of the old id and of its profile.
    from monitoring.debugger import not_in_mirror

    why, explained = not_in_mirror(source.workspace, str(other))
    assert explained and f"was merged into contacts id {new} in HubSpot" in why
    assert "The profile this id had in Segment stays as it was" in why


def test_records_without_user_id_or_oversize_are_rejected_visibly_and_the_rest_delivered(workspace, hub, segment):
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=40)
    oracle = Oracle(hub, PORTAL)
    run, deliveries = sync_and_deliver(source, SyncRun.Trigger.FIRST)
    assert profiles(segment) == oracle.after_sync()

    rejected = DeliveryState.objects.filter(mapping=mapping, status="rejected")
    without_email = set(rejected.values_list("object_id", flat=True))
    assert without_email  # the sandbox's portal has contacts without email, like real ones
    reasons = DeliveryState.objects.filter(status="rejected").values_list("error", flat=True)
    assert all("No User ID" in reason for reason in reasons)
    delivered = DeliveryState.objects.filter(mapping=mapping, status="delivered").order_by("object_id")
    ids = list(delivered.values_list("object_id", flat=True))
    no_email, huge = ids[3], ids[7]
    hub.mutate(PORTAL, "contacts", create=3, update=5, seed=3)
    hub.set_properties(no_email, {"email": ""}, portal=PORTAL)
    hub.set_properties(huge, {"support_notes": "x" * 40_000, "firstname": "Big"}, portal=PORTAL)

    run, deliveries = sync_and_deliver(source)
    delivery = deliveries[0]
    assert delivery.status == DeliveryRun.Status.SUCCEEDED
    assert delivery.rejected >= 2 and delivery.sent >= 3
    states = {s.object_id: s for s in DeliveryState.objects.filter(mapping=mapping, status="rejected")}
    assert set(states) - without_email == {no_email, huge}
    assert "No User ID" in states[no_email].error and "'email' is empty" in states[no_email].error
    assert "32,768" in states[huge].error or "at most" in states[huge].error
    assert "'notes'" in states[huge].error  # the largest trait is named
    # The rest is delivered: the rejected records' profiles keep what they had before.
    expected = oracle.after_sync(skip={no_email, huge})
    assert all(traits["first_name"] != "Big" for traits in expected.values())
    assert profiles(segment) == expected
    assert segment.counts()["discarded"] == 0
    assert_quiet_sync_sends_nothing(source, segment)

    # Fixed in HubSpot: delivered at the next sync, the state says delivered.
    hub.set_properties(huge, {"support_notes": "short again"}, portal=PORTAL)
    run, deliveries = sync_and_deliver(source)
    assert deliveries[0].sent == 1
    assert DeliveryState.objects.get(mapping=mapping, object_id=huge).status == "delivered"
    assert profiles(segment) == oracle.after_sync(skip={no_email})


def test_a_record_whose_identifier_was_removed_is_rejected_and_its_old_profile_stays(
    workspace, hub, segment, owner_client
):
    """The identifier emptied in HubSpot: the record is rejected (with its reason), its old profile keeps what it
    had, and the rejected-records page says that this is what happens."""
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=20)
    sync_and_deliver(source, SyncRun.Trigger.FIRST)
    state = DeliveryState.objects.filter(mapping=mapping, status="delivered").order_by("object_id").first()
    before = dict(profiles(segment))
    hub.set_properties(state.object_id, {"email": "", "firstname": "Renamed"}, portal=PORTAL)

    sync_and_deliver(source)

    state.refresh_from_db()
    assert state.status == "rejected" and "No User ID" in state.error
    assert profiles(segment) == before
    page = owner_client.get(f"/mappings/{mapping.pk}/rejected/")
    assert page.status_code == 200, page.status_code
    text = " ".join(page.content.decode().split())
    assert "is rejected now (for instance its identifier was emptied or removed in HubSpot)" in text
    assert "leaves its profile in Segment as it was last delivered" in text


def test_user_id_from_the_record_id(workspace, hub, segment):
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=30, user_id="id")
    oracle = Oracle(hub, PORTAL, user_id="id")
    sync_and_deliver(source, SyncRun.Trigger.FIRST)
    assert profiles(segment) == oracle.after_sync()
    hub.mutate(PORTAL, "contacts", create=2, update=8, archive=2, seed=8)
    sync_and_deliver(source)
    assert profiles(segment) == oracle.after_sync()
    assert_quiet_sync_sends_nothing(source, segment)


def test_manage_py_sync_runs_the_sync_and_then_the_deliveries(workspace, hub, segment, capsys, settings, monkeypatch):
    from mappings.tasks import deliver_mapping

    enqueued: list = []  # the foreground sync must not enqueue tasks (the engine would log and swallow a raise)
    monkeypatch.setattr(deliver_mapping, "delay_on_commit", lambda *args: enqueued.append(args))
    settings.HUBSYNC_NOTIFY_EVERY = 10  # mid-run notifications too (a long backfill) stay in the foreground
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=25)
    oracle = Oracle(hub, PORTAL)
    call_command("sync", str(source.pk))
    out = capsys.readouterr().out
    assert "25 read, 25 new" in out  # the engine's progress lines
    assert any(line.startswith("  contacts: ") and "new 25" in line for line in out.splitlines())
    expected = oracle.after_sync()
    sent = len(expected)
    line = f"mapping {mapping.pk} (contacts): succeeded; considered 25, sent {sent}, unchanged 0, rejected {25 - sent}"
    assert line in out
    assert profiles(segment) == expected

    call_command("sync", str(source.pk))
    out = capsys.readouterr().out
    assert "nothing changed, nothing to deliver" in out
    delivered = DeliveryRun.objects.filter(mapping=mapping)
    assert delivered.count() == 1 and delivered.get().sync_run.source_id == source.pk

    call_command("sync", str(source.pk), "--full")
    out = capsys.readouterr().out
    assert "(full)" in out and "nothing changed, nothing to deliver" in out
    assert deliver(mapping_id=mapping.pk).sent == 0
    assert enqueued == []


# --- the glue: the engine's delivery hook and the beat dispatcher ------------------------------------------------


def test_a_sync_enqueues_the_deliveries_of_its_changed_collections_and_of_those_behind(
    workspace, hub, segment, monkeypatch, inline_handoffs
):
    from mappings.tasks import deliver_mapping
    from sources.extraction import execute_run
    from sources.runs import create_run

    queued: list[tuple] = []
    monkeypatch.setattr(deliver_mapping, "delay_on_commit", lambda *args: queued.append(args))
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=20)

    def sync() -> SyncRun:
        run = execute_run(run_id=create_run(source=source, trigger=SyncRun.Trigger.MANUAL).pk)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        return run

    run = sync()
    assert queued == [(mapping.pk, run.pk)]  # the delivery follows the run, pointing to it

    # That delivery never ran (worker lost before it started, say): the next sync starts it again, although
    # HubSpot did not change.
    queued.clear()
    run = sync()
    assert run.counts["contacts"]["new"] == 0 and run.counts["contacts"]["updated"] == 0
    assert queued == [(mapping.pk, run.pk)]

    # Delivered: a sync with no change starts no delivery at all.
    assert deliver(mapping_id=mapping.pk).status == DeliveryRun.Status.SUCCEEDED
    queued.clear()
    sync()
    assert queued == []

    # A change in HubSpot: delivered again.
    some = DeliveryState.objects.filter(mapping=mapping).values_list("object_id", flat=True).first()
    hub.set_properties(some, {"firstname": "Changed"}, portal=PORTAL)
    run = sync()
    assert queued == [(mapping.pk, run.pk)]


def test_no_delivery_starts_that_would_consider_nothing(workspace, hub, segment, monkeypatch, inline_handoffs):
    """Issue 14.8: a sync whose changes are already delivered (by a delivery started during the run) starts no
    delivery for that mapping, while a second mapping of the same collection that is behind gets its own; and a
    delivery that finds a request left for it re-runs only when something is left to deliver."""
    from mappings.delivery import deliver_collections, deliveries_after_sync
    from mappings.delivery import engine as delivery_engine
    from mappings.models import Mapping
    from mappings.tasks import deliver_mapping
    from sources.extraction import execute_run
    from sources.runs import create_run

    queued: list[tuple] = []
    monkeypatch.setattr(deliver_mapping, "delay_on_commit", lambda *args: queued.append(args))
    source, mapping = setup_pipeline(workspace, hub, segment, contacts=20)
    run = execute_run(run_id=create_run(source=source, trigger=SyncRun.Trigger.MANUAL).pk)
    assert run.status == SyncRun.Status.SUCCEEDED and queued == [(mapping.pk, run.pk)]
    assert deliver(mapping_id=mapping.pk, sync_run_id=run.pk).considered == 20

    # The run's "mirror changed" (its collection changed) arrives after that delivery took the changes.
    queued.clear()
    assert deliveries_after_sync(source_id=source.pk, collections=["contacts"], sync_run_id=run.pk) == 0
    assert queued == []

    # A second mapping of the same collection, never delivered: only it is behind.
    other = Mapping.objects.create(
        destination=mapping.destination,
        data_model=mapping.data_model,
        profile_space=mapping.profile_space,
        action="identify",
        identifiers=mapping.identifiers,
        traits=mapping.traits[:1],
        enabled=True,
    )
    assert deliveries_after_sync(source_id=source.pk, collections=["contacts"], sync_run_id=run.pk) == 1
    assert queued == [(other.pk, run.pk)]

    # Requests that arrive while a delivery runs (they find it busy and leave the mapping's flag).
    during: list = []
    execute = delivery_engine._Delivery.execute

    def execute_then(self) -> None:
        execute(self)
        for action in during:
            action()

    monkeypatch.setattr(delivery_engine._Delivery, "execute", execute_then)

    def request() -> None:
        Mapping.objects.filter(pk=other.pk).update(delivery_requested=True)

    # One for changes this delivery itself sends: no second delivery, which would consider nothing.
    queued.clear()
    during[:] = [request]
    assert deliver(mapping_id=other.pk, sync_run_id=run.pk).considered == 20
    assert queued == []
    # One for a change it did not see (the mapping edited meanwhile): the next delivery starts.
    during[:] = [request, lambda: Mapping.objects.filter(pk=other.pk).update(traits=mapping.traits)]
    Mapping.objects.filter(pk=other.pk).update(traits=mapping.traits[:2])
    assert deliver(mapping_id=other.pk).considered == 20
    assert queued == [(other.pk,)]
    # `manage.py sync` delivers in this process by the same rule: the mapping with nothing to deliver is skipped.
    results = deliver_collections(source=source, collections=["contacts"])
    assert [(m.pk, d is None) for m, d in results] == [(mapping.pk, True), (other.pk, False)]
    assert results[1][1].considered == 20
    assert not DeliveryRun.objects.filter(considered=0).exists()


def test_the_sources_dispatcher_is_registered_for_the_beat_tick():
    from hubsync.dispatch import dispatchers
    from sources.dispatch import dispatch_due_syncs

    assert dispatch_due_syncs in dispatchers()

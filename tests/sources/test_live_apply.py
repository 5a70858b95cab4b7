"""Live updates end to end against the HubSpot sandbox over real HTTP: the sandbox emits signed webhooks for every
change (sandbox.hubspot.webhooks), the receiver stores them, `apply_pending` reads the records and commits them.
The mirror must end on HubSpot's current records whatever order, duplication or delivery failures the events had.
"""

from __future__ import annotations

import time

import pytest
import requests

from sandbox.hubspot import webhooks
from sandbox.hubspot.models import WebhookEvent
from sandbox.hubspot.mutate import restore_records
from sources import live
from sources.extraction import MERGED_IDS
from sources.hubspot import HubSpotError
from sources.models import LiveCounter, LiveEvent, MergedRecord, Record, RecordChange, Source, SyncRun
from sources.services import set_live
from tests.sources.extract_helpers import (
    PORTAL,
    archive,
    assert_mirror_equals_sandbox,
    make_source,
    merge,
    sync,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hooked(workspace, sandbox):
    """A synced source of portal PORTAL (30 contacts) whose sandbox sends webhooks to this server's receiver."""
    sandbox.seed(PORTAL, contacts=30, companies=0, deals=0, tickets=0)
    source = make_source(workspace, sandbox, enabled=True)
    sync(source, SyncRun.Trigger.FIRST)
    webhooks.configure(
        sandbox.portal(PORTAL), {"target_url": sandbox.server_url + "/hooks/hubspot/", "retry_base_ms": 0}
    )
    return source


def deliver() -> None:
    """Send what the sandbox has due now (the sender thread may send some too: claims keep a batch single)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        webhooks.flush()
        if not WebhookEvent.objects.filter(delivered_ms__isnull=True, gave_up=False).exists():
            return
        time.sleep(0.05)
    raise AssertionError("the sandbox did not deliver its webhooks")


def apply(source: Source) -> live.Applied:
    return live.apply_pending(source_id=source.pk, collection="contacts")


def row(source: Source, object_id: int) -> Record | None:
    return Record.objects.filter(source=source, collection="contacts", object_id=object_id).first()


def some_ids(source: Source, n: int) -> list[int]:
    return list(
        Record.objects.filter(source=source, collection="contacts", archived=False)
        .order_by("object_id")
        .values_list("object_id", flat=True)[:n]
    )


def test_property_change_reaches_the_mirror_with_hubspot_values(hooked, sandbox):
    (oid,) = some_ids(hooked, 1)
    before = row(hooked, oid)
    sandbox.set_properties(oid, {"jobtitle": "Head of Live"}, portal=PORTAL)
    deliver()
    assert LiveEvent.objects.filter(source=hooked, object_id=oid, state=LiveEvent.State.PENDING).exists()
    result = apply(hooked)
    assert result.events == 1 and result.written == 1
    after = row(hooked, oid)
    assert after.properties["jobtitle"] == "Head of Live"
    assert after.change_seq > before.change_seq
    # The same history as a scheduled sync's (no run id: no run wrote it).
    change = RecordChange.objects.get(source=hooked, object_id=oid)
    assert change.changes["jobtitle"][1] == "Head of Live" and change.run_id is None
    assert LiveEvent.objects.get(source=hooked, object_id=oid).state == LiveEvent.State.APPLIED
    counter = LiveCounter.objects.get(source=hooked)
    assert counter.applied == 1 and counter.last_applied_at is not None
    assert_mirror_equals_sandbox(hooked, sandbox)


def test_out_of_order_and_duplicated_events_end_on_hubspots_current_value(hooked, sandbox):
    webhooks.configure(sandbox.portal(PORTAL), {"shuffle": True, "duplicate_rate": 1.0, "max_batch": 1})
    (oid,) = some_ids(hooked, 1)
    for value in ("first", "second", "third"):
        sandbox.set_properties(oid, {"jobtitle": value}, portal=PORTAL)
    deliver()
    assert LiveCounter.objects.get(source=hooked).duplicates >= 3  # every event came twice
    apply(hooked)
    assert row(hooked, oid).properties["jobtitle"] == "third"
    assert_mirror_equals_sandbox(hooked, sandbox)


def test_an_older_read_never_overwrites_a_newer_row(hooked, sandbox):
    """A scheduled page read before a change commits after the live read of the change: the newer row stays."""
    (oid,) = some_ids(hooked, 1)
    headers = sandbox.headers(PORTAL)
    names = sorted({*hooked.collections.get(collection="contacts").properties, MERGED_IDS})

    def read() -> dict:
        body = {"inputs": [{"id": str(oid)}], "properties": names}
        url = f"{sandbox.base_url}/crm/v3/objects/contacts/batch/read"
        return requests.post(url, json=body, headers=headers, timeout=30).json()["results"][0]

    sandbox.set_properties(oid, {"jobtitle": "old"}, portal=PORTAL, at_ms=int(time.time() * 1000) - 60_000)
    stale = read()
    sandbox.set_properties(oid, {"jobtitle": "new"}, portal=PORTAL)
    deliver()
    apply(hooked)
    seq = row(hooked, oid).change_seq
    engine = live.LiveWrites(hooked)
    engine.counts["contacts"] = {"read": 0, "new": 0, "updated": 0, "unchanged": 0, "archived": 0, "deleted": 0}
    engine.commit_page(hooked.collections.get(collection="contacts"), [stale], None)
    kept = row(hooked, oid)
    assert kept.properties["jobtitle"] == "new" and kept.change_seq == seq
    assert not RecordChange.objects.filter(source=hooked, object_id=oid, changes__jobtitle__1="old").exists()


def test_creation_and_archive_and_restore(hooked, sandbox):
    created = [int(i) for i in sandbox.mutate(PORTAL, create=2).created]
    (gone,) = some_ids(hooked, 1)
    archive(sandbox, [gone])
    deliver()
    apply(hooked)
    assert all(row(hooked, i) is not None for i in created)
    assert row(hooked, gone).archived is True

    restore_records(portal=sandbox.portal(PORTAL), collection="contacts", ids=[gone])
    deliver()
    assert LiveEvent.objects.filter(source=hooked, object_id=gone, kind="restore").exists()
    apply(hooked)
    assert row(hooked, gone).archived is False
    assert_mirror_equals_sandbox(hooked, sandbox, exact=True)


def test_privacy_deletion_removes_the_record(hooked, sandbox):
    (oid,) = some_ids(hooked, 1)
    sandbox.purge([oid], portal=PORTAL)
    deliver()
    assert LiveEvent.objects.get(source=hooked, object_id=oid).kind == "privacy_deletion"
    result = apply(hooked)
    assert result.gone == 1
    assert row(hooked, oid) is None
    assert_mirror_equals_sandbox(hooked, sandbox, exact=True)


def test_merge_updates_both_ids(hooked, sandbox):
    primary, other = some_ids(hooked, 2)
    new_id = merge(sandbox, primary, other)
    deliver()
    event = LiveEvent.objects.get(source=hooked, kind="merge")
    assert event.object_id == new_id and set(event.related) == {primary, other}
    apply(hooked)
    assert row(hooked, primary) is None and row(hooked, other) is None
    assert row(hooked, new_id) is not None
    merged = dict(MergedRecord.objects.filter(source=hooked).values_list("object_id", "merged_into"))
    assert merged == {primary: new_id, other: new_id}
    assert_mirror_equals_sandbox(hooked, sandbox)


def test_receiver_down_for_a_while_gets_every_event_once(hooked, sandbox):
    """The sandbox retries what the receiver did not acknowledge; a delivery that timed out after the receiver stored
    it (fail_next) comes again: stored once, applied once."""
    webhooks.configure(
        sandbox.portal(PORTAL),
        {"target_url": "http://127.0.0.1:9/hooks/hubspot/", "retry_base_ms": 100, "max_attempts": 100},  # nobody
    )
    a, b = some_ids(hooked, 2)
    sandbox.set_properties(a, {"jobtitle": "while down"}, portal=PORTAL)
    webhooks.flush()
    webhooks.flush()
    pending = WebhookEvent.objects.get(body__objectId=a)
    assert pending.delivered_ms is None and pending.attempt >= 1 and "could not reach" in pending.last_error
    assert not LiveEvent.objects.exists()

    webhooks.configure(sandbox.portal(PORTAL), {"target_url": sandbox.server_url + "/hooks/hubspot/", "fail_next": 1})
    WebhookEvent.objects.update(next_ms=0)  # the next retry is due now
    sandbox.set_properties(b, {"jobtitle": "after"}, portal=PORTAL)
    deliver()
    assert WebhookEvent.objects.filter(attempt__gte=1).count() >= 1
    assert LiveEvent.objects.filter(source=hooked).count() == 2
    counter = LiveCounter.objects.get(source=hooked)
    assert counter.duplicates >= 1  # the "failed" delivery came again
    apply(hooked)
    assert counter.__class__.objects.get(pk=counter.pk).applied == 2
    assert row(hooked, a).properties["jobtitle"] == "while down"
    assert row(hooked, b).properties["jobtitle"] == "after"


def test_live_off_ignores_events(hooked, sandbox, owner):
    set_live(source=hooked, actor=owner, enabled=False)
    (oid,) = some_ids(hooked, 1)
    sandbox.set_properties(oid, {"jobtitle": "ignored"}, portal=PORTAL)
    deliver()
    assert not LiveEvent.objects.exists()
    assert row(hooked, oid).properties.get("jobtitle") != "ignored"


def test_sweep_reschedules_events_left_behind(hooked, sandbox, monkeypatch):
    (oid,) = some_ids(hooked, 1)
    sandbox.set_properties(oid, {"jobtitle": "late"}, portal=PORTAL)
    deliver()
    LiveEvent.objects.update(received_at=LiveEvent.objects.get().received_at.replace(year=2020))
    sent: list = []
    monkeypatch.setattr(live.apply, "schedule", lambda pairs, countdown=None: sent.extend(pairs) or len(pairs))
    assert live.sweep() == 1 and sent == [(hooked.pk, "contacts")]


def test_hubspot_failing_leaves_the_events_pending_for_the_next_try(hooked, sandbox):
    (oid,) = some_ids(hooked, 1)
    sandbox.set_properties(oid, {"jobtitle": "patient"}, portal=PORTAL)
    deliver()
    sandbox.set_knobs(fail_next=1000, fail_next_status="503")
    with pytest.raises(HubSpotError):
        apply(hooked)
    assert LiveEvent.objects.get(source=hooked).state == LiveEvent.State.PENDING
    sandbox.set_knobs(fail_next=0)
    assert apply(hooked).events == 1
    assert row(hooked, oid).properties["jobtitle"] == "patient"


def test_a_burst_asks_another_worker_to_help(hooked, sandbox, monkeypatch):
    first, second = some_ids(hooked, 2)
    sandbox.set_properties(first, {"jobtitle": "one"}, portal=PORTAL)
    sandbox.set_properties(second, {"jobtitle": "two"}, portal=PORTAL)
    deliver()
    helpers: list = []
    monkeypatch.setattr(live.apply, "CLAIM_LIMIT", 1)
    monkeypatch.setattr(live.apply, "schedule", lambda pairs, countdown=None: helpers.append(pairs) or 1)
    assert apply(hooked).events == 2  # claimed one at a time
    assert helpers == [[(hooked.pk, "contacts")]]  # asked for help once

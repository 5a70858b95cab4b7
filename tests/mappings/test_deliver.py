"""The delivery engine against the Segment sandbox over real HTTP (live_server), mirror rows made with the ORM."""

from __future__ import annotations

import base64
import threading

import pytest
from django.db import IntegrityError, connection, transaction

from mappings.delivery import deliver, engine, enqueue_deliveries
from mappings.delivery import sender as deliver_module
from mappings.models import DeliveryRun, DeliveryState, Mapping
from mappings.segment import SegmentClient
from mappings.services import resync_all
from models_app.models import DataModel
from sandbox.segment.models import SegmentMessage, SegmentWorkspace
from tests.mappings.conftest import accepted, contact_props, expected_traits, fill, profiles_by_user

pytestmark = pytest.mark.django_db(transaction=True)


class CountingClient(SegmentClient):
    """The real client, plus a hook before each batch (to break things at a chosen moment)."""

    def __init__(self, region: str = "sandbox", before=None, after=None, **kwargs) -> None:
        super().__init__(region, **kwargs)
        self.calls = 0
        self.before = before
        self.after = after

    def send_batch(self, write_key, messages):
        self.calls += 1
        if self.before:
            self.before(self.calls)
        result = super().send_batch(write_key, messages)
        if self.after:
            self.after(self.calls)
        return result


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing in the engine may catch it."""


def set_knobs(**knobs) -> None:
    # Knobs live on the sandbox workspace row, read by the live server on every request.
    SegmentWorkspace.objects.filter(is_default=True).update(**knobs)


# --- the main contract ------------------------------------------------------------------------------------------


def test_first_delivery_sends_everything_then_only_changes(sandbox_base, mirror, mapping):
    props = fill(mirror, 40)

    run = deliver(mapping_id=mapping.pk)

    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert (run.considered, run.sent, run.unchanged, run.rejected, run.failed) == (40, 40, 0, 0, 0)
    assert run.batches == 1 and run.requests == 1
    profiles = profiles_by_user(sandbox_base)
    assert profiles == {p["email"]: expected_traits(p, i) for i, p in props.items()}
    [message] = [m["payload"] for m in sandbox_base.messages() if m["userId"] == "user7@example.com"]
    assert message["integrations"] == {"All": False}
    assert message["context"]["library"]["name"] == "hubsync"
    assert message["timestamp"].endswith("Z")
    assert message["messageId"].startswith(f"hs-{mapping.destination.workspace_id}-{mapping.pk}-")
    assert len(message["messageId"]) <= 100
    mapping.refresh_from_db()
    assert mapping.watermark == mirror.next_seq() - 1
    assert mapping.last_run_id == run.pk
    assert DeliveryState.objects.filter(mapping=mapping, status="delivered").count() == 40

    # No change: nothing is read past the watermark, nothing is sent, no HTTP request at all.
    client = CountingClient()
    again = deliver(mapping_id=mapping.pk, client=client)
    assert (again.considered, again.sent, again.requests) == (0, 0, 0)
    assert client.calls == 0
    assert accepted(sandbox_base) == 40

    # One record changes: exactly one message.
    props[5]["firstname"] = "Renamed"
    mirror.put(5, props[5])
    third = deliver(mapping_id=mapping.pk)
    assert (third.considered, third.sent, third.unchanged) == (1, 1, 0)
    assert profiles_by_user(sandbox_base)["user5@example.com"]["first_name"] == "Renamed"

    # A change to an unmapped property moves updatedAt but not the payload: considered, not sent.
    props[6]["notes"] = "called them"
    mirror.put(6, props[6])
    fourth = deliver(mapping_id=mapping.pk)
    assert (fourth.considered, fourth.sent, fourth.unchanged, fourth.requests) == (1, 0, 1, 0)
    assert accepted(sandbox_base) == 41


def test_editing_the_mapping_resends_exactly_the_changed_payloads(sandbox_base, mirror, mapping):
    fill(mirror, 30)
    for i in (3, 7, 11):
        mirror.put(i, contact_props(i, company=f"Company {i}"))
    mapping.options = {"empty_values": "omit"}
    mapping.save()
    assert deliver(mapping_id=mapping.pk).sent == 30

    # Adding a trait only three records have a value for (empty values omitted): three payloads change.
    mapping.traits = [*mapping.traits, ["company", "company"]]
    mapping.save()
    run = deliver(mapping_id=mapping.pk)
    assert (run.considered, run.sent, run.unchanged) == (30, 3, 27)
    profiles = profiles_by_user(sandbox_base)
    assert {u for u, t in profiles.items() if "company" in t} == {f"user{i}@example.com" for i in (3, 7, 11)}

    # Renaming a trait changes every payload.
    mapping.traits = [[c, "given_name" if t == "first_name" else t] for c, t in mapping.traits]
    mapping.save()
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.unchanged) == (30, 0)
    assert profiles_by_user(sandbox_base)["user1@example.com"]["given_name"] == "First1"

    # Switching empty values to null: records with empty columns change, the others do not.
    mapping.options = {"empty_values": "null"}
    mapping.save()
    run = deliver(mapping_id=mapping.pk)
    # Every record has an empty "company" or "interests" except those with both (3: interests golf;tennis).
    assert run.sent == 29 and run.unchanged == 1
    assert profiles_by_user(sandbox_base)["user1@example.com"]["company"] is None
    assert deliver(mapping_id=mapping.pk).considered == 0


def test_a_value_changed_back_within_a_day_reaches_the_profile(sandbox_base, mirror, mapping):
    """A → B → A: the third message has the first one's payload, but not its messageId (that names the step
    from what Segment had), so Segment's 24-hour deduplication does not drop it."""
    mirror.put(1, contact_props(1, firstname="Ann"))
    first = deliver(mapping_id=mapping.pk)
    mirror.put(1, contact_props(1, firstname="Anne"))
    deliver(mapping_id=mapping.pk)
    mirror.put(1, contact_props(1, firstname="Ann"))
    third = deliver(mapping_id=mapping.pk)

    assert (first.sent, third.sent) == (1, 1)
    assert profiles_by_user(sandbox_base)["user1@example.com"]["first_name"] == "Ann"
    assert accepted(sandbox_base) == 3 and sandbox_base.counts()["discarded"] == 0
    assert len({m["messageId"] for m in sandbox_base.messages()}) == 3


def test_empty_values_clear_traits_when_null(sandbox_base, mirror, mapping):
    mirror.put(1, contact_props(1, lastname="Smith"))
    deliver(mapping_id=mapping.pk)
    mirror.put(1, contact_props(1, lastname=""))
    deliver(mapping_id=mapping.pk)
    assert profiles_by_user(sandbox_base)["user1@example.com"]["last_name"] is None


def test_invalid_records_are_rejected_with_reasons_and_the_rest_delivered(sandbox_base, mirror, mapping):
    props = fill(mirror, 10)
    mirror.put(11, contact_props(11, email=""))  # no identifier
    mirror.put(12, contact_props(12, firstname="x" * 40_000))  # over 32 KB
    mirror.put(13, contact_props(13), archived=True)  # archived in HubSpot: not sent

    run = deliver(mapping_id=mapping.pk)

    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert (run.considered, run.sent, run.rejected, run.archived) == (13, 10, 2, 1)
    no_id = DeliveryState.objects.get(mapping=mapping, object_id=11)
    assert no_id.status == "rejected" and "No User ID or Anonymous ID" in no_id.error and "'email'" in no_id.error
    assert no_id.last_payload["traits"]["first_name"] == "First11"
    too_big = DeliveryState.objects.get(mapping=mapping, object_id=12)
    assert too_big.status == "rejected" and "32,768 bytes" in too_big.error and "'first_name'" in too_big.error
    assert not DeliveryState.objects.filter(mapping=mapping, object_id=13).exists()
    assert set(profiles_by_user(sandbox_base)) == {p["email"] for p in props.values()}
    assert sandbox_base.counts()["discarded"] == 0 and sandbox_base.counts()["rejected_requests"] == 0

    # Fixing the record delivers it; the state says so.
    mirror.put(11, contact_props(11))
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.rejected) == (1, 0)
    fixed = DeliveryState.objects.get(mapping=mapping, object_id=11)
    assert fixed.status == "delivered" and fixed.error == ""


def test_group_mapping(sandbox_base, source, mirror, destination, space):
    companies = DataModel.objects.create(source=source, collection="companies", name="Companies", columns=["name"])
    mapping = Mapping.objects.create(
        destination=destination,
        data_model=companies,
        profile_space=space,
        action="group",
        identifiers={"user_id": "owner_email", "group_id": "id"},
        traits=[["name", "name"], ["numberofemployees", "employees"], ["domain", "domain"]],
        enabled=True,
    )
    mirror.collection = "companies"
    mirror.put(101, {"name": "Acme", "domain": "acme.test", "owner_email": "a@acme.test", "numberofemployees": "12"})
    mirror.put(102, {"name": "Globex", "domain": "globex.test", "owner_email": "", "numberofemployees": "3"})

    run = deliver(mapping_id=mapping.pk)

    assert (run.sent, run.rejected) == (1, 1)
    [account] = sandbox_base.accounts()
    assert account["groupId"] == "101"
    assert account["traits"] == {"name": "Acme", "employees": 12, "domain": "acme.test"}
    reason = DeliveryState.objects.get(mapping=mapping, object_id=102).error
    assert "No User ID or Anonymous ID" in reason


def test_disabled_mapping_delivers_nothing(sandbox_base, mirror, mapping):
    fill(mirror, 3)
    Mapping.objects.filter(pk=mapping.pk).update(enabled=False)
    assert deliver(mapping_id=mapping.pk) is None
    assert accepted(sandbox_base) == 0
    assert deliver(mapping_id=987654) is None  # deleted before its task ran


# --- failures ---------------------------------------------------------------------------------------------------


def test_5xx_storm_is_retried_until_segment_answers(sandbox_base, mirror, mapping):
    fill(mirror, 12)
    set_knobs(error_rate=1.0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            set_knobs(error_rate=0.0)  # Segment recovers after the third retry

    run = deliver(mapping_id=mapping.pk, client=SegmentClient("sandbox", sleep=sleep))

    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert (run.sent, run.requests, run.retries) == (12, 4, 3)
    assert accepted(sandbox_base) == 12


def test_429_storm_fails_the_run_and_the_next_run_resends_with_the_same_message_ids(
    sandbox_base, settings, monkeypatch, mirror, mapping
):
    settings.DELIVERY_MAX_IN_FLIGHT = 1  # batches strictly one after the other, so "the third" is well defined
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 5)
    fill(mirror, 20)
    set_knobs(retry_after=1)

    def before(call: int) -> None:
        if call == 3:
            set_knobs(rate_limit_rate=1.0)

    # Two batches get through, then Segment rate-limits every attempt of the third.
    client = CountingClient(before=before, max_attempts=3)
    run = deliver(mapping_id=mapping.pk, client=client)

    assert run.status == DeliveryRun.Status.PARTIAL
    assert (run.sent, run.failed, run.batches, run.requests, run.retries) == (10, 5, 2, 5, 2)
    assert "429" in run.error
    pending = DeliveryState.objects.filter(mapping=mapping, status="pending")
    assert pending.count() == 5 and "429" in pending.first().error
    failed_ids = dict(pending.values_list("object_id", "message_id"))
    mapping.refresh_from_db()
    first_failed_seq = min(mirror.source.records.filter(object_id__in=failed_ids).values_list("change_seq", flat=True))
    assert mapping.watermark == first_failed_seq - 1

    set_knobs(rate_limit_rate=0.0)
    rerun = deliver(mapping_id=mapping.pk)
    assert rerun.status == DeliveryRun.Status.SUCCEEDED
    assert (rerun.considered, rerun.sent) == (10, 10)
    resent = {m["messageId"] for m in sandbox_base.messages()}
    assert set(failed_ids.values()) <= resent
    assert accepted(sandbox_base) == 20
    assert DeliveryState.objects.filter(mapping=mapping, status="delivered").count() == 20


def test_a_permanent_4xx_fails_the_run_without_retrying(settings, stub_segment, mirror, mapping):
    """Every other 4xx (a bad credential, a forbidden space) fails now: retrying cannot fix it."""
    settings.BASE_URL = stub_segment.url
    stub_segment.statuses = [401]
    fill(mirror, 3)
    mapping.profile_space.write_key = "wk_secret_value_123"
    mapping.profile_space.save()

    run = deliver(mapping_id=mapping.pk)

    assert run.status == DeliveryRun.Status.FAILED
    assert (run.sent, run.failed, run.requests) == (0, 3, 1)
    assert "HTTP 401" in run.error and "invalid write key" in run.error
    assert "wk_secret_value_123" not in run.error
    assert stub_segment.requests[0]["auth"] == "Basic " + base64.b64encode(b"wk_secret_value_123:").decode()
    states = DeliveryState.objects.filter(mapping=mapping)
    assert {s.status for s in states} == {"pending"} and all(s.delivered_hash == "" for s in states)
    mapping.refresh_from_db()
    assert mapping.watermark == 0


def test_a_400_batch_is_split_to_reject_only_the_bad_record(settings, stub_segment, mirror, mapping):
    """Segment says 400 for a malformed batch: bisect until the one message it refuses is found."""
    settings.BASE_URL = stub_segment.url
    stub_segment.refuse_user = "user3@example.com"
    fill(mirror, 6)

    run = deliver(mapping_id=mapping.pk)

    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert (run.sent, run.rejected) == (5, 1)
    state = DeliveryState.objects.get(mapping=mapping, object_id=3)
    assert state.status == "rejected" and "Segment refused this message" in state.error and "bad_message" in state.error
    assert sorted(len(r["batch"]) for r in stub_segment.requests) == [1, 1, 1, 2, 3, 3, 6]


def test_a_failed_batch_among_several_in_flight_loses_nothing_and_resends_nothing_needlessly(
    settings, stub_segment, monkeypatch, mirror, mapping
):
    settings.BASE_URL = stub_segment.url
    settings.DELIVERY_MAX_IN_FLIGHT = 3
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    stub_segment.fail_nth = 2  # the second request to arrive (whichever batch it is) gets a 401
    fill(mirror, 40)

    first = deliver(mapping_id=mapping.pk)

    assert first.status == DeliveryRun.Status.PARTIAL
    assert first.failed == 4 and 0 < first.sent <= 36
    failed_ids = set(
        DeliveryState.objects.filter(mapping=mapping, status="pending").values_list("object_id", flat=True)
    )
    assert len(failed_ids) == 4
    mapping.refresh_from_db()
    assert (
        mapping.watermark
        == min(mirror.source.records.filter(object_id__in=failed_ids).values_list("change_seq", flat=True)) - 1
    )

    second = deliver(mapping_id=mapping.pk)

    assert second.status == DeliveryRun.Status.SUCCEEDED
    assert first.sent + second.sent == 40  # batches accepted around the failure are not sent again
    accepted_users = [m["userId"] for r in stub_segment.requests if r.get("status") == 200 for m in r["batch"]]
    assert sorted(accepted_users) == sorted(f"user{i}@example.com" for i in range(1, 41))
    assert DeliveryState.objects.filter(mapping=mapping, status="delivered").count() == 40


def test_killed_delivery_resends_the_rest_next_time_and_nothing_is_lost(
    sandbox_base, settings, monkeypatch, mirror, mapping
):
    settings.DELIVERY_MAX_IN_FLIGHT = 1
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    props = fill(mirror, 20)

    def after(call: int) -> None:
        if call == 3:
            raise WorkerKilled  # Segment accepted batch 3, but the worker dies before recording it

    with pytest.raises(WorkerKilled):
        deliver(mapping_id=mapping.pk, client=CountingClient(after=after))

    lost = DeliveryRun.objects.get()
    assert lost.status == "running" and lost.sent == 8
    assert accepted(sandbox_base) == 12

    # While its heartbeat is fresh the dead run still holds the mapping...
    assert deliver(mapping_id=mapping.pk) is None
    # ...and once it is stale the next delivery fails it and takes over.
    settings.DELIVERY_STALE_SECONDS = 0
    run = deliver(mapping_id=mapping.pk)
    lost.refresh_from_db()
    assert lost.status == "failed" and "Lost" in lost.error
    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert run.sent == 12  # batch 3 again (same messageIds) and the two after it
    counts = sandbox_base.counts()
    assert counts["received"] == 20
    assert counts["discards_by_reason"] == {"duplicate_message_id": 4}
    assert profiles_by_user(sandbox_base) == {p["email"]: expected_traits(p, i) for i, p in props.items()}
    assert deliver(mapping_id=mapping.pk).sent == 0


def test_resync_all_resends_everything_with_new_message_ids(sandbox_base, mirror, mapping):
    fill(mirror, 5)
    deliver(mapping_id=mapping.pk)
    resync_all(mapping)
    run = deliver(mapping_id=mapping.pk)
    assert run.sent == 5
    counts = sandbox_base.counts()
    assert counts["received"] == 10 and counts["discarded"] == 0  # not dropped as duplicates


# --- batching ---------------------------------------------------------------------------------------------------


def batches_received() -> list[int]:
    """Messages per request the sandbox accepted (one bulk insert per request, one received_at each)."""
    rows = SegmentMessage.objects.values_list("received_at", flat=True)
    per_request: dict = {}
    for at in rows:
        per_request[at] = per_request.get(at, 0) + 1
    return sorted(per_request.values(), reverse=True)


def test_batches_hold_at_most_2500_messages(sandbox_base, mirror, mapping):
    # Tiny messages (id as userId, no traits, no timestamp), so that the count limit bites before the size one.
    mapping.identifiers = {"user_id": "id"}
    mapping.traits = []
    mapping.save()
    mirror.bulk([(i, {}) for i in range(1, 5202)], updated=None)
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.batches, run.requests) == (5201, 3, 3)
    assert batches_received() == [2500, 2500, 201]


def test_batches_stay_under_500_kb(sandbox_base, mirror, mapping):
    mirror.bulk([(i, {"email": f"u{i}@example.com", "firstname": "x" * 20_000}) for i in range(1, 101)])
    run = deliver(mapping_id=mapping.pk)
    # ~20 KB each: at most 23 per 475,000-byte batch, so 5 batches, none refused by the sandbox's 500 KB limit.
    assert (run.sent, run.batches) == (100, 5)
    assert max(batches_received()) <= 23
    assert sandbox_base.counts()["rejected_requests"] == 0


# --- one run at a time ------------------------------------------------------------------------------------------


def test_one_delivery_per_mapping_at_a_time(sandbox_base, monkeypatch, mirror, mapping):
    fill(mirror, 5)
    inside = threading.Event()
    release = threading.Event()
    enqueued: list[tuple] = []
    monkeypatch.setattr("mappings.tasks.deliver_mapping.delay_on_commit", lambda *args: enqueued.append(args))

    def before(call: int) -> None:
        inside.set()
        assert release.wait(30)

    results: list = []

    def first() -> None:
        try:
            results.append(deliver(mapping_id=mapping.pk, client=CountingClient(before=before)))
        finally:
            connection.close()  # this thread's own connection

    worker = threading.Thread(target=first)
    worker.start()
    assert inside.wait(30)
    # A second delivery while the first is sending: refused by the database, remembered for later.
    assert deliver(mapping_id=mapping.pk) is None
    with pytest.raises(IntegrityError), transaction.atomic():
        DeliveryRun.objects.create(mapping=mapping, status="queued")
    release.set()
    worker.join(30)

    assert results[0].status == DeliveryRun.Status.SUCCEEDED
    assert DeliveryRun.objects.filter(mapping=mapping).count() == 1
    # The first run saw the request, but it delivered those changes itself: no second delivery that would
    # consider nothing (tests/mappings/test_reconcile.py: one that has something left is started).
    assert enqueued == []
    mapping.refresh_from_db()
    assert mapping.delivery_requested is False


def test_enqueue_deliveries_picks_enabled_mappings_of_those_collections(monkeypatch, source, mapping, space):
    enqueued: list[tuple] = []
    monkeypatch.setattr("mappings.tasks.deliver_mapping.delay_on_commit", lambda *args: enqueued.append(args))
    Mapping.objects.create(
        destination=mapping.destination,
        data_model=mapping.data_model,
        profile_space=space,
        identifiers={"user_id": "email"},
        enabled=False,
    )
    assert enqueue_deliveries(source=source, collections=["contacts"]) == 1
    assert enqueue_deliveries(source=source, collections=["companies"]) == 0
    assert enqueued == [(mapping.pk, None)]


def test_task_is_routed_to_the_deliver_queue():
    from mappings.tasks import deliver_mapping

    assert deliver_mapping.name == "mappings.deliver_mapping"
    assert deliver_mapping.queue == "deliver"


# --- previewing one record ----------------------------------------------------------------------------------------


def test_preview_message_is_what_the_engine_sends(sandbox_base, mirror, mapping):
    from datetime import UTC, datetime

    from mappings.delivery import preview_message
    from mappings.services import send_test_message

    props = contact_props(9)
    updated = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    message, error = preview_message(mapping, object_id=9, properties=props, updated_at=updated)
    assert error == ""
    assert message["userId"] == "user9@example.com"
    assert message["traits"] == expected_traits(props, 9)
    assert message["timestamp"] == "2026-11-02T08:30:00.000Z"

    _, no_id = preview_message(mapping, object_id=10, properties=contact_props(10, email=""))
    assert "No User ID or Anonymous ID" in no_id

    assert send_test_message(mapping, message).status == 200
    # The engine builds the very same message (same messageId): Segment keeps one copy.
    mirror.put(9, props, updated=updated)
    assert deliver(mapping_id=mapping.pk).sent == 1
    counts = sandbox_base.counts()
    assert counts["received"] == 1 and counts["discards_by_reason"] == {"duplicate_message_id": 1}


def test_a_delivery_after_a_sync_run_points_to_it(sandbox_base, source, mirror, mapping):
    from sources.models import SyncRun

    sync = SyncRun.objects.create(source=source, trigger="manual", status="succeeded")
    fill(mirror, 2)
    run = deliver(mapping_id=mapping.pk, sync_run_id=sync.pk)
    assert run.sync_run_id == sync.pk and run.sent == 2
    mirror.put(1, contact_props(1, firstname="Again"))
    assert deliver(mapping_id=mapping.pk, sync_run_id=987654).sent == 1  # a vanished sync run is no obstacle


# --- reconciliation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [7, 2026])
def test_random_rounds_with_a_flaky_segment_reconcile_exactly(
    sandbox_base, settings, monkeypatch, mirror, mapping, seed
):
    """Random create / update / archive rounds in the mirror, a delivery after each with Segment failing a third
    of all requests: the sandbox's merged profiles always equal what the mapping defines for the current data,
    and a delivery that follows no change sends nothing."""
    import random

    rng = random.Random(seed)
    settings.SEGMENT_MAX_ATTEMPTS = 15
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 7)
    set_knobs(error_rate=0.33)
    current: dict[int, dict] = {}
    archived: set[int] = set()
    expected: dict[str, dict] = {}  # userId → traits of the last valid version sent for it
    next_id = 1
    for _round in range(5):
        for _op in range(rng.randint(10, 25)):
            op = rng.random()
            if op < 0.4 or not current:
                object_id, next_id = next_id, next_id + 1
                current[object_id] = contact_props(object_id)
            elif op < 0.85:
                object_id = rng.choice(sorted(current))
                props = dict(current[object_id])
                field = rng.choice(["firstname", "num_employees", "interests", "email", "lastname"])
                props[field] = {
                    "firstname": f"F{rng.randint(0, 999)}",
                    "num_employees": str(rng.randint(0, 5000)),
                    "interests": rng.choice(["", "golf", "golf;chess"]),
                    "email": rng.choice([f"user{object_id}-{rng.randint(0, 99)}@example.com", ""]),
                    "lastname": rng.choice(["", "Smith"]),
                }[field]
                current[object_id] = props
            else:
                object_id = rng.choice(sorted(current))
                archived.add(object_id)
            mirror.put(object_id, current[object_id], archived=object_id in archived)

        run = deliver(mapping_id=mapping.pk)
        assert run.status == DeliveryRun.Status.SUCCEEDED, run.error
        for object_id, props in current.items():
            if object_id not in archived and props["email"]:
                expected[props["email"]] = expected_traits(props, object_id)
        assert profiles_by_user(sandbox_base) == expected

        before = accepted(sandbox_base)
        quiet = deliver(mapping_id=mapping.pk)
        assert (quiet.sent, quiet.requests) == (0, 0)
        assert accepted(sandbox_base) == before
    assert sandbox_base.counts()["discarded"] == 0


def test_the_task_runs_the_engine(sandbox_base, mirror, mapping):
    from mappings.tasks import deliver_mapping

    fill(mirror, 3)
    run_id = deliver_mapping.apply(args=[mapping.pk]).get()
    assert DeliveryRun.objects.get(pk=run_id).sent == 3
    assert accepted(sandbox_base) == 3


def test_the_engine_reads_exactly_the_mapped_properties_with_their_json_types(source, mirror):
    """The chunk query asks PostgreSQL for the mapped keys only (rows carry ~65 properties; SQLite reads the
    document): every JSON type must come back as the full document would give it, a missing key as None, and more
    keys than one jsonb_build_array call takes, or keys that cannot be record columns, must work too."""
    from sources.models import Record

    values = {
        "text": "Ada",
        "blank": "",
        "number": 42,
        "float": 1.5,
        "yes": True,
        "no": False,
        "null": None,
        "list": ["golf", "tennis"],
        "object": {"a": [1, {"b": None}]},
        "quote": 'say "hi"; it\'s -> fine',
        "unicode": "Zoë ✓",
        # Names PostgreSQL cannot take as a record column as such: too long (over 63 bytes), quoted, a %.
        "a_custom_property_with_a_name_longer_than_postgresql_identifiers_allow": "long",
        "é" * 40: "long in bytes",
        'say "x"': "quoted",
        "100% sure": "percent",
        "Upper": "case kept",
        "upper": "other case",
        **{f"extra_{n:02d}": str(n) for n in range(90)},
    }
    mirror.put(1, values)
    keys = [*values, "missing"]
    long_only = ["a_custom_property_with_a_name_longer_than_postgresql_identifiers_allow", "missing"]
    for wanted in (keys, ["text", "missing"], keys[:100], keys[:101], long_only, ["100% sure", 'say "x"'], []):
        raw = (
            Record.objects.filter(source=source, object_id=1)
            .annotate(picked=engine._mapped_properties(wanted))
            .values_list("picked", flat=True)
            .get()
        )
        picked = engine._properties(raw, engine._picked_keys(wanted))  # as the engine decodes it
        # The builder reads `props.get(column)`: a key left out reads as None, like a missing one.
        assert {k: picked.get(k) for k in wanted} == {k: values.get(k) for k in wanted}
        if connection.vendor == "postgresql":
            assert len(engine.loads(raw)) == len(wanted)  # only the mapped keys' values leave the database

    # A document that is not an object (the mirror never writes one) reads as no properties, not as an error.
    Record.objects.filter(source=source, object_id=1).update(properties=["not", "an", "object"])
    raw = (
        Record.objects.filter(source=source, object_id=1)
        .annotate(picked=engine._mapped_properties(["text", "Upper"]))
        .values_list("picked", flat=True)
        .get()
    )
    picked = engine._properties(raw, engine._picked_keys(["text", "Upper"]))
    assert picked == {} if connection.vendor == "sqlite" else {"text": None, "Upper": None}


def test_the_fast_encoder_writes_exactly_what_the_json_module_writes():
    """Payload hashes (and so "only changes are sent") must not depend on the encoder: orjson's bytes must equal
    the json module's for every value a message can hold, including the cases orjson would write differently."""
    import json
    import random

    from mappings.delivery.messages import _dumpb

    reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode
    rng = random.Random(2026)
    odd_strings = ["é", "\u2028\u2029", "\x7f\x1f\b\f\n\r\t", '"\\/', "😀", "\x00", "\ud800", " ", ""]
    for _ in range(20000):
        traits = {
            "float": rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-9, 22), 1e-05, 0.0]),
            "int": rng.choice([rng.randint(-(2**63), 2**63 - 1), 2**80, 0]),
            "text": "".join(rng.choice(odd_strings) for _ in range(rng.randint(0, 4))),
            "list": [rng.choice(odd_strings) for _ in range(rng.randint(0, 3))] or None,
            "bool": rng.choice([True, False, None]),
            rng.choice(odd_strings[:5]) + "key": 1,
        }
        content = {"type": "identify", "integrations": {"All": True}, "traits": traits, "userId": "u@example.com"}
        assert _dumpb(content) == reference(content).encode("utf-8", "surrogatepass"), content


def test_a_record_back_to_its_delivered_payload_after_a_kill_still_reaches_the_profile(
    sandbox_base, settings, monkeypatch, mirror, mapping
):
    """Segment accepts B for a record, the worker dies before recording it (the delivered hash still says A),
    then the record goes back to A in HubSpot. A looks unchanged, yet the profile holds B: the next run must
    resend it, because the killed run wrote down, before sending, which records it could not confirm."""
    settings.DELIVERY_MAX_IN_FLIGHT = 1
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    props = fill(mirror, 8)
    deliver(mapping_id=mapping.pk)  # every profile at A
    for i in (1, 2, 3, 4):
        mirror.put(i, {**props[i], "firstname": "B"})

    def after(call: int) -> None:
        raise WorkerKilled  # Segment accepted the batch of B's; nothing recorded

    with pytest.raises(WorkerKilled):
        deliver(mapping_id=mapping.pk, client=CountingClient(after=after))
    lost = DeliveryRun.objects.filter(status="running").get()
    assert sorted(lost.unconfirmed) == [1, 2, 3, 4]
    assert {u: t["first_name"] for u, t in profiles_by_user(sandbox_base).items()}[props[1]["email"]] == "B"
    for i in (1, 2):
        mirror.put(i, props[i])  # back to A in HubSpot before the next delivery

    settings.DELIVERY_STALE_SECONDS = 0
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.SUCCEEDED
    # 1 and 2 are A again (resent although A is the delivered hash); 3 and 4 are B (resent under the same ids,
    # so Segment drops the copies); the others are untouched.
    assert profiles_by_user(sandbox_base) == {
        p["email"]: {**expected_traits(p, i), **({"first_name": "B"} if i in (3, 4) else {})} for i, p in props.items()
    }
    assert run.sent == 4 and run.unconfirmed is None
    assert deliver(mapping_id=mapping.pk).sent == 0  # and then only changes again


def test_a_chunks_new_records_are_written_down_before_its_first_send_and_delivered_ones_are_not(
    sandbox_base, settings, monkeypatch, mirror, mapping
):
    """Before the first batch of a chunk goes out, the run writes down as unconfirmed every record of the chunk
    that was never delivered (each will be sent anyway), so the chunk's next batches go without a write of their
    own. A kill then resends them under the same messageIds (Segment drops the copies). Records delivered before
    are named only when their batch goes: naming them early would resend unchanged ones after a kill."""
    settings.DELIVERY_MAX_IN_FLIGHT = 1
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    props = fill(mirror, 12)

    def after(call: int) -> None:
        if call == 2:
            raise WorkerKilled  # Segment accepted batches 1 and 2; the second one's outcome is not recorded

    with pytest.raises(WorkerKilled):
        deliver(mapping_id=mapping.pk, client=CountingClient(after=after))
    lost = DeliveryRun.objects.get()
    # The whole chunk, written before batch 1 went; then batch 1 left it with its recorded outcome.
    assert sorted(lost.unconfirmed) == list(range(5, 13))
    assert DeliveryState.objects.filter(mapping=mapping, status="delivered").count() == 4
    settings.DELIVERY_STALE_SECONDS = 0
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.SUCCEEDED and run.sent == 8  # batch 1 is not resent
    assert sandbox_base.counts()["discards_by_reason"] == {"duplicate_message_id": 4}
    assert profiles_by_user(sandbox_base) == {p["email"]: expected_traits(p, i) for i, p in props.items()}

    for i in range(1, 9):
        mirror.put(i, {**props[i], "firstname": "B"})
    with pytest.raises(WorkerKilled):
        deliver(mapping_id=mapping.pk, client=CountingClient(after=after))
    lost = DeliveryRun.objects.filter(status="running").get()
    assert sorted(lost.unconfirmed) == [5, 6, 7, 8]  # batch 2 only: batch 1's outcome is recorded
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.SUCCEEDED and run.sent == 4


def test_records_to_resend_survive_a_second_kill(sandbox_base, settings, monkeypatch, mirror, mapping):
    """The run that inherits unconfirmed records is killed too, before Segment gets anything: the one after it
    still resends them."""
    settings.DELIVERY_MAX_IN_FLIGHT = 1
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    props = fill(mirror, 4)
    deliver(mapping_id=mapping.pk)
    for i in props:
        mirror.put(i, {**props[i], "firstname": "B"})

    def killed_after(call: int) -> None:
        raise WorkerKilled

    with pytest.raises(WorkerKilled):
        deliver(mapping_id=mapping.pk, client=CountingClient(after=killed_after))  # Segment took the B's
    for i in props:
        mirror.put(i, props[i])  # all back to A
    settings.DELIVERY_STALE_SECONDS = 0
    with pytest.raises(WorkerKilled):
        deliver(mapping_id=mapping.pk, client=CountingClient(before=killed_after))  # dies before sending
    second = DeliveryRun.objects.filter(status="running").get()
    assert sorted(second.unconfirmed) == sorted(props)
    run = deliver(mapping_id=mapping.pk)
    assert run.sent == 4
    assert profiles_by_user(sandbox_base) == {p["email"]: expected_traits(p, i) for i, p in props.items()}


def test_a_failed_checkpoint_stops_the_writes_after_it_and_loses_nothing(
    sandbox_base, settings, monkeypatch, mirror, mapping
):
    """Checkpoints are written by the writer thread, in order. When one fails (the database refuses it), no later
    one may run (it would move the watermark past the states the failed one held), the run fails with the error,
    and the records Segment accepted whose states were not written are the run's `unconfirmed`: the next run
    resends them even if they went back to the payload delivered before."""
    from mappings.delivery import checkpoint

    settings.DELIVERY_MAX_IN_FLIGHT = 1
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    props = fill(mirror, 4)
    deliver(mapping_id=mapping.pk)  # every profile at A
    watermark = Mapping.objects.get(pk=mapping.pk).watermark
    for i in range(1, 5):
        mirror.put(i, {**props[i], "firstname": "B"})
    props.update(fill(mirror, range(5, 13)))
    store, calls, writer_threads = checkpoint._store, {"n": 0}, set()

    def failing_store(mapping_id, states, *args):
        # The first checkpoint recording delivered states fails; every write is counted from there on.
        if calls["n"] or any(state.status == DeliveryState.Status.DELIVERED for state in states):
            calls["n"] += 1
            writer_threads.add(threading.current_thread().name)
        if calls["n"] == 1:
            raise RuntimeError("the database refused the checkpoint")
        return store(mapping_id, states, *args)

    monkeypatch.setattr(checkpoint, "_store", failing_store)
    with pytest.raises(RuntimeError, match="refused"):
        deliver(mapping_id=mapping.pk)
    assert calls["n"] == 1  # nothing was written after the failed checkpoint
    assert all(name.startswith("delivery-writer") for name in writer_threads)
    failed = DeliveryRun.objects.order_by("-pk").first()
    assert failed.status == DeliveryRun.Status.FAILED and "refused" in failed.error
    assert set(failed.unconfirmed) >= {1, 2, 3, 4}  # Segment holds B, the states still say A
    assert not DeliveryState.objects.filter(mapping=mapping, object_id__gte=5).exists()
    assert Mapping.objects.get(pk=mapping.pk).watermark == watermark  # not past a record not recorded
    monkeypatch.setattr(checkpoint, "_store", store)

    for i in range(1, 5):
        mirror.put(i, props[i])  # back to A before the next run
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert profiles_by_user(sandbox_base) == {p["email"]: expected_traits(p, i) for i, p in props.items()}
    assert deliver(mapping_id=mapping.pk).sent == 0


# --- outcomes Segment never confirmed, and the order in which a record's messages land ---------------------------


@pytest.mark.parametrize("lose", ["drop", "503", "timeout"])
def test_a_batch_whose_answers_are_all_lost_is_resent_when_the_record_goes_back(
    settings, mirror, mapping, ordered_segment, lose
):
    """Segment applies B, but every answer to the batch is lost (connection reset, a 5xx sent after the body went
    out, a timeout): the run cannot know whether B reached the profile. When the record then goes back to A
    (the delivered hash), the next run must resend A, or the profile keeps B for good."""
    settings.SEGMENT_MAX_ATTEMPTS = 3
    settings.SEGMENT_TIMEOUT = 0.2
    props = fill(mirror, 4)
    assert deliver(mapping_id=mapping.pk).status == DeliveryRun.Status.SUCCEEDED  # every profile at A
    mirror.put(1, {**props[1], "firstname": "B"})

    ordered_segment.lose = lose
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.FAILED and run.failed == 1
    assert run.unconfirmed == [1]
    assert ordered_segment.profiles()[props[1]["email"]]["first_name"] == "B"  # applied all the same
    state = DeliveryState.objects.get(mapping=mapping, object_id=1)
    assert state.status == DeliveryState.Status.PENDING and "may have applied" in state.error

    ordered_segment.lose = None
    mirror.put(1, props[1])  # back to A in HubSpot
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert (run.considered, run.sent, run.unconfirmed) == (1, 1, None)
    assert ordered_segment.profiles() == {p["email"]: expected_traits(p, i) for i, p in props.items()}
    assert deliver(mapping_id=mapping.pk).sent == 0  # and then only changes again


def test_a_record_changing_back_and_forth_within_a_day_reaches_segment_every_time(sandbox_base, mirror, mapping):
    """A → B → A → B within Segment's 24-hour deduplication window: each message needs an id Segment has not
    seen for this record, or the second B is dropped as a duplicate and the profile stays on A."""
    props = fill(mirror, 1)
    deliver(mapping_id=mapping.pk)
    for name in ("B", "First1", "B", "First1", "B"):
        mirror.put(1, {**props[1], "firstname": name})
        assert deliver(mapping_id=mapping.pk).sent == 1
        assert profiles_by_user(sandbox_base)["user1@example.com"]["first_name"] == name
    counts = sandbox_base.counts()
    assert (counts["received"], counts["discarded"]) == (6, 0)
    state = DeliveryState.objects.get(mapping=mapping, object_id=1)
    assert state.delivered_message_id == state.message_id == sandbox_base.messages()[0]["payload"]["messageId"]


def test_after_a_lost_answer_and_a_resend_the_next_change_is_not_dropped(settings, mirror, mapping, ordered_segment):
    """A, then B whose answers are all lost (Segment applied it), then back to A (resent, see above), then B
    again: that B must not carry the lost B's messageId, which Segment still remembers."""
    settings.SEGMENT_MAX_ATTEMPTS = 2
    props = fill(mirror, 1)
    deliver(mapping_id=mapping.pk)
    mirror.put(1, {**props[1], "firstname": "B"})
    ordered_segment.lose = "drop"
    deliver(mapping_id=mapping.pk)
    ordered_segment.lose = None
    mirror.put(1, props[1])
    assert deliver(mapping_id=mapping.pk).sent == 1
    mirror.put(1, {**props[1], "firstname": "B"})
    assert deliver(mapping_id=mapping.pk).sent == 1
    assert ordered_segment.profiles()["user1@example.com"]["first_name"] == "B"
    assert len({m["messageId"] for m in ordered_segment.applied}) == len(ordered_segment.applied) == 4


def test_a_record_changed_back_during_the_delivery_ends_on_its_current_values(
    settings, monkeypatch, mirror, mapping, ordered_segment
):
    """The profile holds A; the delivery sends B; while Segment takes its time answering, the record goes back to
    A in HubSpot and the still running scan reads it. A equals the delivered hash, but the profile is about to
    hold B: A must be sent after B, or the profile keeps B and the record looks resolved for good."""
    import time

    from django.db import connections

    settings.DELIVERY_MAX_IN_FLIGHT = 50  # the scan never waits for a free slot: it reads on while B is in flight
    settings.DELIVERY_CHUNK_SIZE = 4  # and it reads in small steps, so it still reads when the change is committed
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    props = fill(mirror, 200)
    deliver(mapping_id=mapping.pk)
    mirror.put(1, {**props[1], "firstname": "B"})
    for i in range(2, 201):
        props[i] = {**props[i], "lastname": "Changed"}
        mirror.put(i, props[i])
    changed_back = threading.Event()

    def change_back_while_answering(batch) -> None:
        if not changed_back.is_set() and any(m["traits"]["first_name"] == "B" for m in batch):
            changed_back.set()
            try:
                mirror.put(1, props[1])  # back to A
            finally:
                connections.close_all()
            time.sleep(1.0)  # Segment answers slowly

    ordered_segment.on_request = change_back_while_answering
    run = deliver(mapping_id=mapping.pk)
    assert changed_back.is_set() and run.status == DeliveryRun.Status.SUCCEEDED
    assert run.considered == 201  # A was read during the run (after B, which was in flight)
    assert ordered_segment.profiles()["user1@example.com"]["first_name"] == "First1"
    assert deliver(mapping_id=mapping.pk).sent == 0


def _payload_hash(builder, message) -> str:
    """The payload hash of a message as Segment received it (the engine's hash leaves the per-send fields out)."""
    content = {k: v for k, v in message.items() if k not in ("messageId", "context", "timestamp")}
    return builder.digest(content)[1]


def test_the_last_message_segment_applies_for_a_record_is_the_recorded_one_under_retries_and_changes(
    settings, monkeypatch, mirror, mapping, ordered_segment
):
    """A delivery keeps reading rows committed after it started, so one record can be in two of its batches,
    and up to three batches are in flight, each retrying on its own. With slow, failing answers and records
    changing during the delivery (some back to what the profile had before the run), an older batch's retry must
    never land after the newer one, and a record changed back must not look unchanged while its changed version
    lands: for every record, the last message Segment applied is the one whose hash the state records, and after
    a clean run every profile equals the mirror."""
    import random

    from django.db import connections

    from mappings.delivery import MessageBuilder
    from tests.mappings.conftest import CONTACT_SCHEMA

    settings.DELIVERY_MAX_IN_FLIGHT = 3
    settings.DELIVERY_CHUNK_SIZE = 4
    settings.SEGMENT_MAX_ATTEMPTS = 16
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 4)
    rng = random.Random(10)
    props = fill(mirror, 40)
    deliver(mapping_id=mapping.pk)
    builder = MessageBuilder(mapping, CONTACT_SCHEMA)
    ordered_segment.latency = (0.03, 0.12)
    ordered_segment.fail_rate = 0.5
    stale_rounds = []

    emails = {p["email"]: i for i, p in props.items()}
    changes = {"left": 0, "round": 0}
    delivered_before: dict[int, dict] = {}  # each record's values when the round started
    lock = threading.Lock()

    def change_what_segment_receives(batch) -> None:
        """HubSpot changes the records of a batch again while Segment is still answering it (committed from the
        double's thread, so they land while the delivery is reading): their new versions go out in a later
        batch of the same run while this one may still be retrying."""
        try:
            for message in batch:
                with lock:
                    if changes["left"] <= 0 or rng.random() < 0.3:
                        continue
                    changes["left"] -= 1
                    i = emails[message["userId"]]
                    if rng.random() < 0.3:
                        props[i] = delivered_before[i]  # changed back: the payload the profile had before the run
                    else:
                        props[i] = {**props[i], "firstname": f"r{changes['round']}-{changes['left']}"}
                    mirror.put(i, props[i])
        finally:
            connections.close_all()

    ordered_segment.on_request = change_what_segment_receives
    for round_no in range(12):
        with lock:
            changes.update(left=60, round=round_no)
            delivered_before.update(props)
        for i in rng.sample(range(1, len(props) + 1), 24):  # more than three batches: the scan waits for Segment
            props[i] = {**props[i], "lastname": f"r{round_no}"}
            mirror.put(i, props[i])
        deliver(mapping_id=mapping.pk)
        last = ordered_segment.last_applied()
        stale = [
            state.object_id
            for state in DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.DELIVERED)
            if _payload_hash(builder, last[props[state.object_id]["email"]]) != state.delivered_hash
        ]
        stale_rounds.append(len(stale))

    ordered_segment.fail_rate = 0
    ordered_segment.on_request = None
    while deliver(mapping_id=mapping.pk).sent:
        pass
    profiles = ordered_segment.profiles()
    stale_profiles = sum(profiles[p["email"]] != expected_traits(p, i) for i, p in props.items())
    # Both figures at once: the records left on an older message per round, then the profiles that a clean run
    # could no longer correct (their state recorded the newer hash).
    assert (stale_rounds, stale_profiles) == ([0] * len(stale_rounds), 0)


# --- identifier format -----------------------------------------------------------------------------------------


def test_lower_cased_identifiers_keep_one_profile_when_hubspot_changes_the_capitals(sandbox_base, mirror, mapping):
    """With "trim spaces and lower-case", a case-only change of the e-mail used as User ID is no change at all:
    same userId, same `email` trait (it reads the identifier column, so it is written the same way), nothing
    sent, no second profile."""
    mapping.options = {"empty_values": "null", "identifier_format": "lower"}
    mapping.save()
    props = fill(mirror, 3)
    mirror.put(1, {**props[1], "email": " User1@Example.com "})
    assert deliver(mapping_id=mapping.pk).sent == 3
    assert profiles_by_user(sandbox_base)["user1@example.com"]["email"] == "user1@example.com"

    mirror.put(1, {**props[1], "email": "USER1@example.COM"})
    run = deliver(mapping_id=mapping.pk)
    assert (run.considered, run.sent, run.unchanged) == (1, 0, 1)
    profiles = profiles_by_user(sandbox_base)
    assert sorted(profiles) == [f"user{i}@example.com" for i in (1, 2, 3)]
    assert profiles["user1@example.com"] == expected_traits(props[1], 1)


@pytest.mark.parametrize(
    ("identifier_format", "user_id", "email_trait"),
    [
        (None, "Ann@Example.com", " Ann@Example.com "),  # mappings made before the option: as they always were
        ("trim_ids", "Ann@Example.com", " Ann@Example.com "),
        ("trim", "Ann@Example.com", "Ann@Example.com"),
        ("lower", "ann@example.com", "ann@example.com"),
        ("as_is", " Ann@Example.com ", " Ann@Example.com "),
    ],
)
def test_the_identifier_format_applies_to_the_identifiers_and_the_traits_reading_them(
    mapping, identifier_format, user_id, email_trait
):
    from mappings.delivery import preview_message

    before = mapping.config_hash()
    if identifier_format is not None:
        mapping.options = {**mapping.options, "identifier_format": identifier_format}
    mapping.identifiers = {"user_id": "email", "anonymous_id": "lastname", "group_id": None}
    message, error = preview_message(
        mapping, object_id=7, properties=contact_props(7, email=" Ann@Example.com ", lastname=" Smith ")
    )
    assert error == ""
    assert (message["userId"], message["traits"]["email"]) == (user_id, email_trait)
    smith = {"as_is": " Smith ", "lower": "smith"}.get(identifier_format, "Smith")
    assert message["anonymousId"] == smith
    assert message["traits"]["last_name"] == (" Smith " if identifier_format in (None, "trim_ids") else smith)
    if identifier_format is None:
        mapping.identifiers = {"user_id": "email", "anonymous_id": None, "group_id": None}
        assert mapping.config_hash() == before  # (nothing stored for the option: the hash it always had)


def test_the_identifier_format_applies_to_group_ids(destination, space, source, mirror):
    model = DataModel.objects.create(source=source, collection="companies", name="Companies", columns=["domain"])
    group = Mapping.objects.create(
        destination=destination, data_model=model, profile_space=space, action="group",
        identifiers={"user_id": None, "anonymous_id": "id", "group_id": "domain"},
        traits=[["domain", "website"]], options={"identifier_format": "lower"}, enabled=True,
    )  # fmt: skip
    from mappings.delivery import preview_message

    message, _error = preview_message(group, object_id=5, properties={"domain": " Example.COM"})
    assert (message["groupId"], message["anonymousId"]) == ("example.com", "5")
    assert message["traits"] == {"website": "example.com"}


def test_debug_query_log_stays_one_chunk_deep(sandbox_base, mirror, mapping, settings):
    """With DEBUG on (the embedded default) Django logs every statement; a delivery must not keep them all."""
    fill(mirror, 3000)
    settings.DEBUG = True
    settings.DELIVERY_CHUNK_SIZE = 100
    run = deliver(mapping_id=mapping.pk)
    assert run.status == DeliveryRun.Status.SUCCEEDED and run.sent == 3000
    assert len(connection.queries_log) <= 40, len(connection.queries_log)

"""Sample mode (start small) and the retry of rejected records, in the delivery engine, over real HTTP: the
Segment sandbox (live_server) for sample mode, a stub at the network boundary for refusals Segment would make."""

from __future__ import annotations

from collections import Counter

import pytest

from hubsync.models import AuditEvent
from mappings.delivery import deliver
from mappings.models import DeliveryRun, DeliveryState, Mapping
from mappings.selectors import sample_cutoff
from mappings.services import MAX_SAMPLE_SIZE, MappingsError, request_retry, set_sample_mode, set_sample_size
from tests.mappings.conftest import contact_props, fill

pytestmark = pytest.mark.django_db(transaction=True)


def sent_user_ids(sandbox) -> Counter:
    return Counter(m["userId"] for m in sandbox.messages())


# --- sample mode -----------------------------------------------------------------------------------------------


def test_sample_mode_delivers_exactly_n_then_switching_delivers_exactly_the_rest(sandbox_base, mirror, mapping):
    # Ids arrive out of order (change_seq order differs from id order): the sample is by id, not by arrival.
    ids = [17, 3, 25, 8, 1, 30, *range(31, 55), 12, 5, 9, 2]
    fill(mirror, ids)
    set_sample_mode(mapping=mapping, sample_size=10)

    first = deliver(mapping_id=mapping.pk)

    sample = sorted(ids)[:10]
    assert first.status == DeliveryRun.Status.SUCCEEDED
    assert (first.considered, first.sent, first.outside_sample) == (len(ids), 10, len(ids) - 10)
    assert sent_user_ids(sandbox_base) == Counter(f"user{i}@example.com" for i in sample)
    assert sample_cutoff(mapping) == sample[-1]
    # Records beyond the sample are neither sent nor marked delivered.
    assert set(DeliveryState.objects.filter(mapping=mapping).values_list("object_id", flat=True)) == set(sample)

    # A change inside the sample is sent; one outside it is not.
    mirror.put(sample[0], contact_props(sample[0], firstname="Changed"))
    mirror.put(40, contact_props(40, firstname="Changed"))
    second = deliver(mapping_id=mapping.pk)
    assert (second.considered, second.sent, second.outside_sample) == (2, 1, 1)
    assert sandbox_base.profile(f"user{sample[0]}@example.com")["traits"]["first_name"] == "Changed"

    # One click: all records. The next delivery sends exactly the others, each once.
    mapping.refresh_from_db()
    set_sample_mode(mapping=mapping, sample_size=None)
    third = deliver(mapping_id=mapping.pk)

    assert third.status == DeliveryRun.Status.SUCCEEDED
    assert (third.sent, third.unchanged, third.outside_sample) == (len(ids) - 10, 10, 0)
    counts = sent_user_ids(sandbox_base)
    assert set(counts) == {f"user{i}@example.com" for i in ids}
    duplicates = {u: n for u, n in counts.items() if n > 1}
    assert duplicates == {f"user{sample[0]}@example.com": 2}  # its real change, not a duplicate
    message_ids = [m["payload"]["messageId"] for m in sandbox_base.messages()]
    assert len(message_ids) == len(set(message_ids)) == len(ids) + 1
    assert profile_count(sandbox_base) == len(ids)
    assert deliver(mapping_id=mapping.pk).sent == 0


def profile_count(sandbox) -> int:
    return len(sandbox.profiles())


def test_sample_counts_archived_records_so_the_sample_does_not_move(sandbox_base, mirror, mapping):
    fill(mirror, range(1, 11))
    mirror.put(2, contact_props(2), archived=True)
    mapping.sample_size = 5
    mapping.save()

    run = deliver(mapping_id=mapping.pk)

    # Ids 1..5 are the sample; 2 is archived (not sent), so 4 messages and nothing beyond id 5.
    assert (run.sent, run.archived, run.outside_sample) == (4, 1, 5)
    assert set(sent_user_ids(sandbox_base)) == {f"user{i}@example.com" for i in (1, 3, 4, 5)}


def test_a_mapping_without_sample_mode_keeps_its_configuration_hash(mapping):
    before = mapping.config_hash()
    mapping.sample_size = None
    assert mapping.config_hash() == before
    mapping.sample_size = Mapping.DEFAULT_SAMPLE_SIZE
    assert mapping.config_hash() != before


@pytest.mark.parametrize("size", [0, -1, MAX_SAMPLE_SIZE + 1])
def test_the_sample_size_rule_refuses_a_size_out_of_range_and_changes_nothing(mapping, size):
    """The one range check the page, the API and config apply share."""
    with pytest.raises(MappingsError, match=r"^The sample size is a number from 1 to 10,000\.$"):
        set_sample_size(mapping=mapping, sample_size=size, actor=None)
    mapping.refresh_from_db()
    assert mapping.sample_size is None
    assert not AuditEvent.objects.filter(verb="mapping.sample_mode").exists()


def test_the_sample_size_rule_takes_the_bounds_and_all_records(mapping):
    assert MAX_SAMPLE_SIZE == 10_000
    for size in (1, MAX_SAMPLE_SIZE, None):
        assert set_sample_size(mapping=mapping, sample_size=size, actor=None)
        mapping.refresh_from_db()
        assert mapping.sample_size == size
    assert AuditEvent.objects.filter(verb="mapping.sample_mode").count() == 3


# --- retry -----------------------------------------------------------------------------------------------------


@pytest.fixture
def refused(settings, stub_segment, mirror, mapping):
    """Ten contacts; Segment refuses users 3, 5 and 7 (400 for their message): three rejected records."""
    settings.BASE_URL = stub_segment.url
    stub_segment.refuse_users = {f"user{i}@example.com" for i in (3, 5, 7)}
    fill(mirror, range(1, 11))
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.rejected) == (7, 3)
    stub_segment.refuse_users = set()
    stub_segment.requests.clear()
    return stub_segment


def sent_in(stub) -> list[str]:
    return sorted(m["userId"] for r in stub.requests if r["status"] == 200 for m in r["batch"])


def test_nothing_is_retried_unless_asked(refused, mapping):
    run = deliver(mapping_id=mapping.pk)
    assert (run.considered, run.sent) == (0, 0)
    assert refused.requests == []


def test_retry_one_resends_exactly_that_record(refused, mapping):
    watermark = Mapping.objects.get(pk=mapping.pk).watermark

    assert request_retry(mapping=mapping, object_ids=[5]) == 1
    assert DeliveryState.objects.get(mapping=mapping, object_id=5).status == "retry"
    run = deliver(mapping_id=mapping.pk)

    assert run.status == DeliveryRun.Status.SUCCEEDED
    assert (run.sent, run.rejected) == (1, 0)
    assert sent_in(refused) == ["user5@example.com"]
    state = DeliveryState.objects.get(mapping=mapping, object_id=5)
    assert (state.status, state.error) == ("delivered", "")
    assert state.message_id.startswith(f"hs-{mapping.destination.workspace_id}-{mapping.pk}-5-")
    rejected = DeliveryState.objects.filter(mapping=mapping, status="rejected")
    assert set(rejected.values_list("object_id", flat=True)) == {3, 7}
    # The watermark was never rewound, and the next run has nothing to do.
    assert Mapping.objects.get(pk=mapping.pk).watermark == watermark
    assert deliver(mapping_id=mapping.pk).sent == 0


def test_retry_a_selection_and_then_all(refused, mapping):
    assert request_retry(mapping=mapping, object_ids=[3, 7, 9]) == 2  # 9 was delivered: not rejected
    deliver(mapping_id=mapping.pk)
    assert sent_in(refused) == ["user3@example.com", "user7@example.com"]

    refused.requests.clear()
    assert request_retry(mapping=mapping) == 1
    deliver(mapping_id=mapping.pk)
    assert sent_in(refused) == ["user5@example.com"]
    assert not DeliveryState.objects.filter(mapping=mapping).exclude(status="delivered").exists()


def test_a_retry_still_refused_is_rejected_again_and_a_failed_one_stays_queued(refused, mapping):
    refused.refuse_users = {"user3@example.com"}
    request_retry(mapping=mapping)
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.rejected) == (2, 1)
    assert DeliveryState.objects.get(mapping=mapping, object_id=3).status == "rejected"

    # Segment down (401 on every request) while retrying: the record stays queued for retry, nothing is lost.
    refused.refuse_users = set()
    refused.statuses = [401] * 10
    request_retry(mapping=mapping, object_ids=[3])
    failed = deliver(mapping_id=mapping.pk)
    assert failed.status == DeliveryRun.Status.FAILED
    assert DeliveryState.objects.get(mapping=mapping, object_id=3).status == "retry"
    refused.statuses = []
    refused.requests.clear()
    deliver(mapping_id=mapping.pk)
    assert sent_in(refused) == ["user3@example.com"]


def test_a_retried_record_already_on_the_profile_is_not_resent(settings, stub_segment, mirror, mapping):
    """Delivered, then rejected by a later change, then changed back: retrying finds Segment already has it."""
    settings.BASE_URL = stub_segment.url
    fill(mirror, range(1, 4))
    deliver(mapping_id=mapping.pk)
    state = DeliveryState.objects.get(mapping=mapping, object_id=2)
    DeliveryState.objects.filter(pk=state.pk).update(status="rejected", error="Segment refused this message: x")
    stub_segment.requests.clear()

    request_retry(mapping=mapping, object_ids=[2])
    run = deliver(mapping_id=mapping.pk)

    assert (run.sent, run.unchanged) == (0, 1)
    assert stub_segment.requests == []
    state.refresh_from_db()
    assert (state.status, state.error) == ("delivered", "")


def test_retry_with_a_changed_mapping_sends_each_record_once(refused, mapping):
    """A mapping edit makes the next run reconsider everything; the retried records are not sent twice."""
    request_retry(mapping=mapping)
    mapping.traits = [*mapping.traits, ["company", "company"]]
    mapping.save()

    run = deliver(mapping_id=mapping.pk)

    assert run.sent == 10
    assert sorted(Counter(sent_in(refused)).values()) == [1] * 10
    assert not DeliveryState.objects.filter(mapping=mapping).exclude(status="delivered").exists()


def test_a_mapping_with_records_waiting_for_retry_counts_as_behind(refused, mapping, mirror):
    """After a sync with no HubSpot change, the engine still starts the delivery that retries them."""
    from mappings.delivery import collections_behind

    assert collections_behind(mirror.source) == set()
    request_retry(mapping=mapping, object_ids=[3])
    assert collections_behind(mirror.source) == {"contacts"}

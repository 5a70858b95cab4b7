"""The record debugger, the rejected records list with its retry, and the sample mode view.

HubSpot side: the sandbox read by the real extraction engine (history needs real syncs). Segment side: the
sandbox over real HTTP, or a stub at the network boundary where Segment must refuse a message."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django.urls import reverse

from hubsync.models import AuditEvent
from mappings.delivery import deliver
from mappings.models import DeliveryState, Mapping
from sources.extraction import base
from sources.models import Record, RecordChange, SyncRun
from tests.factories import DataModelFactory, DestinationFactory, MappingFactory, ProfileSpaceFactory, RecordFactory

# Fixtures shared with the delivery tests (a mirror filled through the ORM, a mapping to the Segment sandbox).
from tests.mappings.conftest import (  # noqa: F401
    _close_segment_connections,
    contact_props,
    contacts_model,
    destination,
    mapping,
    mirror,
    sandbox_base,
    source,
    space,
    stub_segment,
)
from tests.sources.extract_helpers import PORTAL, make_source, sync

pytestmark = pytest.mark.django_db(transaction=True)

DEBUG_URL = "/debug/records/"


def text(response) -> str:
    """The page as a reader sees it: tags dropped, entities undone, whitespace collapsed."""
    import html

    body = response.content.decode()
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def fill(mirror, ids, **overrides) -> None:  # noqa: F811 (the fixture named mirror)
    for i in ids:
        mirror.put(i, contact_props(i, **overrides))


# --- lookups -----------------------------------------------------------------------------------------------------


def test_lookup_by_id_and_by_email(owner_client, sandbox_base, mirror, mapping):  # noqa: F811
    fill(mirror, range(1, 6))
    deliver(mapping_id=mapping.pk)

    by_id = owner_client.get(DEBUG_URL, {"q": "3"})
    assert by_id.status_code == 200
    page = text(by_id)
    assert "Contact 3 · user3@example.com" in page
    assert "First3" in page  # mirror data: every property
    by_email = owner_client.get(DEBUG_URL, {"q": "USER4@Example.com"})  # case does not matter
    assert "Contact 4" in text(by_email) and by_email.context["record"].object_id == 4

    missing = text(owner_client.get(DEBUG_URL, {"q": "nobody@example.com"}))
    assert "No record with the email nobody@example.com" in missing
    assert "Enter a HubSpot record id" in text(owner_client.get(DEBUG_URL, {"q": "hello"}))


def test_an_id_in_two_collections_lists_both(owner_client, source, mirror, mapping):  # noqa: F811
    fill(mirror, [7])
    RecordFactory(
        source=source, collection="companies", object_id=7, properties={"name": "Acme"}, content_hash="x", change_seq=99
    )
    response = owner_client.get(DEBUG_URL, {"q": "7"})
    assert "2 records match" in text(response)
    picked = owner_client.get(DEBUG_URL, {"q": "7", "mapping": mapping.pk})  # from the rejected list: contacts
    assert picked.context["record"].collection == "contacts"


def test_delivered_payload_and_message_id_are_shown(owner_client, sandbox_base, mirror, mapping):  # noqa: F811
    fill(mirror, range(1, 4))
    deliver(mapping_id=mapping.pk)
    state = DeliveryState.objects.get(mapping=mapping, object_id=2)
    [sent] = [m["payload"] for m in sandbox_base.messages() if m["userId"] == "user2@example.com"]

    response = owner_client.get(DEBUG_URL, {"q": "2"})
    page = text(response)
    assert state.message_id in page and sent["messageId"] == state.message_id
    assert "Delivered to Sandbox space" in page
    assert "Why the profile (userId user2@example.com) has its traits" in page
    assert 'first_name = "First2" (from firstname)' in page
    [verdict] = response.context["verdicts"]
    assert verdict.kind == "delivered" and verdict.same_as_delivered
    delivered = verdict.delivered_payload
    # Exactly what Segment received (sentAt/receivedAt aside).
    assert {k: delivered[k] for k in ("messageId", "traits", "userId", "type")} == {
        k: sent[k] for k in ("messageId", "traits", "userId", "type")
    }
    assert '"first_name": "First2"' in page  # the delivered message, as JSON


def test_rejected_record_shows_its_reason_at_the_top(owner_client, sandbox_base, mirror, mapping):  # noqa: F811
    fill(mirror, [1, 2])
    mirror.put(3, contact_props(3, email=""))
    deliver(mapping_id=mapping.pk)

    response = owner_client.get(DEBUG_URL, {"q": "3"})
    [verdict] = response.context["verdicts"]
    assert verdict.kind == "rejected"
    summary = response.context["summary"]
    assert summary[0].startswith("Why contact 3 did not arrive: Rejected by")
    assert "No User ID or Anonymous ID: 'email' is empty for this record" in summary[0]
    page = text(response)
    assert "The rejected message" in page and "Would be rejected" in page


def test_waiting_sample_and_unmapped_explanations(owner_client, source, sandbox_base, mirror, mapping):  # noqa: F811
    fill(mirror, range(1, 6))
    mapping.sample_size = 2
    mapping.save()
    deliver(mapping_id=mapping.pk)

    beyond = owner_client.get(DEBUG_URL, {"q": "4"}).context["verdicts"][0]
    assert beyond.kind == "sample" and "first 2 records" in beyond.headline and "ids up to 2" in beyond.headline

    mirror.put(1, contact_props(1, firstname="Later"))
    waiting = owner_client.get(DEBUG_URL, {"q": "1"}).context["verdicts"][0]
    assert waiting.kind == "waiting" and "the next delivery handles it" in waiting.headline
    assert waiting.would_send["traits"]["first_name"] == "Later"
    assert waiting.delivered_payload is None  # the mirror was written directly here: no history to roll back

    RecordFactory(source=source, collection="companies", object_id=50, properties={}, content_hash="x", change_seq=500)
    unmapped = owner_client.get(DEBUG_URL, {"q": "50"})
    assert "No mapping reads companies" in unmapped.context["summary"][0]


def test_history_after_two_syncs_and_the_rebuilt_delivered_message(
    workspace,
    owner_client,
    sandbox,  # noqa: F811 (the fixtures imported above)
    sandbox_base,  # noqa: F811
    monkeypatch,
):
    """Real syncs from the HubSpot sandbox write the history; the delivered message is rebuilt from it exactly."""
    hubspot = sandbox
    monkeypatch.setattr(base, "notify_changes", lambda *args, **kwargs: None)  # we deliver by hand
    hubspot.seed(PORTAL, contacts=4, companies=0, deals=0, tickets=0)
    src = make_source(workspace, hubspot)
    assert sync(src, SyncRun.Trigger.FIRST).status == SyncRun.Status.SUCCEEDED
    record = Record.objects.filter(source=src, collection="contacts").order_by("object_id").first()
    original = record.properties["firstname"]
    dest = DestinationFactory(workspace=workspace, name="Segment")
    space_ = ProfileSpaceFactory(destination=dest, name="Space", write_key=sandbox_base.write_key, region="sandbox")
    model = DataModelFactory(source=src, collection="contacts", name="Contacts", columns=["email", "firstname"])
    m = MappingFactory(
        destination=dest,
        data_model=model,
        profile_space=space_,
        action="identify",
        identifiers={"user_id": "email"},
        traits=[["firstname", "first_name"], ["email", "email"]],
        enabled=True,
    )
    assert deliver(mapping_id=m.pk).sent == 4
    assert not RecordChange.objects.exists()  # new records: the mirror row is their first version

    hubspot.set_properties(record.object_id, {"firstname": "Zed"}, portal=PORTAL)
    sync(src)
    hubspot.set_properties(record.object_id, {"firstname": "Zoe"}, portal=PORTAL)
    sync(src)

    changes = list(RecordChange.objects.filter(source=src, object_id=record.object_id).order_by("change_seq"))
    assert [c.changes["firstname"] for c in changes] == [[original, "Zed"], ["Zed", "Zoe"]]
    assert all(c.run_id for c in changes) and changes[0].run_id != changes[1].run_id

    response = owner_client.get(DEBUG_URL, {"q": record.properties["email"]})
    page = text(response)
    assert f"firstname {original} → Zed" in page and "firstname Zed → Zoe" in page
    [verdict] = response.context["verdicts"]
    assert verdict.kind == "waiting"
    # Two changes rolled back: the message Segment accepted, rebuilt and verified by its hash.
    [sent] = [msg["payload"] for msg in sandbox_base.messages() if msg["userId"] == record.properties["email"]]
    assert verdict.delivered_payload["messageId"] == sent["messageId"]
    assert verdict.delivered_payload["traits"]["first_name"] == original
    assert f"before change #{changes[0].change_seq}" in verdict.delivered_note
    assert verdict.would_send["traits"]["first_name"] == "Zoe"

    deliver(mapping_id=m.pk)
    response = owner_client.get(DEBUG_URL, {"q": str(record.object_id)})
    [verdict] = response.context["verdicts"]
    assert verdict.kind == "delivered" and verdict.delivered_payload["traits"]["first_name"] == "Zoe"
    trait = next(t for t in verdict.traits if t.trait == "first_name")
    assert trait.last_change.pk == changes[1].pk  # "why does the profile say Zoe": this change, that run
    assert f"sync run {changes[1].run_id}" in text(response)


def test_a_record_deleted_in_hubspot_is_explained(
    workspace,
    owner_client,
    outsider_client,
    sandbox,  # noqa: F811 (the fixtures imported above)
    sandbox_base,  # noqa: F811
    monkeypatch,
):
    """Delivered, then permanently deleted in HubSpot (a GDPR delete) and removed by a full sync: the debugger says
    so, from the delivery state that is all hubsync keeps of it."""
    hubspot = sandbox
    monkeypatch.setattr(base, "notify_changes", lambda *args, **kwargs: None)  # we deliver by hand
    hubspot.seed(PORTAL, contacts=4, companies=0, deals=0, tickets=0)
    src = make_source(workspace, hubspot)
    sync(src, SyncRun.Trigger.FIRST)
    dest = DestinationFactory(workspace=workspace, name="Segment")
    space_ = ProfileSpaceFactory(destination=dest, name="Space", write_key=sandbox_base.write_key, region="sandbox")
    model = DataModelFactory(source=src, collection="contacts", name="Contacts", columns=["email"])
    m = MappingFactory(
        destination=dest,
        data_model=model,
        profile_space=space_,
        action="identify",
        name="Contacts to Segment",
        identifiers={"user_id": "email"},
        traits=[["email", "email"]],
        enabled=True,
    )
    assert deliver(mapping_id=m.pk).sent == 4
    record = Record.objects.filter(source=src).order_by("object_id").first()
    email = record.properties["email"]
    hubspot.purge([record.object_id], portal=PORTAL)
    assert sync(src, SyncRun.Trigger.FULL).counts["contacts"]["deleted"] == 1

    response = owner_client.get(DEBUG_URL, {"q": str(record.object_id)})
    page = text(response)
    assert f"HubSpot id {record.object_id} is not in the mirror: it was deleted in HubSpot" in page
    assert response.context["deleted"] and not response.context["problem"]
    assert "“Contacts to Segment” (contacts) delivered it on" in page
    # By e-mail there is nothing left to match (the address was personal data, and it is gone).
    assert "deleted in HubSpot, or never synced" in text(owner_client.get(DEBUG_URL, {"q": email}))
    assert "deleted in HubSpot, or never synced" in text(owner_client.get(DEBUG_URL, {"q": "424242"}))
    # Another workspace learns nothing about it.
    other = text(outsider_client.get(DEBUG_URL, {"q": str(record.object_id)}))
    assert "Contacts to Segment" not in other and "or never synced" in other


# --- rejected records: list and retry ------------------------------------------------------------------------------


@pytest.fixture
def rejected(settings, stub_segment, mirror, mapping):  # noqa: F811
    """Contacts 1..12: 2, 4 and 6 refused by Segment (400), 9 and 11 without email (rejected before sending)."""
    settings.BASE_URL = stub_segment.url
    stub_segment.refuse_users = {f"user{i}@example.com" for i in (2, 4, 6)}
    for i in range(1, 13):
        mirror.put(i, contact_props(i, email="" if i in (9, 11) else f"user{i}@example.com"))
    run = deliver(mapping_id=mapping.pk)
    assert run.rejected == 5
    stub_segment.refuse_users = set()
    stub_segment.requests.clear()
    return stub_segment


def sent_users(stub) -> Counter:
    return Counter(m["userId"] for r in stub.requests if r["status"] == 200 for m in r["batch"])


def rejected_url(mapping) -> str:  # noqa: F811
    return reverse("mappings:rejected", args=[mapping.pk])


def retry_url(mapping) -> str:  # noqa: F811
    return reverse("mappings:rejected_retry", args=[mapping.pk])


def test_rejected_list_filters(owner_client, rejected, mapping):  # noqa: F811
    everything = owner_client.get(rejected_url(mapping))
    assert everything.status_code == 200
    assert [s.object_id for s in everything.context["page"].object_list] and everything.context["total"] == 5
    page = text(everything)
    assert "Segment refused this message" in page and "No User ID or Anonymous ID" in page

    by_reason = owner_client.get(rejected_url(mapping), {"reason": "segment refused"})
    assert sorted(s.object_id for s in by_reason.context["page"].object_list) == [2, 4, 6]
    assert "3 of 5 rejected records match" in text(by_reason)
    by_id = owner_client.get(rejected_url(mapping), {"object_id": "9"})
    assert [s.object_id for s in by_id.context["page"].object_list] == [9]
    today = DeliveryState.objects.filter(mapping=mapping).first().updated_at.date().isoformat()
    assert owner_client.get(rejected_url(mapping), {"since": today}).context["page"].paginator.count == 5
    assert owner_client.get(rejected_url(mapping), {"until": "2000-01-01"}).context["page"].paginator.count == 0
    bad = owner_client.get(rejected_url(mapping), {"since": "yesterday"})
    assert "Since: use a date like" in text(bad)


def test_rejected_list_pages(owner_client, rejected, mapping, monkeypatch):  # noqa: F811
    import mappings.views_rejected as views_rejected

    monkeypatch.setattr(views_rejected, "PAGE_SIZE", 2)
    first = owner_client.get(rejected_url(mapping))
    assert first.context["page"].paginator.num_pages == 3
    third = owner_client.get(rejected_url(mapping), {"page": 3, "reason": ""})
    seen = {
        s.object_id
        for p in (1, 2, 3)
        for s in owner_client.get(rejected_url(mapping), {"page": p}).context["page"].object_list
    }
    assert len(third.context["page"].object_list) == 1 and seen == {2, 4, 6, 9, 11}


def test_retry_one_selection_and_all_resend_exactly_those(owner_client, rejected, mapping, workspace):  # noqa: F811
    response = owner_client.post(retry_url(mapping), {"one": "4"})
    assert response.status_code == 302
    assert DeliveryState.objects.get(mapping=mapping, object_id=4).status == "retry"
    assert "1 waiting for retry" in text(owner_client.get(rejected_url(mapping)))
    deliver(mapping_id=mapping.pk)
    assert sent_users(rejected) == Counter({"user4@example.com": 1})

    rejected.requests.clear()
    owner_client.post(retry_url(mapping), {"action": "selected", "selected": ["2", "6"]})
    deliver(mapping_id=mapping.pk)
    assert sent_users(rejected) == Counter({"user2@example.com": 1, "user6@example.com": 1})

    # "Retry all": the two without email are reconsidered and rejected again (nothing to send), for the same reason.
    rejected.requests.clear()
    owner_client.post(retry_url(mapping), {"action": "all"})
    assert set(DeliveryState.objects.filter(mapping=mapping, status="retry").values_list("object_id", flat=True)) == {
        9,
        11,
    }
    run = deliver(mapping_id=mapping.pk)
    assert (run.sent, run.rejected) == (0, 2) and rejected.requests == []
    assert DeliveryState.objects.get(mapping=mapping, object_id=9).status == "rejected"

    events = list(AuditEvent.objects.filter(workspace=workspace, verb="mapping.retry_rejected").order_by("id"))
    assert [(e.changes["scope"], e.changes["records"], e.changes["object_ids"]) for e in events] == [
        ("one", 1, [4]),
        ("selection", 2, [2, 6]),
        ("all", 2, [9, 11]),
    ]


def test_retry_all_respects_the_filter(owner_client, rejected, mapping):  # noqa: F811
    owner_client.post(retry_url(mapping), {"action": "all", "reason": "Segment refused"})
    retried = set(DeliveryState.objects.filter(mapping=mapping, status="retry").values_list("object_id", flat=True))
    assert retried == {2, 4, 6}
    deliver(mapping_id=mapping.pk)
    assert sent_users(rejected) == Counter({f"user{i}@example.com": 1 for i in (2, 4, 6)})


def test_viewer_sees_but_cannot_retry(viewer_client, rejected, mapping):  # noqa: F811
    response = viewer_client.get(rejected_url(mapping))
    assert response.status_code == 200 and "Segment refused" in text(response)
    assert "Retry selected" not in text(response)
    assert viewer_client.post(retry_url(mapping), {"action": "all"}).status_code == 403
    assert not DeliveryState.objects.filter(mapping=mapping, status="retry").exists()
    assert viewer_client.get(DEBUG_URL, {"q": "2"}).status_code == 200


def test_outsider_gets_404_and_finds_nothing(outsider_client, rejected, mapping, source):  # noqa: F811
    assert outsider_client.get(rejected_url(mapping)).status_code == 404
    assert outsider_client.post(retry_url(mapping), {"action": "all"}).status_code == 404
    assert outsider_client.get(reverse("mappings:sample_mode", args=[mapping.pk])).status_code == 404
    record = Record.objects.get(source=source, object_id=2)
    assert outsider_client.get(DEBUG_URL, {"record": record.pk}).status_code == 404
    page = outsider_client.get(DEBUG_URL, {"q": "2"})
    assert page.status_code == 200 and page.context.get("record") is None and "user2@example.com" not in text(page)
    by_email = outsider_client.get(DEBUG_URL, {"q": "user2@example.com"})
    assert by_email.context.get("record") is None
    assert not DeliveryState.objects.filter(mapping=mapping, status="retry").exists()


# --- sample mode view -----------------------------------------------------------------------------------------------


def test_sample_mode_view_starts_a_sample_and_switches_to_all(owner_client, viewer_client, mapping, workspace):  # noqa: F811
    url = reverse("mappings:sample_mode", args=[mapping.pk])
    page = owner_client.get(url)
    assert "Deliver a sample only" in text(page)
    assert viewer_client.post(url, {"action": "start"}).status_code == 403

    owner_client.post(url, {"action": "start", "sample_size": ""})
    mapping.refresh_from_db()
    assert mapping.sample_size == Mapping.DEFAULT_SAMPLE_SIZE == 100
    fragment = owner_client.get(url, headers={"HX-Request": "true"})
    assert "Switch to all records" in text(fragment) and "<html" not in fragment.content.decode()
    assert "Switch to all records" not in text(viewer_client.get(url)) and "Sample mode" in text(viewer_client.get(url))

    assert "from 1 to" in text(owner_client.post(url, {"action": "start", "sample_size": "0"}, follow=True))
    owner_client.post(url, {"action": "all"}, headers={"HX-Request": "true"})
    mapping.refresh_from_db()
    assert mapping.sample_size is None
    events = AuditEvent.objects.filter(workspace=workspace, verb="mapping.sample_mode").order_by("id")
    assert [e.changes for e in events] == [
        {"sample_size": [None, 100]},
        {"sample_size": [100, None]},
    ]

"""Records archived in HubSpot: the mapping's "When a record is archived" option ("Do nothing" / "Set a trait"),
through the delivery engine against the Segment sandbox over real HTTP (mirror rows made with the ORM), and
the configuration hash that decides what is resent when the option changes; the editor, the mapping page, the
test panel, the delivery run page and the record debugger for archived records."""

# ruff: noqa: F811 (pytest fixtures imported from test_views are parameters of the tests below)

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from hubsync.models import AuditEvent
from mappings.delivery import deliver
from mappings.models import DeliveryRun, DeliveryState, Mapping
from mappings.services import resync_all
from models_app.models import DataModel
from tests.mappings.conftest import accepted, contact_props, expected_traits, fill, profiles_by_user

# Fixtures and helpers of the mapping views' tests (a destination with a US space, a contacts model, a mapping).
from tests.mappings.test_views import (  # noqa: F401
    _first_contact,
    a_mapping,
    dest,
    editor_data,
    live_setup,
    model,
    text,
    us_space,
)

pytestmark = pytest.mark.django_db(transaction=True)

TRAIT = "hubspot_archived"


def message_ids(sandbox) -> set[str]:
    return {m["messageId"] for m in sandbox.messages()}


def users_sent(sandbox, before: set[str]) -> list[str]:
    """userIds of the messages the sandbox accepted that are not among the messageIds `before`."""
    return sorted(m["userId"] for m in sandbox.messages() if m["messageId"] not in before)


def set_option(mapping: Mapping, behaviour: str, trait: str | None = None) -> None:
    """What the editor saves: the behaviour, and the trait name only with "Set a trait" (see mappings.views)."""
    mapping.archived_behaviour = behaviour
    if behaviour == Mapping.ArchivedBehaviour.TRAIT:
        mapping.archived_trait = trait or TRAIT
    mapping.save(update_fields=["archived_behaviour", "archived_trait"])


def counts(run: DeliveryRun) -> dict[str, int]:
    return {k: getattr(run, k) for k in ("considered", "sent", "unchanged", "rejected", "archived", "archived_sent")}


# --- configuration hash --------------------------------------------------------------------------------------------


def test_do_nothing_keeps_the_configuration_hash_mappings_had_before_the_option(mapping):
    """Upgrading resends nothing: the default hashes exactly what the hash covered before the option existed."""
    before_the_option = {
        "action": mapping.action,
        "profile_space": mapping.profile_space_id,
        "identifiers": {k: mapping.identifier(k) for k in Mapping.IDENTIFIER_KEYS},
        "traits": [list(pair) for pair in mapping.traits],
        "options": {**Mapping.DEFAULT_OPTIONS, **mapping.options},
        "types": {},
        "generation": mapping.resync_generation,
    }
    legacy = hashlib.sha256(json.dumps(before_the_option, sort_keys=True, default=str).encode()).hexdigest()
    assert mapping.archived_behaviour == "nothing"
    assert mapping.config_hash() == legacy
    # A trait name remembered from an earlier "Set a trait" changes no message while the option is off.
    mapping.archived_trait = TRAIT
    assert mapping.config_hash() == legacy
    mapping.archived_behaviour = "trait"
    with_trait = mapping.config_hash()
    assert with_trait != legacy
    mapping.archived_trait = "deleted_in_hubspot"
    assert mapping.config_hash() not in (legacy, with_trait)


# --- the default: do nothing ---------------------------------------------------------------------------------------


def test_do_nothing_sends_nothing_for_archived_records(sandbox_base, mirror, mapping):
    fill(mirror, [1, 2, 3])
    deliver(mapping_id=mapping.pk)
    mirror.put(2, contact_props(2), archived=True)
    mirror.put(4, contact_props(4), archived=True)  # archived before any delivery

    run = deliver(mapping_id=mapping.pk)

    assert counts(run) == {"considered": 2, "sent": 0, "unchanged": 0, "rejected": 0, "archived": 2, "archived_sent": 0}
    assert accepted(sandbox_base) == 3
    assert TRAIT not in profiles_by_user(sandbox_base)["user2@example.com"]
    assert all(TRAIT not in m["payload"].get("traits", {}) for m in sandbox_base.messages())


# --- set a trait ---------------------------------------------------------------------------------------------------


def test_archive_sets_the_trait_true_and_restore_sets_it_false(sandbox_base, mirror, mapping):
    set_option(mapping, "trait")
    props = fill(mirror, [1, 2, 3])

    first = deliver(mapping_id=mapping.pk)
    assert counts(first)["sent"] == 3
    assert {u: t[TRAIT] for u, t in profiles_by_user(sandbox_base).items()} == {
        "user1@example.com": False,
        "user2@example.com": False,
        "user3@example.com": False,
    }

    # Archived in HubSpot: one message, with the identifiers and the last known traits, and the trait true.
    mirror.put(2, props[2], archived=True)
    archived = deliver(mapping_id=mapping.pk)
    assert counts(archived) == {
        "considered": 1, "sent": 1, "unchanged": 0, "rejected": 0, "archived": 0, "archived_sent": 1,
    }  # fmt: skip
    [message] = [m["payload"] for m in sandbox_base.messages() if m["payload"]["traits"][TRAIT] is True]
    assert message["userId"] == "user2@example.com"
    assert message["traits"] == {**expected_traits(props[2], 2), TRAIT: True}
    assert profiles_by_user(sandbox_base)["user2@example.com"] == {**expected_traits(props[2], 2), TRAIT: True}
    state = DeliveryState.objects.get(mapping=mapping, object_id=2)
    assert state.status == "delivered" and message["messageId"] == state.message_id

    # Nothing changed: nothing is resent, also when the whole collection is reconsidered.
    assert counts(deliver(mapping_id=mapping.pk))["considered"] == 0
    Mapping.objects.filter(pk=mapping.pk).update(watermark=0)
    reread = deliver(mapping_id=mapping.pk)
    assert (reread.considered, reread.sent, reread.unchanged) == (3, 0, 3)

    # Restored in HubSpot (within 90 days): the next sync sends false.
    mirror.put(2, props[2])
    restored = deliver(mapping_id=mapping.pk)
    assert counts(restored) == {
        "considered": 1, "sent": 1, "unchanged": 0, "rejected": 0, "archived": 0, "archived_sent": 0,
    }  # fmt: skip
    assert profiles_by_user(sandbox_base)["user2@example.com"][TRAIT] is False
    assert counts(deliver(mapping_id=mapping.pk))["sent"] == 0
    assert accepted(sandbox_base) == 5
    assert sandbox_base.counts()["discarded"] == 0


def test_switching_the_option_on_and_off_resends_exactly_the_records_whose_profile_changes(
    sandbox_base, mirror, mapping
):
    props = fill(mirror, [1, 2, 3, 4, 6])
    mirror.put(5, contact_props(5, email=""))  # no identifier: rejected whatever the option
    mirror.put(7, contact_props(7), archived=True)  # archived before this mapping ever delivered it
    deliver(mapping_id=mapping.pk)
    mirror.put(6, props[6], archived=True)  # delivered, then archived
    assert counts(deliver(mapping_id=mapping.pk))["archived"] == 1
    assert accepted(sandbox_base) == 5
    sent_before = message_ids(sandbox_base)

    # On: every message gains the trait, so every record Segment has is sent once more; the archived one that
    # was delivered says true; the one never delivered makes no profile; the rejected one stays rejected.
    set_option(mapping, "trait")
    on = deliver(mapping_id=mapping.pk)
    assert counts(on) == {"considered": 7, "sent": 5, "unchanged": 0, "rejected": 1, "archived": 1, "archived_sent": 1}
    assert users_sent(sandbox_base, sent_before) == [f"user{i}@example.com" for i in (1, 2, 3, 4, 6)]
    assert {u: t[TRAIT] for u, t in profiles_by_user(sandbox_base).items()} == {
        **{f"user{i}@example.com": False for i in (1, 2, 3, 4)},
        "user6@example.com": True,
    }
    assert counts(deliver(mapping_id=mapping.pk))["sent"] == 0

    # Off: the live records' messages lose the trait, which changes no profile (a trait left out of a message
    # stays on the profile): nothing is sent. Archived records are skipped again.
    before = accepted(sandbox_base)
    set_option(mapping, "nothing")
    mapping.refresh_from_db()
    assert mapping.archived_trait == TRAIT  # remembered: the profiles still carry it
    off = deliver(mapping_id=mapping.pk)
    assert counts(off) == {"considered": 7, "sent": 0, "unchanged": 4, "rejected": 1, "archived": 2, "archived_sent": 0}
    assert accepted(sandbox_base) == before
    assert counts(deliver(mapping_id=mapping.pk))["considered"] == 0

    # On again with the same name: the profiles hold exactly these messages already.
    set_option(mapping, "trait")
    again = deliver(mapping_id=mapping.pk)
    assert (again.sent, again.unchanged, again.rejected, again.archived) == (0, 5, 1, 1)

    # Off, and a live record really changes: it is sent without the trait; its profile keeps the last value.
    set_option(mapping, "nothing")
    deliver(mapping_id=mapping.pk)
    mirror.put(1, {**props[1], "firstname": "Renamed"})
    changed = deliver(mapping_id=mapping.pk)
    assert (changed.sent, changed.unchanged) == (1, 0)
    [last] = [m["payload"] for m in sandbox_base.messages() if m["payload"]["traits"].get("first_name") == "Renamed"]
    assert TRAIT not in last["traits"]
    assert profiles_by_user(sandbox_base)["user1@example.com"][TRAIT] is False
    assert accepted(sandbox_base) == before + 1


def test_renaming_the_trait_resends_every_record_with_the_new_name(sandbox_base, mirror, mapping):
    set_option(mapping, "trait")
    fill(mirror, [1, 2])
    mirror.put(3, contact_props(3))
    deliver(mapping_id=mapping.pk)
    mirror.put(3, contact_props(3), archived=True)
    deliver(mapping_id=mapping.pk)

    set_option(mapping, "trait", "deleted_in_hubspot")
    run = deliver(mapping_id=mapping.pk)

    assert (run.sent, run.archived_sent) == (3, 1)
    found = profiles_by_user(sandbox_base)
    assert {u: t["deleted_in_hubspot"] for u, t in found.items()} == {
        "user1@example.com": False,
        "user2@example.com": False,
        "user3@example.com": True,
    }


def test_resync_all_marks_archived_profiles_again(sandbox_base, mirror, mapping):
    """ "Resync all" forgets the delivered hashes, not that a record was delivered: an archived record this
    mapping delivered is sent again with the trait true; one it never delivered still makes no profile."""
    set_option(mapping, "trait")
    fill(mirror, [1, 2])
    deliver(mapping_id=mapping.pk)
    mirror.put(2, contact_props(2), archived=True)
    mirror.put(3, contact_props(3), archived=True)
    deliver(mapping_id=mapping.pk)

    resync_all(mapping)
    run = deliver(mapping_id=mapping.pk)

    assert counts(run) == {"considered": 3, "sent": 2, "unchanged": 0, "rejected": 0, "archived": 1, "archived_sent": 1}
    assert set(profiles_by_user(sandbox_base)) == {"user1@example.com", "user2@example.com"}
    assert profiles_by_user(sandbox_base)["user2@example.com"][TRAIT] is True


def test_group_mapping_sets_the_trait_on_the_account(sandbox_base, source, mirror, destination, space):
    companies = DataModel.objects.create(source=source, collection="companies", name="Companies", columns=["name"])
    mapping = Mapping.objects.create(
        destination=destination,
        data_model=companies,
        profile_space=space,
        action="group",
        identifiers={"user_id": "owner_email", "group_id": "id"},
        traits=[["name", "name"], ["domain", "domain"]],
        archived_behaviour="trait",
        archived_trait="deleted",
        enabled=True,
    )
    mirror.collection = "companies"
    acme = {"name": "Acme", "domain": "acme.test", "owner_email": "a@acme.test"}
    mirror.put(101, acme)
    mirror.put(102, {"name": "Globex", "domain": "globex.test", "owner_email": "g@globex.test"})
    deliver(mapping_id=mapping.pk)
    assert {a["groupId"]: a["traits"]["deleted"] for a in sandbox_base.accounts()} == {"101": False, "102": False}

    mirror.put(101, acme, archived=True)
    run = deliver(mapping_id=mapping.pk)

    assert (run.sent, run.archived_sent) == (1, 1)
    accounts = {a["groupId"]: a["traits"] for a in sandbox_base.accounts()}
    assert accounts["101"] == {"name": "Acme", "domain": "acme.test", "deleted": True}
    assert accounts["102"]["deleted"] is False
    mirror.put(101, acme)
    assert deliver(mapping_id=mapping.pk).sent == 1
    assert {a["groupId"]: a["traits"]["deleted"] for a in sandbox_base.accounts()} == {"101": False, "102": False}


@pytest.mark.parametrize("seed", [11, 2027])
def test_random_archive_and_restore_rounds_reconcile_exactly(
    sandbox_base, settings, monkeypatch, mirror, mapping, seed
):
    """Random create / update / archive / restore rounds with "Set a trait", a delivery after each with Segment
    failing a third of the requests: the sandbox's profiles always equal the current data, with the trait true
    exactly for the archived records that were delivered before; a delivery that follows no change sends
    nothing; no profile is ever made for a record archived before its first delivery."""
    import random

    from mappings.delivery import sender as deliver_module
    from sandbox.segment.models import SegmentWorkspace

    rng = random.Random(seed)
    settings.SEGMENT_MAX_ATTEMPTS = 15
    monkeypatch.setattr(deliver_module, "MAX_BATCH_MESSAGES", 7)
    SegmentWorkspace.objects.filter(is_default=True).update(error_rate=0.33)
    set_option(mapping, "trait")
    current: dict[int, dict] = {}
    archived: set[int] = set()
    delivered: set[int] = set()
    next_id = 1
    for _round in range(6):
        for _op in range(rng.randint(10, 20)):
            op = rng.random()
            if op < 0.3 or not current:
                object_id, next_id = next_id, next_id + 1
                current[object_id] = contact_props(object_id)
                if rng.random() < 0.2:
                    archived.add(object_id)  # created and archived between two syncs
            elif op < 0.6:
                object_id = rng.choice(sorted(current))
                current[object_id] = {**current[object_id], "firstname": f"F{rng.randint(0, 999)}"}
            elif op < 0.85:
                object_id = rng.choice(sorted(current))
                archived.add(object_id)
            else:
                object_id = rng.choice(sorted(current))
                archived.discard(object_id)
            mirror.put(object_id, current[object_id], archived=object_id in archived)

        run = deliver(mapping_id=mapping.pk)
        assert run.status == DeliveryRun.Status.SUCCEEDED, run.error
        delivered |= {i for i in current if i not in archived}
        expected = {
            current[i]["email"]: {**expected_traits(current[i], i), TRAIT: i in archived}
            for i in current
            if i in delivered
        }
        assert profiles_by_user(sandbox_base) == expected

        before = accepted(sandbox_base)
        quiet = deliver(mapping_id=mapping.pk)
        assert (quiet.sent, quiet.requests) == (0, 0)
        assert accepted(sandbox_base) == before
    assert sandbox_base.counts()["discarded"] == 0


# --- the mapping editor, the mapping page, the audit log ------------------------------------------------------------


def archived_section(page: str) -> str:
    """The editor's "When a record is archived" section: errors must be shown there, next to the field."""
    match = re.search(r'<section class="card editor-card" id="archived-option">(.*?)</section>', page, re.S)
    assert match, "the archived-record option is missing from the editor"
    return match.group(1)


def test_the_editor_offers_the_option_with_do_nothing_as_default(owner_client, us_space, model):
    page = text(
        owner_client.get(
            reverse("mappings:mapping_new"), {"destination": us_space.destination_id, "data_model": model.pk}
        )
    )
    section = archived_section(page)
    assert "When a record is archived in HubSpot" in section
    assert re.search(r'name="archived_behaviour" value="nothing"[^>]*checked', section)
    assert 'name="archived_trait"' in section and 'value="hubspot_archived"' in section
    assert "identifiers and its other traits as HubSpot last had them" in section
    assert "sends every record once more" in section


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"archived_trait": ""}, "Give the trait a name"),
        ({"archived_trait": "   "}, "Give the trait a name"),
        ({"archived_trait": "x" * 201}, "Trait names are at most 200 characters."),
        ({"archived_trait": "last_name"}, "The trait name 'last_name' is already mapped to the column 'lastname'"),
        ({"archived_behaviour": "delete"}, "Select a valid choice"),
    ],
)
def test_editor_validation_of_the_archived_trait(owner_client, us_space, model, overrides, message):
    data = editor_data(model, us_space, archived_behaviour="trait", archived_trait="hubspot_archived")
    data.update(overrides)
    response = owner_client.post(reverse("mappings:mapping_new"), data)
    assert response.status_code == 400
    page = text(response).replace("&#x27;", "'")
    assert message in archived_section(page)  # next to the field, not only at the top
    assert "The mapping was not saved." in page
    assert not Mapping.objects.exists()


def test_do_nothing_ignores_the_trait_field(owner_client, us_space, model):
    """With "Do nothing" the trait name is not used, so it is neither checked nor stored."""
    data = editor_data(model, us_space, archived_behaviour="nothing", archived_trait="first_name")
    assert owner_client.post(reverse("mappings:mapping_new"), data).status_code == 302
    mapping = Mapping.objects.get()
    assert (mapping.archived_behaviour, mapping.archived_trait) == ("nothing", "")


def test_setting_and_unsetting_the_trait_is_saved_audited_and_shown(owner_client, a_mapping, us_space, model):
    Mapping.objects.filter(pk=a_mapping.pk).update(enabled=True)
    url = reverse("mappings:mapping_edit", args=[a_mapping.pk])
    detail = reverse("mappings:mapping_detail", args=[a_mapping.pk])
    base = editor_data(model, us_space, name="Contacts to profiles", trait_column=["firstname"],
                       trait_name=["first_name"])  # fmt: skip
    base.pop("destination")
    before = a_mapping.config_hash()

    response = owner_client.post(url, {**base, "archived_behaviour": "trait", "archived_trait": "gone_from_crm"})
    assert response.status_code == 302
    a_mapping.refresh_from_db()
    assert (a_mapping.archived_behaviour, a_mapping.archived_trait) == ("trait", "gone_from_crm")
    assert a_mapping.config_hash() != before
    event = AuditEvent.objects.get(verb="update", object_type="mappings.Mapping")
    assert event.changes["archived_behaviour"] == ["nothing", "trait"]
    assert event.changes["archived_trait"] == ["", "gone_from_crm"]
    page = text(owner_client.get(detail))
    assert "next delivery sends every record once more" in page  # the flash message says what it costs
    assert re.search(r"When a record is archived in HubSpot:</strong>\s*set the trait <code>gone_from_crm</code>", page)
    edit_page = text(owner_client.get(url))
    assert re.search(r'name="archived_behaviour" value="trait"[^>]*checked', archived_section(edit_page))
    assert 'value="gone_from_crm"' in archived_section(edit_page)

    # Back to "Do nothing": audited; the name stays (profiles still carry it); the hash is the original again.
    response = owner_client.post(url, {**base, "archived_behaviour": "nothing", "archived_trait": "gone_from_crm"})
    assert response.status_code == 302
    a_mapping.refresh_from_db()
    assert (a_mapping.archived_behaviour, a_mapping.archived_trait) == ("nothing", "gone_from_crm")
    assert a_mapping.config_hash() == before
    latest = AuditEvent.objects.filter(verb="update").order_by("-id").first()
    assert latest.changes == {"archived_behaviour": ["trait", "nothing"]}
    page = text(owner_client.get(detail))
    assert "Archived records are no longer sent" in page
    assert "do nothing — archived records are not sent" in page and "They keep <code>gone_from_crm</code>" in page
    audit_page = text(owner_client.get(reverse("audit_log")))
    assert "archived_behaviour" in audit_page and "gone_from_crm" in audit_page


def test_viewer_cannot_change_the_option(viewer_client, a_mapping, us_space, model):
    data = editor_data(model, us_space, archived_behaviour="trait", archived_trait="hubspot_archived")
    data.pop("destination")
    response = viewer_client.post(reverse("mappings:mapping_edit", args=[a_mapping.pk]), data)
    assert response.status_code == 403
    a_mapping.refresh_from_db()
    assert a_mapping.archived_behaviour == "nothing"


# --- "Test the mapping" with an archived record ----------------------------------------------------------------------


def test_test_panel_previews_an_archived_record_under_both_options(
    owner_client, live_setup, hubspot_sandbox, segment_sandbox
):
    mapping = live_setup
    [archived_id] = hubspot_sandbox.mutate(1001, "contacts", archive=1, seed=5).archived
    url = reverse("mappings:mapping_detail", args=[mapping.pk])

    # HubSpot's search never returns archived records: the panel lists them on their own, and finds one by id.
    listed = text(owner_client.get(url, {"q": "", "archived": "1"}, HTTP_HX_REQUEST="true",
                                   HTTP_HX_TARGET="test-panel"))  # fmt: skip
    assert f"record={archived_id}" in listed and "archived</span>" in listed
    assert f"record={archived_id}" in text(owner_client.get(url, {"q": archived_id}))

    # Do nothing: no message, and the panel says why.
    page = text(owner_client.get(url, {"record": archived_id}))
    assert "archived in HubSpot</span>" in page
    assert "this mapping does nothing for archived records: a sync sends no message for it" in page
    assert 'data-testid="message-json"' not in page and "Send to Profile Space</button>" not in page

    # Set a trait, record never delivered by this mapping: what it would be, and that a sync sends nothing.
    Mapping.objects.filter(pk=mapping.pk).update(archived_behaviour="trait", archived_trait=TRAIT)
    page = text(owner_client.get(url, {"record": archived_id}))
    assert "this mapping never delivered it: a sync sends nothing for it" in page
    message = preview_json(page)
    assert message["traits"][TRAIT] is True and message["userId"]
    assert "Send to Profile Space</button>" not in page
    refused = owner_client.post(reverse("mappings:mapping_test_send", args=[mapping.pk]), {"record": archived_id})
    assert "Segment accepted" not in text(refused) and segment_sandbox.messages() == []

    # Delivered before: the exact message a sync sends, identifiers and last known traits with the trait true,
    # and it can be sent from here.
    DeliveryState.objects.create(mapping=mapping, object_id=int(archived_id), status="delivered",
                                 delivered_hash="a" * 64, message_id="m", delivered_at=timezone.now())  # fmt: skip
    page = text(owner_client.get(url, {"record": archived_id}))
    assert "A sync sends its profile this message once" in page and "The exact message a sync would send" in page
    message = preview_json(page)
    assert message["traits"][TRAIT] is True and message["traits"]["hubspot_id"] == int(archived_id)
    sent = text(owner_client.post(reverse("mappings:mapping_test_send", args=[mapping.pk]), {"record": archived_id}))
    assert "Segment accepted the message" in sent
    assert segment_sandbox.profile(message["userId"])["traits"][TRAIT] is True

    # A live record shows the trait false.
    live = _first_contact(hubspot_sandbox)
    assert preview_json(text(owner_client.get(url, {"record": live["id"]})))["traits"][TRAIT] is False


def preview_json(page: str) -> dict:
    match = re.search(r'<pre class="json" data-testid="message-json">(.*?)</pre>', page, re.S)
    assert match, "no message preview"
    return json.loads(html.unescape(match.group(1)))


# --- the delivery run page -------------------------------------------------------------------------------------------


def test_delivery_run_page_counts_archived_records_sent_and_skipped(owner_client, sandbox_base, mirror, mapping):
    set_option(mapping, "trait")
    fill(mirror, [1, 2])
    deliver(mapping_id=mapping.pk)
    mirror.put(2, contact_props(2), archived=True)
    mirror.put(3, contact_props(3), archived=True)  # never delivered: skipped
    run = deliver(mapping_id=mapping.pk)

    page = text(owner_client.get(reverse("delivery_run", args=[run.pk])))

    assert re.search(r"Sent</div><div class=\"value\">1</div>.*incl\. 1 archived in HubSpot, marked as such", page)
    assert re.search(r"Archived \(not sent\)</div><div class=\"value\">1</div>", page)
    assert f"This mapping now sets <code>{TRAIT}</code>" in page


# --- the record debugger ---------------------------------------------------------------------------------------------


def debugger(client, mirror, object_id: int) -> str:
    from sources.models import Record

    record = Record.objects.get(source=mirror.source, collection="contacts", object_id=object_id)
    page = text(client.get("/debug/records/", {"record": record.pk}))
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_debugger_explains_archived_records_under_both_options(owner_client, sandbox_base, mirror, mapping):
    fill(mirror, [1, 2, 3])
    deliver(mapping_id=mapping.pk)
    mirror.put(2, contact_props(2), archived=True)
    mirror.put(4, contact_props(4), archived=True)  # archived before any delivery
    deliver(mapping_id=mapping.pk)

    # Do nothing.
    page = debugger(owner_client, mirror, 2)
    assert "the record is archived (deleted) in HubSpot, and this mapping does nothing for archived records" in page
    assert "Before it was archived: Delivered to" in page
    assert "Would send now: nothing" in page and "this mapping does nothing for archived records)." in page

    # Set a trait, before the delivery that sends it: waiting, and what it will say.
    set_option(mapping, "trait")
    page = debugger(owner_client, mirror, 2)
    assert "Waiting for" in page and "the mapping was changed, so every record is reconsidered" in page
    assert "The record is archived (deleted) in HubSpot. This mapping sets a trait for that" in page
    assert f'"{TRAIT}": true' in page

    deliver(mapping_id=mapping.pk)
    page = debugger(owner_client, mirror, 2)
    assert "Delivered to Sandbox space" in page and "Would send now (same as delivered)" in page
    assert f"with {TRAIT} = true (a restore in HubSpot sends false again)" in page
    assert re.search(rf"{TRAIT} true archived in HubSpot\? archived", page)  # the traits table
    assert "Same as the record's current data." in page
    assert f"shows that contact 2 is archived in HubSpot: {TRAIT} = true." in page  # the summary on top

    never = debugger(owner_client, mirror, 4)
    assert "the record was archived (deleted) in HubSpot before this mapping delivered it" in never
    assert "Would send now: nothing" in never

    live = debugger(owner_client, mirror, 1)
    assert "Would send now (same as delivered)" in live and f'"{TRAIT}": false' in live

    # Back to "Do nothing": live records are not resent, and the debugger says why.
    set_option(mapping, "nothing")
    page = debugger(owner_client, mirror, 1)
    assert "Nothing will be resent: the profile already holds everything this message sets" in page
    deliver(mapping_id=mapping.pk)
    page = debugger(owner_client, mirror, 1)
    assert "Delivered to Sandbox space" in page
    assert "Nothing will be resent: the profile already holds everything this message sets" in page
    assert f"It carried {TRAIT} = false from when the mapping set that trait; the profile keeps it." in page


def test_do_nothing_still_sends_the_values_a_delivered_record_was_archived_with_once(
    owner_client, sandbox_base, mirror, mapping
):
    """A record changed in HubSpot just before its archive: the sync writes it archived with those values; with
    "Do nothing" they reach its profile once (no trait), and nothing is sent for it after that."""
    props = fill(mirror, [1, 2, 3])
    deliver(mapping_id=mapping.pk)
    from sources.models import Record

    final = {**props[2], "firstname": "Changed before the archive"}
    mirror.put(2, final, archived=True)
    mirror.put(3, props[3], archived=True)  # archived unchanged: nothing to send
    mirror.put(4, contact_props(4), archived=True)  # archived before any delivery: no profile
    # What the extraction engine writes for 2 and 4: HubSpot's final values, which the mirror never had live.
    Record.objects.filter(source=mirror.source, object_id__in=[2, 4]).update(archived_update=True)

    page = debugger(owner_client, mirror, 2)
    assert "it was changed just before the archive and its profile does not have those values yet" in page

    run = deliver(mapping_id=mapping.pk)

    assert counts(run) == {"considered": 3, "sent": 1, "unchanged": 0, "rejected": 0, "archived": 2, "archived_sent": 0}
    assert profiles_by_user(sandbox_base)["user2@example.com"] == expected_traits(final, 2)
    assert set(profiles_by_user(sandbox_base)) == {f"user{i}@example.com" for i in (1, 2, 3)}
    assert all(TRAIT not in m["payload"].get("traits", {}) for m in sandbox_base.messages())
    Mapping.objects.filter(pk=mapping.pk).update(watermark=0)
    again = deliver(mapping_id=mapping.pk)
    assert (again.sent, again.archived) == (0, 3)
    page = debugger(owner_client, mirror, 2)
    assert "this mapping does nothing for archived records" in page and "Would send now: nothing" in page

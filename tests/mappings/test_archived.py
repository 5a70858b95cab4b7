"""Records archived in HubSpot: the mapping's "When a record is archived" option ("Do nothing" / "Set a trait"),
through the delivery engine against the Segment sandbox over real HTTP (mirror rows made with the ORM), and
the configuration hash that decides what is resent when the option changes."""

from __future__ import annotations

import hashlib
import json

import pytest

from mappings.deliver import deliver, resync_all
from mappings.models import DataModel, DeliveryRun, DeliveryState, Mapping
from tests.mappings.conftest import contact_props, expected_traits

pytestmark = pytest.mark.django_db(transaction=True)

TRAIT = "hubspot_archived"


def fill(mirror, ids, **overrides) -> dict[int, dict]:
    props = {i: contact_props(i, **overrides) for i in ids}
    for i, p in props.items():
        mirror.put(i, p)
    return props


def profiles(sandbox) -> dict[str, dict]:
    return {p["userId"]: p["traits"] for p in sandbox.profiles()}


def received(sandbox) -> int:
    return sandbox.counts()["received"]


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
    return {
        k: getattr(run, k) for k in ("considered", "sent", "unchanged", "rejected", "archived", "archived_sent")
    }


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
    assert received(sandbox_base) == 3
    assert TRAIT not in profiles(sandbox_base)["user2@example.com"]
    assert all(TRAIT not in m["payload"].get("traits", {}) for m in sandbox_base.messages())


# --- set a trait ---------------------------------------------------------------------------------------------------


def test_archive_sets_the_trait_true_and_restore_sets_it_false(sandbox_base, mirror, mapping):
    set_option(mapping, "trait")
    props = fill(mirror, [1, 2, 3])

    first = deliver(mapping_id=mapping.pk)
    assert counts(first)["sent"] == 3
    assert {u: t[TRAIT] for u, t in profiles(sandbox_base).items()} == {
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
    assert profiles(sandbox_base)["user2@example.com"] == {**expected_traits(props[2], 2), TRAIT: True}
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
    assert profiles(sandbox_base)["user2@example.com"][TRAIT] is False
    assert counts(deliver(mapping_id=mapping.pk))["sent"] == 0
    assert received(sandbox_base) == 5
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
    assert received(sandbox_base) == 5
    sent_before = message_ids(sandbox_base)

    # On: every message gains the trait, so every record Segment has is sent once more; the archived one that
    # was delivered says true; the one never delivered makes no profile; the rejected one stays rejected.
    set_option(mapping, "trait")
    on = deliver(mapping_id=mapping.pk)
    assert counts(on) == {"considered": 7, "sent": 5, "unchanged": 0, "rejected": 1, "archived": 1, "archived_sent": 1}
    assert users_sent(sandbox_base, sent_before) == [f"user{i}@example.com" for i in (1, 2, 3, 4, 6)]
    assert {u: t[TRAIT] for u, t in profiles(sandbox_base).items()} == {
        **{f"user{i}@example.com": False for i in (1, 2, 3, 4)},
        "user6@example.com": True,
    }
    assert counts(deliver(mapping_id=mapping.pk))["sent"] == 0

    # Off: the live records' messages lose the trait, which changes no profile (a trait left out of a message
    # stays on the profile): nothing is sent. Archived records are skipped again.
    before = received(sandbox_base)
    set_option(mapping, "nothing")
    mapping.refresh_from_db()
    assert mapping.archived_trait == TRAIT  # remembered: the profiles still carry it
    off = deliver(mapping_id=mapping.pk)
    assert counts(off) == {"considered": 7, "sent": 0, "unchanged": 4, "rejected": 1, "archived": 2, "archived_sent": 0}
    assert received(sandbox_base) == before
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
    assert profiles(sandbox_base)["user1@example.com"][TRAIT] is False
    assert received(sandbox_base) == before + 1


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
    found = profiles(sandbox_base)
    assert {u: t["deleted_in_hubspot"] for u, t in found.items()} == {
        "user1@example.com": False,
        "user2@example.com": False,
        "user3@example.com": True,
    }


def test_resync_all_marks_archived_profiles_again(sandbox_base, mirror, mapping):
    """"Resync all" forgets the delivered hashes, not that a record was delivered: an archived record this
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
    assert set(profiles(sandbox_base)) == {"user1@example.com", "user2@example.com"}
    assert profiles(sandbox_base)["user2@example.com"][TRAIT] is True


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

    from mappings import deliver as deliver_module
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
        assert profiles(sandbox_base) == expected

        before = received(sandbox_base)
        quiet = deliver(mapping_id=mapping.pk)
        assert (quiet.sent, quiet.requests) == (0, 0)
        assert received(sandbox_base) == before
    assert sandbox_base.counts()["discarded"] == 0

"""Writes on destinations, profile spaces and mappings: keyword-only, atomic, audited. Views and tasks call
these; they never write, audit or enqueue themselves.

`request_delivery` is the one way a change here starts a delivery: after commit, and only for a mapping the
engine works for (enabled, not paused), since the engine ignores any other.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from hubsync import audit
from hubsync.fields import DecryptionError
from hubsync.models import Workspace

from .deliver import request_retry, resync_all, send_test_message, set_sample_mode
from .models import DeliveryState, Destination, Mapping, ProfileSpace
from .segment import SegmentError
from .tasks import deliver_mapping

# The retry audit event lists at most this many ids (a "retry all" of 100,000 records stays a small row).
AUDIT_IDS = 50

MAPPING_FIELDS = (
    "name",
    "data_model",
    "profile_space",
    "action",
    "identifiers",
    "traits",
    "options",
    "archived_behaviour",
    "archived_trait",
)


class MappingsError(Exception):
    """A refused change, with a message meant for the user. Nothing was changed."""


def request_delivery(*, mapping: Mapping) -> bool:
    """Enqueue a delivery of `mapping` after commit when it delivers. Returns whether one was enqueued."""
    if not mapping.delivers:
        return False
    deliver_mapping.delay_on_commit(mapping.pk)
    return True


# --- destinations -----------------------------------------------------------------------------------------


@transaction.atomic
def create_destination(*, workspace: Workspace, name: str, kind: str, actor: Any) -> Destination:
    destination = Destination.objects.create(workspace=workspace, name=name, kind=kind)
    audit.record(
        workspace=workspace,
        actor=actor,
        verb="create",
        obj=destination,
        changes={"name": destination.name, "kind": destination.kind},
    )
    return destination


@transaction.atomic
def rename_destination(*, destination: Destination, name: str, actor: Any) -> bool:
    """Returns whether the name changed (an unchanged name writes nothing)."""
    before = {"name": destination.name}
    destination.name = name
    changes = audit.diff(destination, before, ["name"])
    if not changes:
        return False
    destination.save(update_fields=["name", "updated_at"])
    audit.record(workspace=destination.workspace, actor=actor, verb="update", obj=destination, changes=changes)
    return True


@transaction.atomic
def delete_destination(*, destination: Destination, actor: Any) -> None:
    """Refused while mappings send to it: deleting them is a decision of its own."""
    if destination.mappings.exists():
        raise MappingsError("This destination still has mappings: delete them first.")
    audit.record(
        workspace=destination.workspace,
        actor=actor,
        verb="delete",
        obj=destination,
        changes={"name": destination.name, "profile_spaces": [s.name for s in destination.profile_spaces.all()]},
    )
    destination.delete()


# --- profile spaces ---------------------------------------------------------------------------------------


@transaction.atomic
def create_profile_space(
    *, destination: Destination, name: str, write_key: str, region: str, actor: Any
) -> ProfileSpace:
    space = ProfileSpace.objects.create(destination=destination, name=name, write_key=write_key, region=region)
    audit.record(
        workspace=destination.workspace,
        actor=actor,
        verb="create",
        obj=space,
        # The write key is a secret: the audit log says only that one was set.
        changes={"name": space.name, "region": space.region, "write_key": "set", "destination": destination.name},
    )
    return space


@transaction.atomic
def update_profile_space(*, space: ProfileSpace, name: str, region: str, write_key: str, actor: Any) -> bool:
    """An empty `write_key` keeps the saved one (the form never shows it). Returns whether anything changed."""
    before = {"name": space.name, "region": space.region}
    space.name, space.region = name, region
    changes: dict[str, Any] = audit.diff(space, before, list(before))
    fields = list(changes)
    if write_key:
        space.write_key = write_key
        changes["write_key"] = "replaced"
        fields.append("write_key")
    if not changes:
        return False
    space.save(update_fields=[*fields, "updated_at"])
    audit.record(workspace=space.destination.workspace, actor=actor, verb="update", obj=space, changes=changes)
    return True


@transaction.atomic
def delete_profile_space(*, space: ProfileSpace, actor: Any) -> None:
    """Refused while mappings send to it: they would have nowhere to deliver."""
    used_by = space.mappings.count()
    if used_by:
        raise MappingsError(
            f"{space.name} is used by {used_by} mapping(s): change or delete them before deleting the space."
        )
    audit.record(
        workspace=space.destination.workspace, actor=actor, verb="delete", obj=space, changes={"name": space.name}
    )
    space.delete()


# --- mappings ---------------------------------------------------------------------------------------------


def _config(mapping: Mapping, creating: bool) -> dict[str, Any]:
    return {
        "name": mapping.name,
        "data_model": None if creating else mapping.data_model_id,
        "profile_space": None if creating else mapping.profile_space_id,
        "action": mapping.action,
        "identifiers": mapping.identifiers,
        "traits": mapping.traits,
        "options": mapping.options,
        "archived_behaviour": mapping.archived_behaviour,
        "archived_trait": mapping.archived_trait,
    }


def _apply(mapping: Mapping, data: dict[str, Any]) -> None:
    mapping.name = data["name"].strip() or f"{data['data_model'].name} → {data['profile_space'].name}"
    mapping.data_model = data["data_model"]
    mapping.profile_space = data["profile_space"]
    mapping.action = data["action"]
    mapping.identifiers = data["identifiers"]
    mapping.traits = data["traits"]
    mapping.options = {**(mapping.options or {}), "empty_values": data["empty_values"]}
    if data["identifier_format"] == Mapping.IdentifierFormat.TRIM_IDENTIFIERS:
        # Stored as the option's absence: a mapping made before it keeps its configuration hash (no resend).
        mapping.options.pop(Mapping.IDENTIFIER_FORMAT_OPTION, None)
    else:
        mapping.options[Mapping.IDENTIFIER_FORMAT_OPTION] = data["identifier_format"]
    mapping.archived_behaviour = data["archived_behaviour"]
    if mapping.archived_behaviour == Mapping.ArchivedBehaviour.TRAIT:
        mapping.archived_trait = data["archived_trait"]
    # With "Do nothing" the trait name stays what it was: the profiles still carry that trait, and the engine
    # needs its name to leave live records alone (MessageBuilder.covers).


@transaction.atomic
def save_mapping(*, mapping: Mapping, data: dict[str, Any], actor: Any) -> Mapping:
    """Create (`mapping` unsaved, with its destination) or update a mapping from the editor's cleaned data."""
    creating = mapping.pk is None
    before = _config(mapping, creating)
    _apply(mapping, data)
    after = _config(mapping, creating=False)
    changes = {k: [before[k], after[k]] for k in MAPPING_FIELDS if before[k] != after[k]}
    if creating:
        mapping.enabled = False  # a new mapping starts disabled: test it first
        mapping.save()
    elif changes:
        # The delivery engine compares the configuration hash with the watermark's: the next run reconsiders
        # every record and sends exactly those whose payload changed.
        mapping.save(update_fields=[*(f for f in MAPPING_FIELDS if f in changes), "updated_at"])
    if creating or changes:
        audit.record(
            workspace=mapping.destination.workspace,
            actor=actor,
            verb="create" if creating else "update",
            obj=mapping,
            changes=after if creating else changes,
        )
    return mapping


@transaction.atomic
def set_mapping_enabled(*, mapping: Mapping, enabled: bool, actor: Any) -> bool:
    """Switch a mapping on or off. Returns whether it changed."""
    if enabled == mapping.enabled:
        return False
    Mapping.objects.filter(pk=mapping.pk).update(enabled=enabled)
    mapping.enabled = enabled
    audit.record(
        workspace=mapping.destination.workspace,
        actor=actor,
        verb="enable" if enabled else "disable",
        obj=mapping,
        changes={"enabled": [not enabled, enabled]},
    )
    if enabled and mapping.data_model.source.first_synced_at is not None:
        # The mirror already holds data: deliver it now rather than after the next source sync.
        request_delivery(mapping=mapping)
    return True


@transaction.atomic
def resync_mapping(*, mapping: Mapping, actor: Any) -> None:
    """Resend every record (see `resync_all`), at once when the mapping delivers."""
    resync_all(mapping)
    audit.record(
        workspace=mapping.destination.workspace,
        actor=actor,
        verb="resync",
        obj=mapping,
        changes={"resync_generation": mapping.resync_generation},
    )
    request_delivery(mapping=mapping)


@transaction.atomic
def delete_mapping(*, mapping: Mapping, actor: Any) -> None:
    audit.record(
        workspace=mapping.destination.workspace,
        actor=actor,
        verb="delete",
        obj=mapping,
        changes={"name": str(mapping), "data_model": mapping.data_model.name},
    )
    mapping.delete()


def send_test(*, mapping: Mapping, object_id: int, message: dict[str, Any], actor: Any) -> dict[str, Any]:
    """Send one previewed message to the mapping's Profile Space and audit the outcome; returns what the test
    panel shows. Not in a transaction: nothing is written before the request, and it must not hold one open."""
    try:
        result = send_test_message(mapping, message)
        sent: dict[str, Any] = {"ok": True, "status": result.status, "body": result.body[:2000]}
        outcome: dict[str, Any] = {"status": result.status}
    except SegmentError as exc:
        sent = {"ok": False, "status": exc.status, "body": exc.body[:2000], "error": str(exc)}
        outcome = {"status": exc.status, "error": str(exc)[:200]}
    except DecryptionError:
        sent = {"ok": False, "error": "The Profile Space's write key could not be decrypted; enter it again."}
        outcome = {"error": "decryption"}
    audit.record(
        workspace=mapping.destination.workspace,
        actor=actor,
        verb="test_send",
        obj=mapping,
        changes={"record": object_id, "profile_space": mapping.profile_space.name, **outcome},
    )
    return sent


# --- rejected records, sample mode ------------------------------------------------------------------------


@transaction.atomic
def retry_rejected(
    *,
    mapping: Mapping,
    states: QuerySet[DeliveryState],
    scope: str,
    filters: dict[str, str],
    actor: Any,
) -> int:
    """Mark the rejected `states` (a filtered `rejected_states(mapping)`) for retry; `scope` ("one", "selection"
    or "all") and the non-empty `filters` of an "all" go into the audit event. Returns how many were marked."""
    # One UPDATE whatever the count (a "retry all" of 100,000 records loads none of them).
    listed = list(states.order_by("object_id").values_list("object_id", flat=True)[:AUDIT_IDS])
    marked = request_retry(mapping=mapping, states=states)
    used = {k: v for k, v in filters.items() if v}
    audit.record(
        workspace=mapping.destination.workspace,
        actor=actor,
        verb="mapping.retry_rejected",
        obj=mapping,
        changes={
            "scope": scope,
            "records": marked,
            "object_ids": listed,
            **({"filters": used} if scope == "all" and used else {}),
        },
    )
    return marked


@transaction.atomic
def set_sample_size(*, mapping: Mapping, sample_size: int | None, actor: Any) -> bool:
    """Start sample mode with `sample_size` records, or deliver all records (None). Returns whether it changed."""
    old = mapping.sample_size
    if sample_size == old:
        return False
    set_sample_mode(mapping=mapping, sample_size=sample_size)
    audit.record(
        workspace=mapping.destination.workspace,
        actor=actor,
        verb="mapping.sample_mode",
        obj=mapping,
        changes={"sample_size": [old, sample_size]},
    )
    return True

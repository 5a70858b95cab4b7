"""Writes on destinations, profile spaces, mappings and their deliveries: keyword-only, atomic, audited. Views,
tasks and the delivery engine call these; views never write, audit or enqueue themselves.

`request_delivery` is the one way to start a delivery: after commit, and only for a mapping the engine works for
(enabled, not paused). It sends the delivery task by its name rather than by importing `mappings.tasks`: the
task runs the engine, and the engine asks for its own follow-up delivery through this module, so importing the
task here would close an import cycle (services → tasks → delivery → services).
"""

from __future__ import annotations

import enum
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from hubsync import audit
from hubsync.fields import DecryptionError
from hubsync.models import Workspace

from .models import DeliveryState, Destination, Mapping, ProfileSpace
from .segment import BatchResult, SegmentClient, SegmentError
from .selectors import rejected_states

# The delivery task (mappings.tasks.deliver_mapping) takes (mapping_id, sync_run_id=None).
DELIVER_MAPPING = "mappings.deliver_mapping"


class _Omitted(enum.Enum):
    SYNC_RUN = enum.auto()


def request_delivery(*, mapping_id: int, sync_run_id: int | None | _Omitted = _Omitted.SYNC_RUN) -> bool:
    """Enqueue a delivery of the mapping after commit, when it delivers (enabled, not paused: the engine ignores
    any other). `sync_run_id` names the sync run whose changes it delivers; the task's arguments carry it only
    when given. Returns whether a delivery was enqueued."""
    if not Mapping.objects.filter(pk=mapping_id, enabled=True, paused_reason="").exists():
        return False
    args = (mapping_id,) if sync_run_id is _Omitted.SYNC_RUN else (mapping_id, sync_run_id)
    current_app.tasks[DELIVER_MAPPING].delay_on_commit(*args)
    return True


def lock_mapping(mapping_id: int) -> None:
    """Lock the mapping's row until the transaction ends (a no-op on SQLite, where writers take turns).
    Every writer of a mapping's delivery states (the delivery checkpoint, retry, resync) takes it first, so they
    queue instead of deadlocking."""
    list(Mapping.objects.select_for_update(no_key=True).filter(pk=mapping_id).values_list("pk", flat=True))


def set_sample_mode(*, mapping: Mapping, sample_size: int | None) -> None:
    """Start small (sample_size = N) or switch to all records (None), and enqueue a delivery when enabled.
    The configuration hash changes either way, so the next delivery reconsiders every record: after switching
    to all records, exactly the ones the sample left out are sent (the rest are unchanged)."""
    Mapping.objects.filter(pk=mapping.pk).update(sample_size=sample_size, updated_at=timezone.now())
    mapping.sample_size = sample_size
    request_delivery(mapping_id=mapping.pk)


def request_retry(*, mapping: Mapping, object_ids: list[int] | None = None, states: Any = None) -> int:
    """Mark rejected records for retry: the next delivery reconsiders them (rebuilds their message from the
    mirror, sends it if valid and different from what Segment has). `object_ids` picks some, `states` a
    filtered queryset of `rejected_states(mapping)`; neither means all. Enqueues a delivery when the mapping is
    enabled (a delivery in progress picks them up or runs again). Returns how many were marked."""
    qs = states if states is not None else rejected_states(mapping)
    qs = qs.filter(mapping=mapping, status=DeliveryState.Status.REJECTED)
    if object_ids is not None:
        qs = qs.filter(object_id__in=[int(x) for x in object_ids])
    with transaction.atomic():
        lock_mapping(mapping.pk)
        marked = qs.update(status=DeliveryState.Status.RETRY, updated_at=timezone.now())
    if marked:
        request_delivery(mapping_id=mapping.pk)
    return marked


def send_test_message(mapping: Mapping, message: dict[str, Any]) -> BatchResult:
    """Send one previewed message to the mapping's Profile Space (raises SegmentError when refused). It is a
    real write: the profile changes, and the record's delivery state is left alone (the next run compares
    with what it last delivered itself)."""
    space = mapping.profile_space
    return SegmentClient(space.region, base_url=space.endpoint).send_batch(space.write_key, [message])


def resync_all(mapping: Mapping) -> None:
    """Forget what was delivered: the next delivery rebuilds and resends every record, with new messageIds
    (the resync generation is part of the payload hash) so Segment's deduplication does not drop them."""
    with transaction.atomic():
        lock_mapping(mapping.pk)
        Mapping.objects.filter(pk=mapping.pk).update(
            watermark=0, watermark_config_hash="", resync_generation=F("resync_generation") + 1
        )
        DeliveryState.objects.filter(mapping=mapping).update(delivered_hash="", updated_at=timezone.now())
    mapping.refresh_from_db(fields=["watermark", "watermark_config_hash", "resync_generation"])


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


# --- destinations -----------------------------------------------------------------------------------------


@transaction.atomic
def create_destination(
    *, workspace: Workspace, name: str, kind: str, actor: Any, space: dict[str, Any] | None = None
) -> Destination:
    """The destination and, given `space` (name, write_key, region, endpoint), the Profile Space it sends to."""
    destination = Destination.objects.create(workspace=workspace, name=name, kind=kind)
    audit.record(
        workspace=workspace,
        actor=actor,
        verb="create",
        obj=destination,
        changes={"name": destination.name, "kind": destination.kind},
    )
    if space is not None:
        create_profile_space(
            destination=destination,
            name=space["name"],
            write_key=space["write_key"],
            region=space["region"],
            endpoint=space.get("endpoint", ""),
            actor=actor,
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
    *, destination: Destination, name: str, write_key: str, region: str, actor: Any, endpoint: str = ""
) -> ProfileSpace:
    """`endpoint`: the custom region's API root (hubsync.forms checked it); ignored for every other region."""
    endpoint = endpoint if region == ProfileSpace.Region.CUSTOM else ""
    space = ProfileSpace.objects.create(
        destination=destination, name=name, write_key=write_key, region=region, endpoint=endpoint
    )
    changes = {"name": space.name, "region": space.region, "write_key": "set", "destination": destination.name}
    if endpoint:
        changes["endpoint"] = endpoint
    # The write key is a secret: the audit log says only that one was set.
    audit.record(workspace=destination.workspace, actor=actor, verb="create", obj=space, changes=changes)
    return space


@transaction.atomic
def update_profile_space(
    *, space: ProfileSpace, name: str, region: str, write_key: str, actor: Any, endpoint: str = ""
) -> bool:
    """An empty `write_key` keeps the saved one (the form never shows it). Returns whether anything changed."""
    before = {"name": space.name, "region": space.region, "endpoint": space.endpoint}
    space.name, space.region = name, region
    space.endpoint = endpoint if region == ProfileSpace.Region.CUSTOM else ""
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


def default_mapping_name(mapping: Mapping, data_model: Any) -> str:
    """A mapping left unnamed is called after its data model: the Profile Space is shown next to the name
    wherever mappings are listed, so naming it too would repeat it ("Contacts → Space → Space"). Another
    mapping of the destination with that name already gets "(2)", "(3)", ..."""
    taken = set(
        Mapping.objects.filter(destination_id=mapping.destination_id)
        .exclude(pk=mapping.pk)
        .values_list("name", flat=True)
    )
    name, n = data_model.name, 1
    while name in taken:
        n += 1
        name = f"{data_model.name} ({n})"
    return name


def _apply(mapping: Mapping, data: dict[str, Any]) -> None:
    mapping.name = data["name"].strip() or default_mapping_name(mapping, data["data_model"])
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
        request_delivery(mapping_id=mapping.pk)
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
    request_delivery(mapping_id=mapping.pk)


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


# Sample mode sends at most this many records: a first look at the profiles, not a partial sync.
MAX_SAMPLE_SIZE = 10_000
SAMPLE_SIZE_RULE = f"The sample size is a number from 1 to {MAX_SAMPLE_SIZE:,}."


@transaction.atomic
def set_sample_size(*, mapping: Mapping, sample_size: int | None, actor: Any) -> bool:
    """Start sample mode with `sample_size` records, or deliver all records (None). Returns whether it changed.
    Raises MappingsError (SAMPLE_SIZE_RULE) for a size outside 1 to MAX_SAMPLE_SIZE."""
    if sample_size is not None and not 1 <= sample_size <= MAX_SAMPLE_SIZE:
        raise MappingsError(SAMPLE_SIZE_RULE)
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

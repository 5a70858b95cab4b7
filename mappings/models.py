from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import models
from django.utils import timezone

from hubsync.fields import EncryptedTextField, RedactedTextField
from hubsync.models import Workspace
from hubsync.runbase import RunBase
from models_app.models import DataModel


class Destination(models.Model):
    class Kind(models.TextChoices):
        SEGMENT_PROFILES = "segment_profiles", "Segment Profiles"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="destinations")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=30, choices=Kind.choices, default=Kind.SEGMENT_PROFILES)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ProfileSpace(models.Model):
    """A Segment Profile Space, addressed by the write key of its source."""

    workspace_path = "destination__workspace"

    class Region(models.TextChoices):
        US = "us", "US (api.segment.io)"
        EU = "eu", "EU (events.eu1.segmentapis.com)"
        SANDBOX = "sandbox", "Sandbox (this server)"
        CUSTOM = "custom", "Custom endpoint (a proxy or custom domain)"

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="profile_spaces")
    name = models.CharField(max_length=100)
    # Encrypted at rest; never shown again after saving, never logged or passed to a task.
    write_key = EncryptedTextField()
    region = models.CharField(max_length=10, choices=Region.choices, default=Region.US)
    # With the custom region: the API root of a Segment-compatible host (a proxy or a custom domain) that takes
    # /v1/batch in place of the region's base URL. Empty for every other region.
    endpoint = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Mapping(models.Model):
    """Turns each row of a data model into a Segment identify or group message for one Profile Space."""

    workspace_path = "destination__workspace"

    class Action(models.TextChoices):
        IDENTIFY = "identify", "Identify (user profiles)"
        GROUP = "group", "Group (account profiles)"

    IDENTIFIER_KEYS = ("user_id", "anonymous_id", "group_id")
    EMPTY_NULL = "null"  # send empty values as null: clears the trait on the profile
    EMPTY_OMIT = "omit"  # leave empty values out: the profile keeps what it had
    DEFAULT_OPTIONS: dict[str, Any] = {"empty_values": EMPTY_NULL}
    DEFAULT_SAMPLE_SIZE = 100

    class ArchivedBehaviour(models.TextChoices):
        """What a delivery does with a record archived (deleted, restorable for 90 days) in HubSpot."""

        NOTHING = "nothing", "Do nothing"
        TRAIT = "trait", "Set a trait"

    DEFAULT_ARCHIVED_TRAIT = "hubspot_archived"

    class IdentifierFormat(models.TextChoices):
        """How identifier values are written before they are sent: in userId / anonymousId / groupId, and in every
        trait that reads an identifier column, so that an `email` trait always equals the User ID made from it."""

        AS_IS = "as_is", "As in HubSpot"
        TRIM = "trim", "Trim spaces"
        LOWER = "lower", "Trim spaces and lower-case"
        # What every mapping did before the option existed, and what a mapping without the option keeps doing
        # (same configuration hash, same payloads): identifiers trimmed, traits left as HubSpot has them.
        TRIM_IDENTIFIERS = "trim_ids", "Trim spaces in the identifiers only"

    IDENTIFIER_FORMAT_OPTION = "identifier_format"

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="mappings")
    # PROTECT: deleting a data model or profile space that a mapping uses is refused (the UI says why).
    data_model = models.ForeignKey(DataModel, on_delete=models.PROTECT, related_name="mappings")
    profile_space = models.ForeignKey(ProfileSpace, on_delete=models.PROTECT, related_name="mappings")
    name = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.IDENTIFY)
    # {"user_id": column | None, "anonymous_id": column | None, "group_id": column | None}
    identifiers = models.JSONField(default=dict, blank=True)
    # [[column, trait_name], ...] in display order
    traits = models.JSONField(default=list, blank=True)
    # {"empty_values": "null" | "omit", "identifier_format": IdentifierFormat (absent: "trim_ids")}
    options = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=False)
    # Sample mode ("start small"): only the first N records of the collection (the N lowest HubSpot ids; archived
    # ones count too, so archiving a record never pulls a new one into the sample) are delivered; None = all.
    # Switching to all records changes the configuration hash, so the next delivery reconsiders every record and
    # sends exactly the ones the sample left out (the sampled ones are unchanged and skipped).
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    # "When a record is archived in HubSpot": nothing (archived records are not sent) or trait (`archived_trait`
    # is sent true for archived records, with their identifiers and last known traits, and false for live ones).
    archived_behaviour = models.CharField(
        max_length=10, choices=ArchivedBehaviour.choices, default=ArchivedBehaviour.NOTHING
    )
    # The trait "Set a trait" sends. Kept when the option goes back to "Do nothing": the profiles still carry it,
    # and the engine needs its name to see that a live record delivered with `<trait>: false` needs no resend
    # just because the message lost that trait (see MessageBuilder.covers).
    archived_trait = models.CharField(max_length=200, blank=True)

    # Delivery bookkeeping (written by mappings.delivery and mappings.services only).
    # Every mirror row with change_seq <= watermark is resolved (delivered, unchanged, rejected, archived or outside
    # the sample; DeliveryStates with status "retry" are the exception: the next run reconsiders them) under
    # the configuration whose hash is watermark_config_hash. When the current configuration hash differs (the
    # mapping or the mapped properties' types were edited), the next run starts again from 0 and resends exactly
    # the records whose payload hash changed.
    watermark = models.BigIntegerField(default=0)
    watermark_config_hash = models.CharField(max_length=64, blank=True)
    # Bumped by "Resync all": part of every payload hash, so each message gets a new messageId and is not
    # dropped by Segment's 24-hour deduplication.
    resync_generation = models.PositiveIntegerField(default=0)
    # Set when a delivery was asked for while another one was running; the running one re-enqueues itself at
    # the end, so changes merged during a long delivery are never left waiting for the next sync.
    delivery_requested = models.BooleanField(default=False)
    last_run = models.ForeignKey("DeliveryRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Set while the mapping is held back although enabled ("drift": a property it uses was deleted, renamed or
    # retyped in HubSpot, see mappings.drift). A paused mapping delivers nothing until it is fixed or resumed.
    paused_reason = models.CharField(max_length=20, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    PAUSED_DRIFT = "drift"

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.get_action_display()} from {self.data_model}"

    @property
    def paused(self) -> bool:
        return bool(self.paused_reason)

    @property
    def delivers(self) -> bool:
        """Enabled and not paused: the only mappings the delivery engine works for."""
        return self.enabled and not self.paused_reason

    @property
    def empty_values(self) -> str:
        return (self.options or {}).get("empty_values", self.EMPTY_NULL)

    @property
    def identifier_format(self) -> str:
        """The IdentifierFormat; absent from `options` for mappings made before the option (kept that way until
        the user picks another one, so their configuration hash and payloads stay as they were)."""
        return (self.options or {}).get(self.IDENTIFIER_FORMAT_OPTION, self.IdentifierFormat.TRIM_IDENTIFIERS)

    @property
    def sets_archived_trait(self) -> bool:
        return self.archived_behaviour == self.ArchivedBehaviour.TRAIT and bool(self.archived_trait)

    def identifier(self, key: str) -> str | None:
        return (self.identifiers or {}).get(key) or None

    def used_columns(self) -> list[str]:
        cols = [c for c in (self.identifier(k) for k in self.IDENTIFIER_KEYS) if c]
        cols += [column for column, _trait in self.traits or []]
        return list(dict.fromkeys(cols))

    def config_hash(self, column_types: dict[str, Any] | None = None) -> str:
        """Hash of everything that decides a message's content: action, space, identifiers, traits, options, the
        archived-record behaviour and the HubSpot types of the used columns (a type change changes the converted
        values)."""
        config = {
            "action": self.action,
            "profile_space": self.profile_space_id,
            "identifiers": {k: self.identifier(k) for k in self.IDENTIFIER_KEYS},
            "traits": [list(pair) for pair in self.traits or []],
            "options": {**self.DEFAULT_OPTIONS, **(self.options or {})},
            "types": column_types or {},
            "generation": self.resync_generation,
        }
        if self.sample_size is not None:
            # Only when set: mappings that never used sample mode keep the hash (and the watermark) they had.
            config["sample"] = self.sample_size
        if self.sets_archived_trait:
            # Only when set, likewise: "Do nothing" is what every mapping did before the option existed.
            config["archived_trait"] = self.archived_trait
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


class DeliveryState(models.Model):
    """Per record and mapping: what Segment last accepted (delivered_hash), and the latest outcome."""

    class Status(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        REJECTED = "rejected", "Rejected"
        PENDING = "pending", "Pending"
        # A rejected record the user asked to retry: the next delivery reconsiders it (mappings.delivery).
        RETRY = "retry", "Retry requested"

    mapping = models.ForeignKey(Mapping, on_delete=models.CASCADE, related_name="states")
    object_id = models.BigIntegerField()
    # Hash of the payload Segment accepted last; only written after Segment accepted the batch.
    delivered_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = RedactedTextField(blank=True)
    message_id = models.CharField(max_length=100, blank=True)
    # The messageId of the message Segment accepted last (message_id also names a message still to be resent). The
    # next message's id is derived from it, so that no step of a record's history repeats an id Segment may
    # still hold: A → B → A → B within 24 hours would otherwise give the second B the first one's id, and
    # Segment would drop it. Null for states recorded before it existed (their next id is made as before).
    # (Nullable without a default: SQLite adds such a column in place, where any other one rebuilds the table and
    # loses the counter triggers on it.)
    delivered_message_id = models.CharField(max_length=100, null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The message as built, kept for rejected records so the UI can show what was wrong (None otherwise:
    # storing every delivered payload would double the database for no reader).
    last_payload = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mapping", "object_id"], name="unique_delivery_state")]
        indexes = [models.Index(fields=["mapping", "status"], name="deliverystate_status")]

    def __str__(self) -> str:
        return f"{self.mapping_id}/{self.object_id}: {self.status}"


class DeliveryStateCount(models.Model):
    """DeliveryStates per mapping and status, kept by database triggers on mappings_deliverystate
    (hubsync.counters): the dashboard and the mapping page read these instead of counting a million states."""

    workspace_path = "mapping__destination__workspace"

    mapping = models.ForeignKey(Mapping, on_delete=models.CASCADE, related_name="state_counts", db_index=False)
    status = models.CharField(max_length=10, choices=DeliveryState.Status.choices)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mapping", "status"], name="unique_delivery_state_count")]

    def __str__(self) -> str:
        return f"{self.mapping_id}/{self.status}: {self.n}"

    @classmethod
    def for_mappings(cls, mapping_ids) -> dict[int, dict[str, int]]:
        """{mapping_id: {status: n}} in one query (statuses with no state are absent)."""
        result: dict[int, dict[str, int]] = {pk: {} for pk in mapping_ids}
        for mapping_id, status, n in cls.objects.filter(mapping_id__in=list(result)).values_list(
            "mapping_id", "status", "n"
        ):
            result[mapping_id][status] = n
        return result


class DeliveryRun(RunBase):
    workspace_path = "mapping__destination__workspace"

    mapping = models.ForeignKey(Mapping, on_delete=models.CASCADE, related_name="runs")
    sync_run = models.ForeignKey(
        "sources.SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="delivery_runs"
    )
    considered = models.IntegerField(default=0)  # mirror rows read past the watermark
    sent = models.IntegerField(default=0)  # messages Segment accepted
    unchanged = models.IntegerField(default=0)  # payload equal to the delivered one: not sent
    rejected = models.IntegerField(default=0)  # invalid for Segment: reason in DeliveryState
    failed = models.IntegerField(default=0)  # in batches Segment did not accept: resent next run
    archived = models.IntegerField(default=0)  # archived in HubSpot: not sent
    # Archived in HubSpot and sent all the same, with the mapping's archived trait true ("Set a trait"); part of
    # `sent`, counted apart so the run page can say how many profiles learned that their record is gone.
    archived_sent = models.IntegerField(default=0)
    outside_sample = models.IntegerField(default=0)  # sample mode: beyond the first N records, not sent
    batches = models.IntegerField(default=0)  # batches Segment accepted
    requests = models.IntegerField(default=0)  # HTTP requests, retries included
    retries = models.IntegerField(default=0)
    watermark_from = models.BigIntegerField(default=0)
    watermark_to = models.BigIntegerField(default=0)
    # Object ids whose outcome is not recorded yet although Segment may have accepted them: batches in flight or
    # about to be sent, written *before* each send. A run that ends clears it; when its worker is killed, the next
    # run resends these records even where their payload equals the delivered hash (mappings.delivery).
    unconfirmed = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One delivery at a time per mapping, decided by the database.
            models.UniqueConstraint(
                fields=["mapping"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_delivery_per_mapping",
            )
        ]
        indexes = [models.Index(fields=["mapping", "-created_at"], name="deliveryrun_mapping_recent")]

    def __str__(self) -> str:
        return f"Delivery {self.pk} of {self.mapping}"


class MappingIssue(models.Model):
    """Schema drift that breaks a mapping: a property the mapping uses was deleted, renamed or changed type in
    HubSpot. Open until fixed (column removed or re-pointed), dismissed, or the property comes back."""

    workspace_path = "mapping__destination__workspace"
    # Not a column: the drift panel sets the one-click fixes, (action, button label), for its template.
    fixes: list[tuple[str, str]]

    class Kind(models.TextChoices):
        DELETED = "deleted", "Property deleted"
        RENAMED = "renamed", "Property renamed"
        TYPE_CHANGED = "type_changed", "Type changed"

    mapping = models.ForeignKey(Mapping, on_delete=models.CASCADE, related_name="issues")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    property_name = models.CharField(max_length=200)  # the property name the mapping / model uses
    new_property = models.CharField(max_length=200, blank=True)  # the renamed property's new name
    # {"collection", "old": {label, type, fieldType}, "new": {...} | None, "uses": ["model column", "trait x"]}
    details = models.JSONField(default=dict, blank=True)
    paused = models.BooleanField(default=False)  # this issue paused the mapping
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=20, blank=True)  # removed | repointed | dismissed | restored

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["mapping", "property_name"], condition=models.Q(resolved_at__isnull=True), name="one_open_issue"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.property_name}"

    @property
    def summary(self) -> str:
        old = self.details.get("old") or {}
        new = self.details.get("new") or {}
        label = old.get("label") or self.property_name
        if self.kind == self.Kind.DELETED:
            return f"HubSpot property “{label}” ({self.property_name}) was deleted."
        if self.kind == self.Kind.RENAMED:
            return f"HubSpot property “{label}” was renamed from {self.property_name} to {self.new_property}."
        return (
            f"HubSpot property “{label}” ({self.property_name}) changed type from "
            f"{old.get('type')} to {new.get('type')}."
        )

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models.fields.json import KT
from django.db.models.functions import Lower
from django.utils import timezone

from hubsync.fields import EncryptedTextField, RedactedTextField
from hubsync.models import Workspace
from hubsync.runbase import RunBase

SYNC_INTERVAL_CHOICES = [
    (timedelta(minutes=15), "Every 15 minutes"),
    (timedelta(minutes=30), "Every 30 minutes"),
    (timedelta(hours=1), "Every hour"),
    (timedelta(hours=2), "Every 2 hours"),
    (timedelta(hours=3), "Every 3 hours"),
    (timedelta(hours=6), "Every 6 hours"),
    (timedelta(hours=12), "Every 12 hours"),
    (timedelta(hours=24), "Every 24 hours"),
]


class Source(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "Connected"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=100)
    label = models.CharField(max_length=100, blank=True)
    hub_id = models.BigIntegerField(null=True, blank=True)
    hub_domain = models.CharField(max_length=255, blank=True)
    installing_user = models.CharField(max_length=255, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    # OAuth tokens: encrypted at rest, never logged or passed to tasks.
    token = EncryptedTextField(blank=True, help_text="OAuth refresh token")
    access_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    schema_name = models.SlugField(max_length=63)
    start_date = models.DateField(null=True, blank=True, help_text="Blank = full history")
    sync_interval = models.DurationField(default=timedelta(hours=3))
    enabled = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OK)
    status_detail = RedactedTextField(blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True, db_index=True)
    first_synced_at = models.DateTimeField(null=True, blank=True)
    # Near-real-time updates from HubSpot's webhooks (sources.live): on by default, so a source follows its
    # account's events as soon as the HubSpot app sends them; off = events for this source are ignored.
    live_enabled = models.BooleanField(default=True, db_default=True)
    # Latest run copied onto the parent for cheap dashboards.
    last_run = models.ForeignKey("SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "schema_name"], name="unique_schema_name_per_workspace")
        ]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class SourceCollection(models.Model):
    workspace_path = "source__workspace"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="collections")
    collection = models.CharField(max_length=50)  # contacts, companies, deals, tickets, ...
    selected = models.BooleanField(default=True)
    # Extraction cursor, committed with each page; its JSON shapes are listed in sources/extraction/cursor.py.
    cursor = models.JSONField(default=dict, blank=True)
    # Property schema as last discovered: {name: {label, type, fieldType, groupName, ...}}.
    properties = models.JSONField(default=dict, blank=True)
    schema_changes = models.JSONField(default=list, blank=True)
    schema_discovered_at = models.DateTimeField(null=True, blank=True)
    last_error = RedactedTextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "collection"], name="unique_source_collection")]
        ordering = ["collection"]

    def __str__(self) -> str:
        return f"{self.source} / {self.collection}"


class Record(models.Model):
    """The mirror: one row per HubSpot object. change_seq grows on every real change."""

    workspace_path = "source__workspace"

    # No index of its own: unique_record starts with source_id (fewer indexes = faster page upserts).
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="records", db_index=False)
    collection = models.CharField(max_length=50)
    object_id = models.BigIntegerField()  # HubSpot ids are numeric strings: compare as numbers
    properties = models.JSONField(default=dict)
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    archived = models.BooleanField(default=False)
    # Archived with values the mirror never had while the record was live: HubSpot's final values, read at the
    # archive, differ from the last live ones (an update made just before the archive, which no incremental read
    # sees). "Do nothing" mappings still send those to a profile they delivered the record to, once. A database
    # default: rows written by raw SQL without the column are plain rows.
    archived_update = models.BooleanField(default=False, db_default=False)
    content_hash = models.CharField(max_length=64)
    change_seq = models.BigIntegerField()
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "collection", "object_id"], name="unique_record")]
        # (source, change_seq), not (source, collection, change_seq): an index sharing unique_record's
        # (source, collection) prefix lures PostgreSQL, on fresh statistics during a big first load, into
        # answering the per-page "which of these ids do we have" lookup by scanning the whole collection.
        # Readers of changes filter the collection on top of this index.
        indexes = [
            models.Index(fields=["source", "change_seq"], name="record_source_change_seq"),
            # The record debugger's lookup by email (monitoring.debugger.email_lookup uses this exact expression).
            # A functional index rather than a denormalised column: nothing for the engine to fill in, nothing
            # to backfill, and the key is only computed on rows that are written anyway.
            models.Index(Lower(KT("properties__email")), name="record_email"),
        ]

    def __str__(self) -> str:
        return f"{self.collection}/{self.object_id}"


class SyncRun(RunBase):
    workspace_path = "source__workspace"

    class Trigger(models.TextChoices):
        FIRST = "first", "First sync"
        SCHEDULED = "scheduled", "Scheduled"
        MANUAL = "manual", "Sync now"
        FULL = "full", "Full sync"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    worker = models.CharField(max_length=200, blank=True)
    # {collection: {"read": n, "new": n, "updated": n, "unchanged": n, "archived": n, "deleted": n, "error": "...",
    #  "notes": ["..."] (optional: e.g. why a full read's check for deleted records stopped),
    #  "merged": n (optional: ids HubSpot merged into another record, removed from the mirror)}}
    counts = models.JSONField(default=dict, blank=True)
    api_calls = models.IntegerField(default=0)
    retries = models.IntegerField(default=0)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    # What the run asked of the account's rate-limit budget (sources.hubspot.meter): its busiest rolling 10 s of
    # list/read/batch requests and busiest second of search requests, the 429s met, the requests in flight at the
    # last heartbeat, and the limiter's budget for the account (None: no limit configured).
    peak_requests_10s = models.IntegerField(default=0, db_default=0)
    peak_search_1s = models.IntegerField(default=0, db_default=0)
    rate_limited = models.IntegerField(default=0, db_default=0)
    requests_in_flight = models.IntegerField(default=0, db_default=0)
    budget_10s = models.IntegerField(null=True, blank=True)
    search_budget_1s = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One run at a time per source, decided by the database.
            models.UniqueConstraint(
                fields=["source"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_run_per_source",
            )
        ]
        indexes = [models.Index(fields=["source", "-created_at"], name="syncrun_source_recent")]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.source}"


class ReadPartition(models.Model):
    """One id range (`low`, `high`] of a collection's partitioned full read (sources.extraction.partitions): its
    read position, its deletion check's progress, who reads it, and what it counted. Like the collection's cursor
    it belongs to the collection's read, not to a run: a run that is killed and taken over resumes every partition
    where it stopped. The rows go when the read's last partition is done."""

    class Via(models.TextChoices):
        LIST = "list", "List"
        SEARCH = "search", "Search"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    collection = models.ForeignKey(SourceCollection, on_delete=models.CASCADE, related_name="partitions")
    index = models.IntegerField()
    low = models.BigIntegerField()  # exclusive
    high = models.BigIntegerField(null=True, blank=True)  # inclusive; None = no upper end (the last partition)
    via = models.CharField(max_length=10, choices=Via.choices)
    estimate = models.BigIntegerField(default=0)  # records in the range when it was planned
    # The read position: HubSpot's list `after` token (via list), or the last id read (via search; keyset).
    after = models.CharField(max_length=100, blank=True, default="")
    last_id = models.BigIntegerField(default=0)
    verified = models.BooleanField(default=False)  # a list partition's first page was checked against `low`
    # The deletion check's progress (sources.extraction.deletions): ids up to `covered` were checked; `pending`
    # holds the candidates not confirmed yet. covered None: this partition does not check (the order broke).
    covered = models.BigIntegerField(null=True, blank=True)
    pending = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # What this partition's pages did: the keys of SyncRun.counts per collection (read, new, updated, ...).
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "index"], name="unique_read_partition")]
        ordering = ["collection", "index"]

    def __str__(self) -> str:
        return f"{self.collection_id}#{self.index} ({self.low}, {self.high}]"


class RecordCount(models.Model):
    """Records in the mirror per source and collection, kept by database triggers on sources_record
    (hubsync.counters): the dashboard reads these few rows instead of counting a million."""

    workspace_path = "source__workspace"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="record_counts", db_index=False)
    collection = models.CharField(max_length=50)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "collection"], name="unique_record_count")]

    def __str__(self) -> str:
        return f"{self.source_id}/{self.collection}: {self.n}"

    @classmethod
    def for_sources(cls, source_ids) -> dict[int, int]:
        """{source_id: records in its mirror} in one query."""
        result = dict.fromkeys(source_ids, 0)
        for source_id, n in cls.objects.filter(source_id__in=list(result)).values_list("source_id", "n"):
            result[source_id] += n
        return result


class ChangeCounter(models.Model):
    """The per-source change_seq allocator. A row of its own (not a Source field) so that a full
    `Source.save()` elsewhere can never write back a stale value and make change_seq go backwards.

    The extraction engine allocates a block per page with `UPDATE ... SET value = value + n` inside the page's
    transaction: the row lock is held until commit, so pages commit in the order of their sequence numbers and a
    reader that saw change_seq N has already seen every change below N."""

    source = models.OneToOneField(Source, on_delete=models.CASCADE, related_name="change_counter")
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.source_id}: {self.value}"


class RecordChange(models.Model):
    """History of the mirror: one row per real change of an existing record that a sync saw (written by the
    extraction engine through sources.history, one bulk INSERT per page). New records have no row: the mirror row
    is their first version. Kept HUBSYNC_RECORD_HISTORY_DAYS (sources.history.prune)."""

    workspace_path = "source__workspace"

    # No index of its own: recordchange_record starts with source_id.
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="record_changes", db_index=False)
    collection = models.CharField(max_length=50)
    object_id = models.BigIntegerField()
    change_seq = models.BigIntegerField()
    # The sync run that saw it; a plain id, not a foreign key: no lookup per inserted row, and deleting old runs
    # never has to touch the history.
    run_id = models.BigIntegerField(null=True, blank=True)
    # {property: [old, new]} (None = absent); values longer than sources.history.VALUE_CHARS are cut.
    changes = models.JSONField(default=dict, blank=True)
    archived = models.BooleanField(null=True, blank=True)  # True: archived by this change, False: restored
    truncated = models.BooleanField(default=False)
    previous_updated_at = models.DateTimeField(null=True, blank=True)  # HubSpot's updatedAt before the change
    updated_at = models.DateTimeField(null=True, blank=True)  # and after it
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["source", "collection", "object_id", "change_seq"], name="recordchange_record")]

    def __str__(self) -> str:
        return f"{self.collection}/{self.object_id} #{self.change_seq}"


class MergedRecord(models.Model):
    """A record HubSpot merged into another one (a merge of two contacts or companies): its id now answers with
    the merged record, under that record's id, and appears in no list. The extraction engine writes one row per
    merged-away id it finds (the merged record's `hs_merged_object_ids`, or a read of the id answered under
    another id) and removes that id's mirror row; the record debugger reads it to say what became of the id."""

    workspace_path = "source__workspace"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="merged_records", db_index=False)
    collection = models.CharField(max_length=50)
    object_id = models.BigIntegerField()
    merged_into = models.BigIntegerField()
    merged_at = models.DateTimeField(default=timezone.now)  # when a sync found it (HubSpot does not say when)
    run_id = models.BigIntegerField(null=True, blank=True)  # the sync run that found it (a plain id, as above)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "collection", "object_id"], name="unique_merged_record")
        ]

    def __str__(self) -> str:
        return f"{self.collection}/{self.object_id} -> {self.merged_into}"


class LiveEvent(models.Model):
    """One HubSpot webhook event, routed to one source (sources.live): what changed, never the values (the record
    read from HubSpot is the truth). Unique per (source, HubSpot's eventId): a retried or duplicated event is
    stored once. Pending events are claimed and applied by the live task; applied ones stay a while for the lag
    figures (pruned after HUBSYNC_LIVE_EVENT_DAYS)."""

    workspace_path = "source__workspace"

    class Kind(models.TextChoices):
        CREATION = "creation", "Created"
        CHANGE = "change", "Property changed"
        DELETION = "deletion", "Deleted"
        PRIVACY_DELETION = "privacy_deletion", "Privacy deletion"
        MERGE = "merge", "Merged"
        RESTORE = "restore", "Restored"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        CLAIMED = "claimed", "Being applied"
        APPLIED = "applied", "Applied"

    # No index of its own: unique_live_event starts with source_id.
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="live_events", db_index=False)
    event_id = models.BigIntegerField()
    collection = models.CharField(max_length=50)
    object_id = models.BigIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Other ids the event names (a merge: the primary, the merged-away and the new record's ids).
    related = models.JSONField(default=list, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    attempt = models.IntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)  # committed to the mirror
    delivered_at = models.DateTimeField(null=True, blank=True)  # accepted by Segment (when a delivery says so)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="unique_live_event")]
        indexes = [
            models.Index(fields=["source", "collection", "state"], name="live_event_pending"),
            models.Index(fields=["source", "applied_at"], name="live_event_applied"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.collection}/{self.object_id} ({self.event_id})"


class LiveCounter(models.Model):
    """A source's webhook figures for its page: events received, duplicates, applied; the last event's time.
    A row of its own (not Source fields): the receiver bumps it with UPDATE ... = col + n, and a full
    Source.save() elsewhere must never write back stale counts."""

    source = models.OneToOneField(Source, on_delete=models.CASCADE, related_name="live_counter")
    received = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    applied = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True, blank=True)  # when the last event arrived
    last_occurred_at = models.DateTimeField(null=True, blank=True)  # HubSpot's occurredAt of the newest event
    last_applied_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.source_id}: {self.received} received"

"""Sandbox HubSpot state.

Generated records are never stored: a portal holds only its sizes and seed, and records are computed from their
index (sandbox/hubspot/data.py). Only what changed after generation lives here: `RecordChange` rows for created,
edited, archived and purged (permanently deleted) records, `CustomProperty` rows for added or deleted custom
properties, plus the OAuth codes / refresh tokens and the singleton `Knobs` row.
"""

from __future__ import annotations

from django.db import models

# Generated data "ends" here unless a seed run says otherwise, so a fresh install is identical everywhere.
DEFAULT_GENERATED_AT_MS = 1767225600000  # 2026-01-01T00:00:00Z


class Portal(models.Model):
    """A sandbox HubSpot account ("portal", hub)."""

    hub_id = models.PositiveBigIntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=200)
    user_email = models.CharField(max_length=200)
    user_id = models.PositiveBigIntegerField(default=0)
    time_zone = models.CharField(max_length=64, default="US/Eastern")
    currency = models.CharField(max_length=3, default="USD")
    seed = models.BigIntegerField(default=1)
    contacts = models.PositiveIntegerField(default=0)
    companies = models.PositiveIntegerField(default=0)
    deals = models.PositiveIntegerField(default=0)
    tickets = models.PositiveIntegerField(default=0)
    # The instant the generated data set was "exported": every generated timestamp is before it.
    generated_at_ms = models.BigIntegerField(default=DEFAULT_GENERATED_AT_MS)
    # Bumped on every schema change (custom property added or deleted) so per-process caches notice.
    schema_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hub_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hub_id})"

    def size(self, object_type: str) -> int:
        return int(getattr(self, object_type, 0) or 0)


class CustomProperty(models.Model):
    """A custom property added after generation, or a tombstone (deleted=True) for a deleted one."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="custom_properties")
    object_type = models.CharField(max_length=32)
    name = models.CharField(max_length=100)
    label = models.CharField(max_length=200)
    type = models.CharField(max_length=32, default="string")
    field_type = models.CharField(max_length=32, default="text")
    group_name = models.CharField(max_length=100, default="custom_properties")
    description = models.TextField(blank=True, default="")
    options = models.JSONField(default=list, blank=True)
    deleted = models.BooleanField(default=False)
    created_ms = models.BigIntegerField()
    updated_ms = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "object_type", "name"], name="sbx_hs_customprop_unique")
        ]


class RecordChange(models.Model):
    """The overlay on generated data: a created record (index is NULL), or an edited / archived generated one.

    A record merged into another one is a purged row with `merged_into` set (see records.read_many).

    A purged record (HubSpot's "permanently delete", a GDPR delete, or an archived record past HubSpot's 90-day
    recycle bin) keeps its row as a tombstone: `purged` set and its properties emptied. The row must stay,
    because a generated record has no other storage: without it the generator would bring the record back. Every
    reader treats a purged row as "this id does not exist" (not in lists, archived lists, search or reads)."""

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="changes")
    object_type = models.CharField(max_length=32)
    object_id = models.BigIntegerField()
    index = models.IntegerField(null=True, blank=True)  # the generated record this overrides
    properties = models.JSONField(default=dict)  # overrides; a None value clears a property
    created_ms = models.BigIntegerField()
    updated_ms = models.BigIntegerField()
    archived = models.BooleanField(default=False)
    archived_ms = models.BigIntegerField(null=True, blank=True)
    purged = models.BooleanField(default=False)
    purged_ms = models.BigIntegerField(null=True, blank=True)
    # Merged away into this record (HubSpot's merge): the row is also `purged` (no list, archived list or search
    # shows it), but reads of this id answer with the record it was merged into, under that record's id.
    merged_into = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "object_type", "object_id"], name="sbx_hs_change_unique")
        ]
        indexes = [
            models.Index(fields=["portal", "object_type", "archived", "updated_ms"], name="sbx_hs_change_upd"),
            models.Index(fields=["portal", "object_type", "index"], name="sbx_hs_change_idx"),
        ]


class AuthCode(models.Model):
    code = models.CharField(max_length=100, unique=True)
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE)
    client_id = models.CharField(max_length=200)
    redirect_uri = models.TextField()
    scopes = models.JSONField(default=list)
    code_challenge = models.CharField(max_length=200, blank=True, default="")
    code_challenge_method = models.CharField(max_length=10, blank=True, default="")
    created_ms = models.BigIntegerField()
    used = models.BooleanField(default=False)


class RefreshToken(models.Model):
    token = models.CharField(max_length=200, unique=True)
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE)
    client_id = models.CharField(max_length=200)
    scopes = models.JSONField(default=list)
    created_ms = models.BigIntegerField()
    revoked = models.BooleanField(default=False)


class Knobs(models.Model):
    """Realism knobs: one row (pk=1). Read on every sandbox API request, so changes apply at once."""

    rate_limits = models.BooleanField(default=True)
    rate_limit_max = models.PositiveIntegerField(default=110)
    rate_limit_interval_ms = models.PositiveIntegerField(default=10000)
    search_rate_limit = models.PositiveIntegerField(default=5)  # per second
    latency_ms = models.PositiveIntegerField(default=0)
    error_rate = models.FloatField(default=0.0)  # share of API calls answered 502/503/504
    reset_rate = models.FloatField(default=0.0)  # share of API calls whose connection is dropped
    # Deterministic faults for tests: the next N API calls fail with this status ("reset" drops the socket).
    fail_next = models.PositiveIntegerField(default=0)
    fail_next_status = models.CharField(max_length=10, default="503")
    search_lag_seconds = models.FloatField(default=0.0)
    access_token_lifetime = models.IntegerField(default=1800)
    # HubSpot documents the list's `after` as opaque: with this on, the list pages carry opaque tokens and an
    # `after` that is not one of them (e.g. an id) is not honoured: the list starts from the first record.
    opaque_list_after = models.BooleanField(default=False)

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> Knobs:
        obj = cls.objects.filter(pk=1).first()
        if obj is None:
            obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class WebhookSubscription(models.Model):
    """A portal's webhooks (HubSpot: the app's target URL and its CRM object subscriptions; here per portal, so a
    test can point each portal somewhere else). Portals without a row send to this server's receiver when
    settings.SANDBOX_WEBHOOKS is on (sandbox.hubspot.webhooks.subscription). The knobs make delivery as messy as
    HubSpot's can be."""

    portal = models.OneToOneField(Portal, on_delete=models.CASCADE, primary_key=True, related_name="webhooks")
    active = models.BooleanField(default=True)
    target_url = models.CharField(max_length=500)
    max_batch = models.PositiveIntegerField(default=100)  # events per POST (HubSpot: up to 100)
    delay_ms = models.PositiveIntegerField(default=0)  # held this long before the first attempt
    duplicate_rate = models.FloatField(default=0.0)  # share of events sent twice (same eventId)
    shuffle = models.BooleanField(default=False)  # out of order: due events picked and sent in random order
    paused = models.BooleanField(default=False)  # hold everything (an outage); unpausing sends it as a burst
    # The next N deliveries count as failed whatever the receiver answered (a timeout after it stored them):
    # HubSpot retries them, so the receiver sees the same events again.
    fail_next = models.PositiveIntegerField(default=0)
    retry_base_ms = models.PositiveIntegerField(default=5000)  # first retry after this, doubling, capped
    max_attempts = models.PositiveIntegerField(default=10)
    # Requests in flight at once (HubSpot's maxConcurrentRequests, default 10) from the background sender.
    concurrency = models.PositiveIntegerField(default=10)


class WebhookEvent(models.Model):
    """The outbox: one event of one portal, written in the mutation's transaction and POSTed after commit by the
    sender (sandbox.hubspot.webhooks), retried until a 2xx or max_attempts. Its pk is HubSpot's eventId."""

    id = models.BigAutoField(primary_key=True)
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="webhook_events")
    body = models.JSONField()  # the event as sent, without attemptNumber
    copies = models.PositiveSmallIntegerField(default=1)  # 2: sent twice in its batch (a duplicate)
    attempt = models.PositiveIntegerField(default=0)  # attempts made (attemptNumber of the next one)
    next_ms = models.BigIntegerField()  # due at
    delivered_ms = models.BigIntegerField(null=True, blank=True)
    gave_up = models.BooleanField(default=False)
    last_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(
                fields=["portal", "next_ms"],
                name="sbx_hs_webhook_due",
                condition=models.Q(delivered_ms__isnull=True, gave_up=False),
            )
        ]

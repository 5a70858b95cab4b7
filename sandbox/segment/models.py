"""The Segment sandbox's storage: sandbox Profile Spaces (addressed by write key), what they received, what they
dropped, and the messageIds they have seen (for 24-hour deduplication)."""

from __future__ import annotations

import secrets
import string

from django.db import models

# Every sandbox write key starts with this, so hubsync (and a human) can tell a sandbox key from a real Segment
# key at a glance, and refuse to send one to the other.
WRITE_KEY_PREFIX = "sbx_seg_"
# The write key of the workspace that exists out of the box (Segment write keys are 32 characters; so are ours).
DEFAULT_WRITE_KEY = "sbx_seg_DefaultWorkspaceKey00001"
DEFAULT_WORKSPACE_NAME = "Default Profile Space"

_ALPHABET = string.ascii_letters + string.digits


def new_write_key() -> str:
    return WRITE_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(32 - len(WRITE_KEY_PREFIX)))


def is_sandbox_write_key(key: str) -> bool:
    return isinstance(key, str) and key.startswith(WRITE_KEY_PREFIX)


class SegmentWorkspace(models.Model):
    """A sandbox Profile Space with its source write key and its fault knobs (off by default)."""

    name = models.CharField(max_length=100)
    write_key = models.CharField(max_length=64, unique=True, default=new_write_key)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Fault knobs: probabilities in [0, 1] and an added delay. Kept on the row so they apply at once to every
    # server process (the web server and `sandbox_serve` alike) without a cache to invalidate.
    error_rate = models.FloatField(default=0.0, help_text="Share of requests answered with a random 500/502/503/504.")
    rate_limit_rate = models.FloatField(default=0.0, help_text="Share of requests answered with 429 Too Many Requests.")
    retry_after = models.PositiveIntegerField(default=2, help_text="Retry-After seconds sent with a 429.")
    latency_ms = models.PositiveIntegerField(default=0, help_text="Milliseconds added to every request.")

    class Meta:
        ordering = ["-is_default", "name", "id"]

    def __str__(self) -> str:
        return self.name


class SegmentMessage(models.Model):
    """One accepted message. `payload` is the message exactly as stored (compact JSON text, writeKey removed):
    text rather than a JSON column because ingest already serialises each message to measure it, and inserting
    text is the cheapest thing both SQLite and PostgreSQL can do."""

    workspace = models.ForeignKey(SegmentWorkspace, on_delete=models.CASCADE, related_name="messages")
    received_at = models.DateTimeField()
    type = models.CharField(max_length=16)
    user_id = models.TextField(blank=True, default="")
    anonymous_id = models.TextField(blank=True, default="")
    group_id = models.TextField(blank=True, default="")
    message_id = models.CharField(max_length=255)
    timestamp = models.DateTimeField(null=True)
    size = models.PositiveIntegerField(default=0)
    payload = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["workspace", "received_at"], name="sbseg_msg_ws_received")]


class SegmentDiscard(models.Model):
    """A message Segment accepted with 200 but dropped, or a request it refused with 400 (message_id empty and
    payload a short excerpt then). `reason` is a stable code, `detail` the human explanation."""

    workspace = models.ForeignKey(SegmentWorkspace, on_delete=models.CASCADE, related_name="discards")
    received_at = models.DateTimeField()
    reason = models.CharField(max_length=40)
    detail = models.CharField(max_length=300, blank=True, default="")
    status = models.PositiveSmallIntegerField(default=200, help_text="HTTP status the request was answered with.")
    type = models.CharField(max_length=16, blank=True, default="")
    message_id = models.CharField(max_length=255, blank=True, default="")
    payload = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["workspace", "received_at"], name="sbseg_dis_ws_received")]


class SegmentSeenMessageId(models.Model):
    """Deduplication memory: a messageId first accepted at `seen_at` is dropped again until 24 hours later."""

    workspace = models.ForeignKey(SegmentWorkspace, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=255)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "message_id"], name="sbseg_seen_unique")]


class SegmentUnknownKey(models.Model):
    """Requests that carried a write key no sandbox workspace has. Segment answers those with 200 and drops them
    silently; we count them so the sandbox page can point at the mistake. Only a short hint of the key is kept,
    because a real Segment key sent here by accident is a secret."""

    key_hint = models.CharField(max_length=20, unique=True)
    requests = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()


def get_default_workspace() -> SegmentWorkspace:
    """The workspace that exists out of the box. A data migration creates it; creating it lazily as well keeps
    it there after a test database flush (live_server tests) or a manual delete."""
    workspace, _ = SegmentWorkspace.objects.get_or_create(
        write_key=DEFAULT_WRITE_KEY, defaults={"name": DEFAULT_WORKSPACE_NAME, "is_default": True}
    )
    return workspace

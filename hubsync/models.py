from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from .fields import EncryptedTextField, RedactedTextField


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    VIEWER = "viewer", "Viewer"


# Higher rank may do everything a lower rank may.
ROLE_RANK = {Role.VIEWER: 0, Role.ADMIN: 1, Role.OWNER: 2}


class Workspace(models.Model):
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "workspace"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"

    def allows(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


def _invitation_token() -> str:
    # Referenced by migration 0001 (the plain token column's default, before tokens were stored hashed).
    return secrets.token_urlsafe(32)


def hash_invitation_token(token: str) -> str:
    """What is stored of an invitation link's token: its SHA-256. The token is 32 random bytes, so a plain hash is
    enough (no salt or slow hash needed); a leaked database row cannot be turned back into a working link."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _invitation_expiry():
    return timezone.now() + timedelta(days=getattr(settings, "HUBSYNC_INVITATION_DAYS", 7))


class Invitation(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    # Only the hash of the link's token is stored; the token itself exists in the e-mail, and in `self.token` on
    # the instance that created it (so the inviter can be shown the link once).
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "email"],
                condition=models.Q(accepted_at__isnull=True),
                name="unique_pending_invitation",
            )
        ]

    token: str | None = None

    def save(self, *args, **kwargs) -> None:
        if not self.token_hash:
            self.token = secrets.token_urlsafe(32)
            self.token_hash = hash_invitation_token(self.token)
        super().save(*args, **kwargs)

    @classmethod
    def by_token(cls, token: str):
        """The invitation a link's token names (a queryset: empty for an unknown token)."""
        return cls.objects.filter(token_hash=hash_invitation_token(token))

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()


class AuditEvent(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    verb = models.CharField(max_length=40)  # create, update, delete, enable, disable, member.invite, ...
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["workspace", "-at"])]

    def __str__(self) -> str:
        return f"{self.verb} {self.object_type} {self.object_repr}"


class WorkspaceSettings(models.Model):
    """Per-workspace behaviour switches (one row per workspace, saved on the first change)."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="settings")
    # Schema drift that breaks a mapping (a used property deleted, renamed or retyped) pauses that mapping until
    # someone fixes or resumes it: nothing wrong is sent. Off: the mapping is only flagged and keeps delivering.
    drift_pauses_mappings = models.BooleanField(
        default=True,
        help_text="Pause a mapping automatically when a property it uses is deleted, renamed or changes type.",
    )
    # Alert thresholds; 0 switches the rule off.
    freshness_alert_minutes = models.PositiveIntegerField(
        default=60,
        help_text="Alert when a mirror change has waited longer than this many minutes to be delivered (0 = off).",
    )
    rejected_alert_threshold = models.PositiveIntegerField(
        default=100,
        help_text="Alert when a mapping has more than this many rejected records (0 = off).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Settings of {self.workspace}"

    @classmethod
    def for_workspace(cls, workspace_id: int) -> WorkspaceSettings:
        """The workspace's settings, or the defaults (unsaved: reading never writes; saving creates the row)."""
        return cls.objects.filter(workspace_id=workspace_id).first() or cls(workspace_id=workspace_id)


class AlertChannel(models.Model):
    """Where a workspace's alerts go: an email address list or a webhook (Slack-compatible JSON)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook (Slack-compatible)"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="alert_channels")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=100)
    # Comma-separated addresses (email channels).
    emails = models.CharField(max_length=500, blank=True)
    # A Slack incoming-webhook URL is a bearer secret: encrypted, never shown again after saving.
    webhook_url = EncryptedTextField(blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [e.strip() for e in self.emails.split(",") if e.strip()]


class AlertState(models.Model):
    """One failure streak per rule and object (`key`, e.g. "sync_failed:source:3"). Opened on the first failure
    (one alert), left alone while the failure lasts, closed on recovery (one recovery alert)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="alert_states")
    key = models.CharField(max_length=100)
    rule = models.CharField(max_length=30)
    subject = models.CharField(max_length=300, blank=True)
    is_open = models.BooleanField(default=False)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    detail = RedactedTextField(blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["workspace", "key"], name="unique_alert_state")]

    def __str__(self) -> str:
        return self.key


class Alert(models.Model):
    """One message to one channel, and every attempt to deliver it."""

    class Kind(models.TextChoices):
        FIRING = "firing", "Problem"
        RECOVERED = "recovered", "Recovered"
        TEST = "test", "Test"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="alerts")
    channel = models.ForeignKey(AlertChannel, null=True, on_delete=models.SET_NULL, related_name="alerts")
    state = models.ForeignKey(AlertState, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    rule = models.CharField(max_length=30, blank=True)
    text = RedactedTextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # [{"at": iso, "ok": bool, "status_code": int | None, "error": str}, ...]
    attempts = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-created_at"], name="alert_recent")]

    def __str__(self) -> str:
        return f"{self.kind} alert {self.pk}"

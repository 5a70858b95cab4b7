"""API tokens: a workspace's credentials for the REST API (/api/v1/).

A token is `hs_` + 40 random url-safe characters. Only its SHA-256 is stored (the token is high-entropy, so no
salt or slow hash is needed: a leaked row cannot be turned back into a working token), with its first characters
kept to tell tokens apart in lists. The plain token exists once, on the instance that created it.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from hubsync.models import Role, Workspace

TOKEN_PREFIX = "hs_"
# Characters of the token shown in lists ("hs_Ab3dE6…"): enough to tell tokens apart, far too few to guess it.
DISPLAY_CHARS = 10


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


class ApiToken(models.Model):
    class Role(models.TextChoices):
        READ_ONLY = "read_only", "Read-only"
        ADMIN = "admin", "Admin"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.READ_ONLY)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=20, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    # The plain token, on the instance that created it only (shown once).
    token: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def member_role(self) -> str:
        """The membership role this token acts with: read-only tokens read like viewers, admin tokens act like
        admins (never like owners)."""
        return Role.ADMIN if self.role == self.Role.ADMIN else Role.VIEWER

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired else "active"

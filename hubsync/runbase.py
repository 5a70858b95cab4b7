"""The lifecycle both kinds of run share (sources.SyncRun, mappings.DeliveryRun): status, timestamps, heartbeat,
duration, badge, and how a run whose worker died is recognised and taken over.

One active run per source or mapping is decided by each model's partial unique constraint. A worker writes the
run's heartbeat as it goes; a run whose heartbeat is older than its kind's limit lost its worker (killed, OOM,
machine gone), and the next claim marks it failed with a compare-and-set on that heartbeat, so a run that was
alive after all keeps running.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .fields import RedactedTextField


class RunBase(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = RedactedTextField(blank=True)  # redacted when stored: HubSpot and Segment echo credentials

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def badge(self) -> str:
        """The CSS class of the run's status badge (templates/hubsync/_run_badge.html)."""
        return {"succeeded": "ok", "failed": "bad", "partial": "warn"}.get(self.status, "info")

    @property
    def last_sign_of_life(self) -> datetime:
        return self.heartbeat_at or self.started_at or self.created_at

    def is_stale(self, *, running_after: timedelta, queued_after: timedelta | None = None, now=None) -> bool:
        """Running without a heartbeat for `running_after`, or queued and never picked up for `queued_after`."""
        now = now or timezone.now()
        if self.status == self.Status.RUNNING:
            return self.last_sign_of_life < now - running_after
        if self.status == self.Status.QUEUED and queued_after is not None:
            return self.created_at < now - queued_after
        return False

    def fail_if_unchanged(self, *, error: str, now=None) -> bool:
        """Mark this active run failed unless its heartbeat moved since it was read (compare-and-set). True when
        this call failed it."""
        beat = Q(heartbeat_at=self.heartbeat_at) if self.heartbeat_at else Q(heartbeat_at__isnull=True)
        now = now or timezone.now()
        changed = (
            type(self)
            ._default_manager.filter(beat, pk=self.pk, status__in=self.ACTIVE)
            .update(status=self.Status.FAILED, finished_at=now, error=error)
        )
        if changed:
            self.status, self.finished_at, self.error = self.Status.FAILED, now, error
        return bool(changed)

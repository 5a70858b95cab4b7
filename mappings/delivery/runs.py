"""A delivery's run: claiming the mapping's one active run, taking over a dead one, finishing.

One delivery per mapping at a time, decided by a partial unique constraint on DeliveryRun. A run whose worker died
(no heartbeat for DELIVERY_STALE_SECONDS) is marked failed by the next one, which takes over (RunBase.is_stale and
RunBase.fail_if_unchanged, shared with sync runs).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from hubsync import handoff

from ..models import DeliveryRun, Mapping
from ..services import request_delivery
from .checkpoint import RUN_COUNT_FIELDS
from .pending import mapping_behind


def _inherited_unconfirmed(mapping_id: int, run_id: int) -> list[int] | None:
    """The `unconfirmed` ids the mapping's previous run left (None after a run that ended normally)."""
    return (
        DeliveryRun.objects.filter(mapping_id=mapping_id)
        .exclude(pk=run_id)
        .order_by("-created_at", "-id")
        .values_list("unconfirmed", flat=True)
        .first()
    )


def _claim_run(mapping: Mapping, sync_run_id: int | None) -> DeliveryRun | None:
    """Create this mapping's one active run, or return None when another live run holds it. A request that
    finds a run in progress leaves `delivery_requested` set, and that run enqueues one more delivery when it
    ends: the flag is raised *before* trying, so a run finishing in between either sees it or has already
    released the constraint (and then our insert succeeds)."""
    Mapping.objects.filter(pk=mapping.pk).update(delivery_requested=True)
    stale_after = timedelta(seconds=settings.DELIVERY_STALE_SECONDS)
    for _attempt in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                run = DeliveryRun.objects.create(
                    mapping=mapping,
                    sync_run_id=sync_run_id,
                    status=DeliveryRun.Status.RUNNING,
                    created_at=now,
                    started_at=now,
                    heartbeat_at=now,
                )
                Mapping.objects.filter(pk=mapping.pk).update(delivery_requested=False, last_run=run)
            return run
        except IntegrityError:
            active = DeliveryRun.objects.filter(mapping=mapping, status__in=DeliveryRun.ACTIVE).first()
            if active is None:
                continue  # it just finished: try again
            if not active.is_stale(running_after=stale_after, queued_after=stale_after, now=now):
                return None
            # Its worker is gone (killed, OOM, lost machine): fail it so that delivery can go on.
            active.fail_if_unchanged(
                error=f"Lost: no heartbeat since {active.last_sign_of_life.isoformat()} (worker killed or stopped); "
                "taken over.",
                now=now,
            )
    return None


def _fresh(mapping: Mapping) -> Mapping:
    """The mapping as it is now (its watermark moved during the run)."""
    return Mapping.objects.select_related("data_model").get(pk=mapping.pk)


def _finish(run: DeliveryRun, mapping: Mapping) -> None:
    run.finished_at = timezone.now()
    with transaction.atomic():
        requested = (
            Mapping.objects.select_for_update()
            .filter(pk=mapping.pk)
            .values_list("delivery_requested", flat=True)
            .first()
        )
        run.save(
            update_fields=[
                "status",
                "finished_at",
                "error",
                *RUN_COUNT_FIELDS,
                "watermark_to",
                "heartbeat_at",
                "unconfirmed",
            ]
        )
        if requested:
            Mapping.objects.filter(pk=mapping.pk).update(delivery_requested=False)
            if run.status == DeliveryRun.Status.SUCCEEDED and mapping_behind(_fresh(mapping)):
                # Changes were merged while we ran and their delivery request found us busy: go again, unless
                # this run already delivered them (then the next run would consider nothing). After a failure we
                # don't loop; the next sync (or a retry by hand) delivers them.
                request_delivery(mapping_id=mapping.pk)
    handoff.send(handoff.RUN_FINISHED, workspace_id=mapping.destination.workspace_id)

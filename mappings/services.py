"""Writes on a mapping's deliveries: start one, sample mode, retry, resync, a test message. Views, tasks and the
delivery engine call these.

`request_delivery` is the one way to start a delivery. It sends the delivery task by its name rather than by
importing `mappings.tasks`: the task runs the engine, and the engine asks for its own follow-up delivery through
this module, so importing the task here would close an import cycle (services → tasks → delivery → services).
"""

from __future__ import annotations

import enum
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import DeliveryState, Mapping
from .segment import BatchResult, SegmentClient
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
    return SegmentClient(space.region).send_batch(space.write_key, [message])


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

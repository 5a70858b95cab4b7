"""This app's receivers of the lower apps' same-transaction hooks (hubsync.hooks), connected in ready()."""

from __future__ import annotations

from .models import DeliveryState, Mapping


def _mappings_of(source_id: int, collection: str):
    return Mapping.objects.filter(data_model__source_id=source_id, data_model__collection=collection)


def _resample(mappings) -> None:
    # Sample mode's cutoff (the N-th lowest id) moves up when records below it go: the records that now enter
    # the sample were skipped below the watermark, so those mappings reconsider the collection (what they
    # already delivered is unchanged and is not resent).
    mappings.filter(sample_size__isnull=False).exclude(sample_size=0).update(watermark=0)


def forget_deleted_records(*, source_id: int, collection: str, object_ids: list[int], removed: int) -> None:
    """Records HubSpot deleted for good: drop the last payload kept on their delivery states (personal data; the
    states' ids and hashes stay, so the debugger can still say the record was delivered once)."""
    mappings = _mappings_of(source_id, collection)
    if removed:
        _resample(mappings)  # mapping rows first, then states: the order the delivery checkpoint locks them in
    DeliveryState.objects.filter(mapping__in=mappings, object_id__in=object_ids, last_payload__isnull=False).update(
        last_payload=None
    )


def resample_after_merges(*, source_id: int, collection: str, object_ids: list[int]) -> None:
    """Records HubSpot merged into others left the mirror; their states and payloads stay (nothing asked to erase
    them), but a sample's cutoff may have moved."""
    _resample(_mappings_of(source_id, collection))

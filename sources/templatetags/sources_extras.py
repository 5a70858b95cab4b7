from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template

from sources.models import SYNC_INTERVAL_CHOICES
from sources.oauth import COLLECTION_LABELS

register = template.Library()


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    return (mapping or {}).get(key)


@register.filter
def interval_label(value: timedelta | None) -> str:
    """`Every 3 hours` for a sync interval."""
    if value is None:
        return ""
    for interval, label in SYNC_INTERVAL_CHOICES:
        if interval == value:
            return label
    minutes = int(value.total_seconds() // 60)
    return f"Every {minutes} minutes"


@register.filter
def collection_label(name: str) -> str:

    return COLLECTION_LABELS.get(name, name)

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from monitoring.dashboard import human_duration

register = template.Library()


@register.filter
def duration_text(value: timedelta | float | None) -> str:
    """A duration as "3 min 20 s"."""
    return human_duration(value)


@register.filter
def run_duration(value: timedelta | float | None) -> str:
    """How long a run took: "0.04 s", "3.2 s", then like duration_text ("3 min 20 s"). Deliveries often take
    well under a second, which duration_text would show as "0 s"."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{max(seconds, 0):.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return human_duration(seconds)


@register.filter
def age(value: datetime | None) -> str:
    """How long ago: "5 min 02 s ago", or "in 2 h 10 min" for a time in the future."""
    if value is None:
        return "—"
    delta = timezone.now() - value
    if delta.total_seconds() < 0:
        return f"in {human_duration(-delta)}"
    return f"{human_duration(delta)} ago"

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from monitoring.dashboard import human_duration
from monitoring.dashboard import run_duration as dashboard_run_duration

register = template.Library()


@register.filter
def duration_text(value: timedelta | float | None) -> str:
    """A duration as "3 min 20 s"."""
    return human_duration(value)


@register.filter
def run_duration(value: timedelta | float | None) -> str:
    """How long a run took: "0.04 s", "3.2 s", then like duration_text ("3 min 20 s")."""
    return dashboard_run_duration(value)


@register.filter
def age(value: datetime | None) -> str:
    """How long ago: "5 min 02 s ago", or "in 2 h 10 min" for a time in the future."""
    if value is None:
        return "—"
    delta = timezone.now() - value
    if delta.total_seconds() < 0:
        return f"in {human_duration(-delta)}"
    return f"{human_duration(delta)} ago"


@register.filter
def until(value: datetime | None) -> str:
    """When something is due: "in 2 h 51 min", or "due now" once the time has come (the scheduler picks it up
    within its next minute), never "5 s ago" for a time that is meant to be ahead."""
    if value is None:
        return "—"
    delta = value - timezone.now()
    if delta.total_seconds() < 1:
        return "due now"
    return f"in {human_duration(delta)}"

"""Core tasks. Thin: the work lives in hubsync.dispatch."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .dispatch import dispatch_due


@shared_task(name="hubsync.dispatch", ignore_result=True)
def dispatch() -> dict[str, Any]:
    """Fired by beat every minute: enqueue whatever is due (each app registers its dispatcher)."""
    return dispatch_due()


@shared_task(name="hubsync.send_alert", bind=True, acks_late=True, ignore_result=True)
def send_alert(self, alert_id: int) -> str:
    """Deliver one alert to its channel; transient failures retry with backoff, ALERT_MAX_ATTEMPTS in all, and
    every attempt is recorded on the Alert row (the task takes the id: the webhook URL is a secret)."""
    from django.conf import settings

    from .alerts import attempt, retry_delay

    retries = self.request.retries or 0
    outcome = attempt(alert_id=alert_id, last=retries + 1 >= settings.ALERT_MAX_ATTEMPTS)
    if outcome == "retry":
        raise self.retry(countdown=retry_delay(retries), max_retries=settings.ALERT_MAX_ATTEMPTS - 1)
    return outcome

"""Core tasks. Thin: the work lives in hubsync.dispatch."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from .dispatch import dispatch_due


@shared_task(name="hubsync.dispatch", ignore_result=True)
def dispatch() -> dict[str, Any]:
    """Fired by beat every minute: enqueue whatever is due (each app registers its dispatcher)."""
    return dispatch_due()


# Alert tasks run on their own `alerts` queue (hubsync/celery.py) with short time limits: a slow webhook or SMTP
# server holds up other alerts at most, never a sync or a delivery (of this workspace or another).
ALERT_TIME_LIMITS = {"soft_time_limit": 45, "time_limit": 60}


@shared_task(name="hubsync.evaluate_alerts", ignore_result=True, **ALERT_TIME_LIMITS)
def evaluate_alerts(workspace_id: int) -> None:
    """Open / close one workspace's alert streaks (queued when a run finishes, and every minute by beat)."""
    from .alerts import evaluate_logged

    evaluate_logged(workspace_id=workspace_id)


@shared_task(name="hubsync.send_alert", bind=True, acks_late=True, ignore_result=True, **ALERT_TIME_LIMITS)
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

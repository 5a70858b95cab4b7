"""Monitoring tasks. Thin: the work lives in monitoring.alerts.

Alert tasks run on their own `alerts` queue (hubsync/celery.py) with short time limits: a slow webhook or SMTP
server holds up other alerts at most, never a sync or a delivery (of this workspace or another).
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from hubsync import handoff

from .alerts import SEND_ALERT, attempt, evaluate_logged, retry_delay

ALERT_TIME_LIMITS = {"soft_time_limit": 45, "time_limit": 60}


@shared_task(name=handoff.RUN_FINISHED, ignore_result=True, **ALERT_TIME_LIMITS)
def evaluate_alerts(workspace_id: int) -> None:
    """Open / close one workspace's alert streaks: a sync or delivery of it ended (a failed / partial run opens
    its streak, a good one closes it), or the beat dispatcher's minute came."""
    evaluate_logged(workspace_id=workspace_id)


@shared_task(name=SEND_ALERT, bind=True, acks_late=True, ignore_result=True, **ALERT_TIME_LIMITS)
def send_alert(self, alert_id: int) -> str:
    """Deliver one alert to its channel; transient failures retry with backoff, ALERT_MAX_ATTEMPTS in all, and
    every attempt is recorded on the Alert row (the task takes the id: the webhook URL is a secret)."""
    retries = self.request.retries or 0
    outcome = attempt(alert_id=alert_id, last=retries + 1 >= settings.ALERT_MAX_ATTEMPTS)
    if outcome == "retry":
        raise self.retry(countdown=retry_delay(retries), max_retries=settings.ALERT_MAX_ATTEMPTS - 1)
    return outcome

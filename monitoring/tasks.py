"""Monitoring tasks. Thin: the work lives in monitoring.alerts."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from hubsync import handoff

from .alerts import SEND_ALERT, attempt, evaluate_safely, retry_delay


@shared_task(name=handoff.RUN_FINISHED, ignore_result=True)
def run_finished(*, workspace_id: int) -> None:
    """A sync or delivery of the workspace ended: a failed / partial run opens its alert streak, a good one
    closes it (one message each way)."""
    evaluate_safely(workspace_id=workspace_id)


@shared_task(name=SEND_ALERT, bind=True, acks_late=True, ignore_result=True)
def send_alert(self, alert_id: int) -> str:
    """Deliver one alert to its channel; transient failures retry with backoff, ALERT_MAX_ATTEMPTS in all, and
    every attempt is recorded on the Alert row (the task takes the id: the webhook URL is a secret)."""
    retries = self.request.retries or 0
    outcome = attempt(alert_id=alert_id, last=retries + 1 >= settings.ALERT_MAX_ATTEMPTS)
    if outcome == "retry":
        raise self.retry(countdown=retry_delay(retries), max_retries=settings.ALERT_MAX_ATTEMPTS - 1)
    return outcome

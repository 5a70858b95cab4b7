"""The Celery app. Reliability settings live in settings.py (CELERY_*): acks late, reject on worker lost,
prefetch 1, bounded time limits well under the broker's visibility timeout."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Exchange, Queue

from hubsync.querylog import forget_queries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsync.settings")

app = Celery("hubsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each queue gets its own exchange and routing key. Left implicit, Celery binds BOTH queues to the "extract"
# exchange with key "extract"; Celery itself publishes straight to the queue name, but anything publishing by
# exchange (another client, a future routing change) would copy each message into both queues.
app.conf.task_queues = (
    Queue("extract", Exchange("extract", type="direct"), routing_key="extract"),
    Queue("deliver", Exchange("deliver", type="direct"), routing_key="deliver"),
    Queue("alerts", Exchange("alerts", type="direct"), routing_key="alerts"),
)
app.conf.task_routes = {
    "sources.*": {"queue": "extract"},
    "mappings.*": {"queue": "deliver"},
    # Alerts wait on other people's servers (webhooks, SMTP) and the dispatcher must tick every minute: a queue
    # of their own, so a backlog of syncs or deliveries never delays an alert or the schedule, and a slow
    # webhook never delays anyone's sync.
    "monitoring.*": {"queue": "alerts"},
    "hubsync.*": {"queue": "alerts"},
}
app.conf.beat_schedule = {
    # A tick that waited longer than the next one is worthless: expire it instead of piling up ticks while
    # the workers are down.
    "dispatch-due-syncs": {"task": "hubsync.dispatch", "schedule": 60.0, "options": {"expires": 55}},
}
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _forget_queries(**_kwargs: object) -> None:
    # A worker process lives for many tasks: whatever a task logged with DEBUG on must not outlive it (the
    # engines also clear per page; this covers every other task and what ran between tasks).
    forget_queries()

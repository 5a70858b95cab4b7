"""The Celery app. Reliability settings live in settings.py (CELERY_*): acks late, reject on worker lost,
prefetch 1, bounded time limits well under the broker's visibility timeout."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hubsync.settings")

app = Celery("hubsync")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("extract"), Queue("deliver"))
app.conf.task_routes = {
    "sources.*": {"queue": "extract"},
    "mappings.*": {"queue": "deliver"},
    "hubsync.*": {"queue": "extract"},
}
app.conf.beat_schedule = {
    "dispatch-due-syncs": {"task": "hubsync.dispatch", "schedule": 60.0},
}
app.autodiscover_tasks()

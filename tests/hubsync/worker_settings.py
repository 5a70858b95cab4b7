"""Settings for the Celery worker that the integration tests start: production settings plus a probe
dispatcher, so the test can see `hubsync.dispatch` really run inside the worker against the test database."""

from __future__ import annotations

from hubsync.settings import *  # noqa: F403

HUBSYNC_DISPATCHERS = ["tests.hubsync.celery_worker.probe_dispatcher"]

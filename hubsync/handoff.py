"""Hand-offs upward by Celery task name.

A lower layer never imports the code that reacts to its work: extraction does not import the delivery engine,
and neither engine imports the alerts. It names the task that a higher app registers and sends it after the
current transaction commits, so the reaction sees committed rows and a rolled-back change triggers nothing.

The names are contracts, listed here so that both sides refer to one constant.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from django.db import transaction

# mappings: the mirror of (source, collections) changed; start the deliveries of the mappings that read it.
MIRROR_CHANGED = "mappings.mirror_changed"
# monitoring: a run of this workspace finished; evaluate its alert rules.
RUN_FINISHED = "monitoring.evaluate_alerts"


def send(name: str, /, **kwargs: Any) -> None:
    """Send task `name` with keyword arguments (ids and plain values only, never secrets) on commit.

    A task registered in this process goes through its own `apply_async` (so its routing, and eager mode in
    tests, apply); otherwise the broker gets the message by name."""
    transaction.on_commit(lambda: _send_now(name, kwargs))


def _send_now(name: str, kwargs: dict[str, Any]) -> None:
    task = current_app.tasks.get(name)
    if task is not None:
        task.apply_async(kwargs=kwargs)
    else:
        current_app.send_task(name, kwargs=kwargs)

"""The dashboard's workers panel: the Celery workers that answer, this workspace's running tasks (never another
workspace's, nor host names), and how many messages wait in each queue."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from hubsync.celery import app
from hubsync.health import _safe_error, check_workers
from hubsync.models import Alert, Workspace
from mappings.models import Mapping
from sources.models import SyncRun

# What the panel calls each task, and how to tell which workspace a running one belongs to.
_TASK_LABELS = {
    "sources.run_sync": "Sync run",
    "mappings.deliver_mapping": "Delivery of mapping",
    "monitoring.send_alert": "Alert message",
    "monitoring.evaluate_alerts": "Alert evaluation",
}


def _first_id(task: dict[str, Any]) -> int | None:
    args = task.get("args") or []
    value = (
        args[0] if isinstance(args, list | tuple) and args else next(iter((task.get("kwargs") or {}).values()), None)
    )
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _own_task_ids(workspace: Workspace, wanted: dict[str, set[int]]) -> dict[str, set[int]]:
    """Of the ids the running tasks name, those that belong to this workspace (one query per task kind)."""

    queries = {
        "sources.run_sync": SyncRun.objects.filter(source__workspace=workspace),
        "mappings.deliver_mapping": Mapping.objects.filter(destination__workspace=workspace),
        "monitoring.send_alert": Alert.objects.filter(workspace=workspace),
    }
    own: dict[str, set[int]] = {"monitoring.evaluate_alerts": {workspace.pk}}
    for name, qs in queries.items():
        ids = wanted.get(name)
        own[name] = set(qs.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
    return own


def workers_report(workspace: Workspace) -> dict[str, Any]:
    """How many workers answer (control ping), what they run *for this workspace* (inspect active), queue
    lengths. Workers are shared by every workspace: their host names and other workspaces' tasks and run ids are
    not this workspace's business, so only the count and this workspace's own tasks are reported. Each remote
    step has a short timeout; the dashboard loads this lazily so a silent cluster never slows the page itself."""

    timeout = min(settings.HEALTH_WORKER_TIMEOUT, 1.5)
    report: dict[str, Any] = {"alive": 0, "tasks": [], "queues": queue_lengths(), "error": ""}
    ping = check_workers()
    if not ping["ok"]:
        report["error"] = ping.get("error", "")
        return report
    report["alive"] = len(ping["names"])
    active: dict[str, list] = {}
    try:
        active = app.control.inspect(destination=ping["names"], timeout=timeout).active() or {}
    except Exception as exc:  # a report, not a crash
        report["error"] = _safe_error(exc)
    running = [t for name in ping["names"] for t in (active.get(name) or []) if isinstance(t, dict)]
    wanted: dict[str, set[int]] = {}
    for task in running:
        name, pk = task.get("name") or task.get("type") or "", _first_id(task)
        if name in _TASK_LABELS and pk is not None:
            wanted.setdefault(name, set()).add(pk)
    own = _own_task_ids(workspace, wanted)
    for task in running:
        name, pk = task.get("name") or task.get("type") or "", _first_id(task)
        if pk is None or pk not in own.get(name, set()):
            continue  # another workspace's, or shared housekeeping (the dispatcher)
        started = task.get("time_start")
        report["tasks"].append(
            {
                "name": name,
                "label": _TASK_LABELS[name],
                "id": pk,
                "since": datetime.fromtimestamp(started, tz=UTC) if started else None,
            }
        )
    return report


def queue_lengths() -> list[dict[str, Any]]:
    """Messages waiting per queue: LLEN on Redis, message files in the folder for the filesystem broker."""
    names = list(getattr(settings, "CELERY_TASK_QUEUES_NAMES", ("extract", "deliver")))
    url = getattr(settings, "CELERY_BROKER_URL", "")
    result: list[dict[str, Any]] = []
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            try:
                for name in names:
                    result.append({"name": name, "waiting": int(client.llen(name))})
            finally:
                client.close()
        elif url.startswith("filesystem://"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", "")
            files = os.listdir(folder) if folder and os.path.isdir(folder) else []
            for name in names:
                suffix = f".{name}.msg"
                result.append({"name": name, "waiting": sum(1 for f in files if f.endswith(suffix))})
        else:
            result = [{"name": name, "waiting": None} for name in names]
    except Exception:  # an unreachable broker shows as unknown lengths
        result = [{"name": name, "waiting": None} for name in names]
    return result

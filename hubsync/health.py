"""GET /healthz: is the database reachable, the broker reachable, and is at least one worker answering?

Workers are asked with Celery's control ping (a broadcast on the broker: Redis pub/sub, or the filesystem
transport's fanout through its control folder), so the answer is "a worker process consumed a message just
now", not "a heartbeat was written some time ago".
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.db import connection

from .celery import app


def _safe_error(exc: BaseException) -> str:
    """The error, without any credentials that might be embedded in a connection URL."""
    text = f"{type(exc).__name__}: {exc}"
    for url in (getattr(settings, "CELERY_BROKER_URL", ""), os.environ.get("DATABASE_URL", "")):
        if url and url in text:
            text = text.replace(url, "<url>")
    password = settings.DATABASES["default"].get("PASSWORD")
    if password:
        text = text.replace(password, "***")
    return text[:300]


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any failure is a report, not a crash
        return {"ok": False, "error": _safe_error(exc)}


def check_broker() -> dict[str, Any]:

    timeout = settings.HEALTH_BROKER_TIMEOUT
    try:
        with app.connection_for_read(connect_timeout=timeout) as conn:
            transport = conn.transport_cls
            # One attempt, no retry loop: a health check must answer quickly.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            if transport == "filesystem":
                options = conn.transport_options
                for key in ("data_folder_in", "data_folder_out", "control_folder"):
                    folder = options.get(key)
                    if folder and not os.access(folder, os.W_OK | os.X_OK):
                        return {"ok": False, "transport": transport, "error": f"{key} is not writable"}
            else:
                # Redis: a real round trip, not just a TCP connect.
                conn.default_channel.client.ping()
        return {"ok": True, "transport": transport}
    except Exception as exc:
        return {"ok": False, "error": _safe_error(exc)}


def check_workers() -> dict[str, Any]:

    try:
        replies = app.control.ping(timeout=settings.HEALTH_WORKER_TIMEOUT)
    except Exception as exc:
        return {"ok": False, "count": 0, "names": [], "error": _safe_error(exc)}
    names = sorted(name for reply in replies for name in reply)
    report: dict[str, Any] = {"ok": bool(names), "count": len(names), "names": names}
    if not names:
        report["error"] = f"no worker answered a ping within {settings.HEALTH_WORKER_TIMEOUT:g}s"
    return report


def check_all() -> tuple[dict[str, Any], bool]:
    report: dict[str, Any] = {"database": check_database(), "broker": check_broker()}
    if report["broker"]["ok"]:
        report["workers"] = check_workers()
    else:
        # Without a broker nothing can reach the workers; don't wait for a ping that cannot arrive.
        report["workers"] = {"ok": False, "count": 0, "names": [], "error": "broker unreachable"}
    failing = [part for part in ("database", "broker", "workers") if not report[part]["ok"]]
    report["status"] = "failing" if failing else "ok"
    report["failing"] = failing
    return report, not failing

from __future__ import annotations

from typing import Any

from django.db import connection


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any failure is a report, not a crash
        return {"ok": False, "error": str(exc)}


def check_all() -> tuple[dict[str, Any], bool]:
    report = {"database": check_database()}
    ok = all(part["ok"] for part in report.values())
    report["status"] = "ok" if ok else "failing"
    return report, ok

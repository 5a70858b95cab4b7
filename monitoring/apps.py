from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from hubsync.dispatch import register

        from .alerts import evaluate_all

        # Every minute: freshness alerts (a mirror change waiting too long) need no run to finish to fire.
        register(evaluate_all)

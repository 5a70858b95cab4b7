from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use models, which exist only once the registry is ready.
        from hubsync.dispatch import register

        from . import tasks  # noqa: F401 (registers the hand-off receivers in every process, eager mode included)
        from .alerts import evaluate_all

        # Every minute: freshness alerts (a mirror change waiting too long) need no run to finish to fire.
        register(evaluate_all)

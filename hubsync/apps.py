from __future__ import annotations

from django.apps import AppConfig


class HubsyncConfig(AppConfig):
    name = "hubsync"
    verbose_name = "hubsync"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the deploy checks)
        from .alerts import evaluate_all
        from .dispatch import register

        # Every minute: freshness alerts (a mirror change waiting too long) need no run to finish to fire.
        register(evaluate_all)

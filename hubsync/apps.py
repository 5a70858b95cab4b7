from __future__ import annotations

from django.apps import AppConfig


class HubsyncConfig(AppConfig):
    name = "hubsync"
    verbose_name = "hubsync"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the deploy checks)

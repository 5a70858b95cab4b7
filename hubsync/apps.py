from __future__ import annotations

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

from .counters import ensure_triggers


def _ensure_counter_triggers(using: str = "default", **kwargs: object) -> None:
    ensure_triggers(connections[using])


class HubsyncConfig(AppConfig):
    name = "hubsync"
    verbose_name = "hubsync"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the deploy checks)

        # Once per `migrate` (not once per app): dispatch_uid keeps one receiver.
        post_migrate.connect(_ensure_counter_triggers, dispatch_uid="hubsync.counters.ensure_triggers")

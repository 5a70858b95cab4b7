from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

from . import counters


def _reinstall_counters(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    # SQLite drops a table's triggers whenever a migration rebuilds it: put back the counters' after every migrate.
    counters.reinstall_missing(connections[using])


class HubsyncConfig(AppConfig):
    name = "hubsync"
    verbose_name = "hubsync"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the deploy checks)

        post_migrate.connect(_reinstall_counters, sender=self, dispatch_uid="hubsync.counters.reinstall")

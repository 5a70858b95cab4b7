from __future__ import annotations

from django.apps import AppConfig


class HubsyncConfig(AppConfig):
    name = "hubsync"
    verbose_name = "hubsync"

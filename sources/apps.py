from __future__ import annotations

from django.apps import AppConfig


class SourcesConfig(AppConfig):
    name = "sources"
    verbose_name = "HubSpot sources"

    def ready(self) -> None:
        # Every process that runs the beat task ("hubsync.dispatch") must know the sources dispatcher, so it is
        # registered here rather than at import of a tasks module that a worker may not load.
        from hubsync.dispatch import register

        from .dispatch import dispatch_due_syncs

        register(dispatch_due_syncs)

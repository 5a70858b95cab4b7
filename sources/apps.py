from __future__ import annotations

from django.apps import AppConfig


class SourcesConfig(AppConfig):
    name = "sources"
    verbose_name = "HubSpot sources"

    def ready(self) -> None:
        # Beat's `hubsync.dispatch` task calls every registered dispatcher each minute: ours enqueues due syncs.
        try:
            from hubsync.dispatch import register
        except ImportError:  # the runtime's dispatcher hook list is not merged on this branch yet
            return
        from .dispatch import dispatch_due_syncs

        register(dispatch_due_syncs)

from __future__ import annotations

from django.apps import AppConfig


class SourcesConfig(AppConfig):
    name = "sources"
    verbose_name = "HubSpot sources"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use models, which exist only once the registry is ready.
        from hubsync import hooks
        from hubsync.dispatch import register

        from .dispatch import dispatch_due_syncs, dispatch_live
        from .selectors import connection_step

        # Beat's `hubsync.dispatch` task calls every registered dispatcher each minute: ours enqueues due syncs.
        register(dispatch_due_syncs)
        register(dispatch_live)
        hooks.setup_steps.connect(connection_step)

from __future__ import annotations

from django.apps import AppConfig


class MappingsConfig(AppConfig):
    name = "mappings"
    verbose_name = "Destinations and mappings"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use models, which exist only once the registry is ready.
        from hubsync import hooks

        from . import tasks  # noqa: F401 (registers the hand-off receivers in every process, eager mode included)
        from .drift import schema_discovered
        from .receivers import forget_deleted_records, resample_after_merges
        from .setup import mapping_steps

        hooks.records_deleted.connect(forget_deleted_records)
        hooks.records_merged.connect(resample_after_merges)
        hooks.schema_discovered.connect(schema_discovered)
        hooks.setup_steps.connect(mapping_steps)

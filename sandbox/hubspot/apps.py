from __future__ import annotations

from django.apps import AppConfig


class SandboxHubspotConfig(AppConfig):
    name = "sandbox.hubspot"
    label = "sandbox_hubspot"
    verbose_name = "Sandbox: HubSpot"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from . import state
        from .models import CustomProperty, Knobs, Portal

        for model in (Knobs, Portal, CustomProperty):
            post_save.connect(state.invalidate, sender=model, dispatch_uid=f"sbx-hs-invalidate-save-{model.__name__}")
            post_delete.connect(
                state.invalidate, sender=model, dispatch_uid=f"sbx-hs-invalidate-delete-{model.__name__}"
            )

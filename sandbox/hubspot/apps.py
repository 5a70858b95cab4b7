from __future__ import annotations

from django.apps import AppConfig


class SandboxHubspotConfig(AppConfig):
    name = "sandbox.hubspot"
    label = "sandbox_hubspot"
    verbose_name = "Sandbox: HubSpot"

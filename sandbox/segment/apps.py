from __future__ import annotations

from django.apps import AppConfig


class SandboxSegmentConfig(AppConfig):
    name = "sandbox.segment"
    label = "sandbox_segment"
    verbose_name = "Sandbox: Segment"

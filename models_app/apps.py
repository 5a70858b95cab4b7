from __future__ import annotations

from django.apps import AppConfig


class ModelsAppConfig(AppConfig):
    name = "models_app"
    verbose_name = "Data models"

    def ready(self) -> None:
        from hubsync import hooks

        from .setup import data_model_step

        hooks.setup_steps.connect(data_model_step)

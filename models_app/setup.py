"""This app's steps of a source's setup checklist (hubsync.hooks.setup_steps)."""

from __future__ import annotations

from django.urls import reverse

from hubsync.hooks import SetupStep
from sources.models import Source

from .models import DataModel


def data_model_step(source: Source) -> list[SetupStep]:
    return [
        SetupStep(
            30,
            "data_model",
            "Create a data model",
            DataModel.objects.filter(source=source).exists(),
            "Pick one collection of this source and the columns to send.",
            reverse("models_app:new", args=[source.pk]),
        )
    ]

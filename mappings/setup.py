"""This app's steps of a source's setup checklist (hubsync.hooks.setup_steps)."""

from __future__ import annotations

from django.urls import reverse

from hubsync.hooks import SetupStep
from sources.models import Source

from .models import Destination, Mapping


def mapping_steps(source: Source) -> list[SetupStep]:
    mappings = Mapping.objects.filter(data_model__source=source)
    return [
        SetupStep(
            20,
            "destination",
            "Add a Segment Profiles destination",
            Destination.objects.filter(workspace=source.workspace).exists(),
            "Add the destination and the Profile Space that should receive this source's data.",
            f"{reverse('mappings:destination_new')}?source={source.pk}",
        ),
        SetupStep(
            40,
            "mapping",
            "Add a mapping",
            mappings.exists(),
            "Map the model's columns onto a User ID, Anonymous ID or Group ID and traits, and test it.",
            reverse("mappings:mapping_new"),
        ),
        SetupStep(
            50,
            "mapping_enabled",
            "Enable the mapping",
            mappings.filter(enabled=True).exists(),
            "Switch on at least one mapping that uses one of this source's models. Recommended first step: on the"
            ' mapping\'s page choose "Deliver a sample only" (the first 100 records), check those profiles in'
            " Segment, then switch to all records with one click.",
            reverse("mappings:list"),
        ),
    ]

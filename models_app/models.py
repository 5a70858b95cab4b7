from __future__ import annotations

from collections.abc import Iterable

from django.db import models

from sources.models import Source

# Columns every data model has whatever properties were chosen: they come from the mirror row itself, not from
# HubSpot's property list, so a mapping can always use the record id and its timestamps.
SYSTEM_COLUMNS: dict[str, dict[str, str]] = {
    "id": {"type": "number", "fieldType": "number", "label": "Record ID"},
    "created_at": {"type": "datetime", "fieldType": "date", "label": "Created at"},
    "updated_at": {"type": "datetime", "fieldType": "date", "label": "Updated at"},
}


def model_columns(chosen: Iterable[str]) -> list[str]:
    """The columns a model with these chosen properties gives its mappings: the system columns, then the chosen
    properties (without duplicates). Every count of a model's columns (the save message, the model page, the
    Models tab, the preview) is the length of this list, so they all agree."""
    return [*SYSTEM_COLUMNS, *(c for c in dict.fromkeys(chosen) if c not in SYSTEM_COLUMNS)]


def column_count(chosen: Iterable[str]) -> int:
    return len(model_columns(chosen))


class DataModel(models.Model):
    """A view over the mirror: one collection of one source, and the columns (HubSpot property names) it shows."""

    workspace_path = "source__workspace"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="data_models")
    collection = models.CharField(max_length=50)
    name = models.CharField(max_length=100)
    columns = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def all_columns(self) -> list[str]:
        """The system columns followed by the chosen properties (without duplicates)."""
        return model_columns(self.columns)

    @property
    def column_count(self) -> int:
        return column_count(self.columns)

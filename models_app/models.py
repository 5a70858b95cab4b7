from __future__ import annotations

from django.db import models

from sources.models import Source

# Columns every data model has whatever properties were chosen: they come from the mirror row itself, not from
# HubSpot's property list, so a mapping can always use the record id and its timestamps.
SYSTEM_COLUMNS: dict[str, dict[str, str]] = {
    "id": {"type": "number", "fieldType": "number", "label": "Record ID"},
    "created_at": {"type": "datetime", "fieldType": "date", "label": "Created at"},
    "updated_at": {"type": "datetime", "fieldType": "date", "label": "Updated at"},
}


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
        return [*SYSTEM_COLUMNS, *(c for c in self.columns if c not in SYSTEM_COLUMNS)]

from __future__ import annotations

from typing import Any, cast

from django import forms

from sources.models import Source

from .models import SYSTEM_COLUMNS, DataModel


class DataModelForm(forms.Form):
    """Name and columns of a data model. The collection is chosen before (and fixed once the model exists);
    `allowed` are the property names the admin may tick: HubSpot's schema plus the model's current columns (a
    column HubSpot deleted may be kept, and is flagged, until the admin removes it)."""

    name = forms.CharField(max_length=100, help_text="Unique within this source, e.g. “Contacts for Profiles”.")
    columns = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(
        self, *args: Any, source: Source, allowed: list[str], instance: DataModel | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self.instance = instance
        columns = cast(forms.MultipleChoiceField, self.fields["columns"])
        columns.choices = [(name, name) for name in allowed if name not in SYSTEM_COLUMNS]

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the model a name.")
        taken = DataModel.objects.filter(source=self.source, name__iexact=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"This source already has a model called “{name}”. Choose another name.")
        return name

    def clean_columns(self) -> list[str]:
        columns = [c for c in self.cleaned_data.get("columns") or [] if c not in SYSTEM_COLUMNS]
        if not columns:
            raise forms.ValidationError(
                "Tick at least one column. The record id and the created / updated times are always included."
            )
        return columns

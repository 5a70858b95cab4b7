from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.utils import timezone
from django.utils.text import slugify

from hubsync.models import Workspace

from .models import SYNC_INTERVAL_CHOICES, Source

SCHEMA_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
SCHEMA_NAME_MAX = 63  # PostgreSQL's identifier limit, so a schema of this name can exist in a warehouse later


def default_schema_name(name: str) -> str:
    """`HubSpot EU` -> `hubspot_eu`: lowercase letters, digits and underscores, starting with a letter."""
    slug = slugify(name).replace("-", "_")
    slug = re.sub(r"[^a-z0-9_]", "", slug).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"hubspot_{slug}".strip("_")
    return slug[:SCHEMA_NAME_MAX]


def unique_schema_name(workspace: Workspace, name: str) -> str:
    base = default_schema_name(name)
    taken = set(Source.objects.filter(workspace=workspace).values_list("schema_name", flat=True))
    candidate, n = base, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate = base[: SCHEMA_NAME_MAX - len(suffix)] + suffix
        n += 1
    return candidate


def _interval_key(value: timedelta) -> str:
    return str(int(value.total_seconds()))


INTERVAL_CHOICES = [(_interval_key(v), label) for v, label in SYNC_INTERVAL_CHOICES]
DEFAULT_INTERVAL = _interval_key(timedelta(hours=3))


class NameForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="How this source is called in hubsync, e.g. “HubSpot”.")
    label = forms.CharField(
        max_length=100, required=False, help_text="Optional, e.g. “Production portal” or “EU team”."
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the source a name.")
        return name


class SchemaNameForm(forms.Form):
    schema_name = forms.CharField(max_length=SCHEMA_NAME_MAX)

    def __init__(self, *args: Any, workspace: Workspace, exclude_pk: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.exclude_pk = exclude_pk

    def clean_schema_name(self) -> str:
        value = self.cleaned_data["schema_name"].strip()
        if not SCHEMA_NAME_RE.match(value):
            raise forms.ValidationError(
                "Use lowercase letters, digits and underscores only, starting with a letter (e.g. hubspot_eu)."
            )
        taken = Source.objects.filter(workspace=self.workspace, schema_name=value)
        if self.exclude_pk is not None:
            taken = taken.exclude(pk=self.exclude_pk)
        if taken.exists():
            raise forms.ValidationError(f"Another source in this workspace already uses the schema name “{value}”.")
        return value


class SelectiveSyncForm(forms.Form):
    start_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Only records created or changed on or after this day are read. Leave blank for the full history.",
    )
    sync_interval = forms.ChoiceField(choices=INTERVAL_CHOICES, initial=DEFAULT_INTERVAL, label="Sync frequency")
    collections = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, required=True)

    def __init__(self, *args: Any, collection_choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["collections"]).choices = collection_choices
        self.fields["collections"].error_messages["required"] = "Choose at least one collection to sync."

    def clean_start_date(self):
        value = self.cleaned_data.get("start_date")
        if value and value > timezone.localdate():
            raise forms.ValidationError("The start date cannot be in the future.")
        return value

    def clean_sync_interval(self) -> timedelta:
        return timedelta(seconds=int(self.cleaned_data["sync_interval"]))


class BasicSettingsForm(forms.Form):
    name = forms.CharField(max_length=100)
    label = forms.CharField(max_length=100, required=False)
    schema_name = forms.CharField(max_length=SCHEMA_NAME_MAX, required=False)

    def __init__(self, *args: Any, source: Source, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        # Fixed after the first sync: models, mappings and any warehouse copy refer to it by name.
        self.schema_locked = source.first_synced_at is not None
        if self.schema_locked:
            self.fields["schema_name"].disabled = True

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the source a name.")
        return name

    def clean_schema_name(self) -> str:
        if self.schema_locked:
            return self.source.schema_name
        sub = SchemaNameForm(
            {"schema_name": self.cleaned_data.get("schema_name", "")},
            workspace=self.source.workspace,
            exclude_pk=self.source.pk,
        )
        if not sub.is_valid():
            raise forms.ValidationError(sub.errors["schema_name"].as_data())
        return sub.cleaned_data["schema_name"]


class DeleteForm(forms.Form):
    confirm_name = forms.CharField(label="Type the source's name to confirm")

    def __init__(self, *args: Any, source: Source, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source

    def clean_confirm_name(self) -> str:
        value = self.cleaned_data["confirm_name"].strip()
        if value != self.source.name:
            raise forms.ValidationError(f"Type “{self.source.name}” exactly to delete this source.")
        return value

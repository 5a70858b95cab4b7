"""Forms of the Segment Profiles destination: the destination itself, its Profile Spaces and the mapping editor.

The mapping editor validates everything Segment would otherwise refuse (or silently drop) *before* saving, and
says why next to the field concerned. Trait rows arrive as parallel lists (`trait_column`, `trait_name`) so
rows can be added and removed in the browser without renumbering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, cast

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.forms.utils import ErrorDict
from django.utils.datastructures import MultiValueDict

from hubsync.fields import DecryptionError
from models_app.models import SYSTEM_COLUMNS, DataModel
from sources.models import SourceCollection

from .models import Destination, Mapping, ProfileSpace
from .segment import clean_custom_endpoint

# --- destination ------------------------------------------------------------------------------------------


def is_sandbox_write_key(key: str) -> bool:
    """Keys of this server's Segment sandbox (settings.SANDBOX_SEGMENT_WRITE_KEY_PREFIX)."""
    return bool(key) and key.startswith(settings.SANDBOX_SEGMENT_WRITE_KEY_PREFIX)


def region_choices() -> list[tuple[str, str]]:
    """US and EU always; the sandbox endpoint only when this server runs the sandbox; a custom endpoint last."""
    choices: list[tuple[str, str]] = [
        (ProfileSpace.Region.US, ProfileSpace.Region.US.label),
        (ProfileSpace.Region.EU, ProfileSpace.Region.EU.label),
    ]
    if settings.SANDBOX:
        choices.append((ProfileSpace.Region.SANDBOX, ProfileSpace.Region.SANDBOX.label))
    choices.append((ProfileSpace.Region.CUSTOM, ProfileSpace.Region.CUSTOM.label))
    return choices


WRITE_KEY_HELP = (
    "Required. In Segment: Unify → Profiles sync → the space's source → Settings → API keys → Write key. "
    "A write key works only in its own region."
)
ENDPOINT_HELP = (
    "Leave empty to send to the region above. Or the API root of a Segment-compatible host (a proxy or your own "
    "domain), used instead of the region's address for deliveries, the mapping test and the connection check, for "
    "example https://segment-proxy.example.com (hubsync adds /v1/batch). https only, unless DEBUG is on."
)


class SpaceFieldsMixin(forms.Form):
    """The fields that address a Profile Space: write key, region and, for the custom region, its endpoint.

    A sandbox write key (it starts with the sandbox's prefix) picks the sandbox region by itself while the sandbox
    runs, so a sandbox key is never sent to api.segment.io; a real key is refused for the sandbox region."""

    instance: ProfileSpace | None
    write_key = forms.CharField(
        max_length=200,
        required=False,
        strip=True,
        label="Write key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    region = forms.ChoiceField(choices=(), initial=ProfileSpace.Region.US)
    endpoint = forms.CharField(
        max_length=300,
        required=False,
        label="Custom endpoint",
        help_text=ENDPOINT_HELP,
        widget=forms.URLInput(attrs={"placeholder": "https://segment-proxy.example.com", "spellcheck": "false"}),
    )

    def setup_space_fields(self, instance: ProfileSpace | None) -> None:
        self.instance = instance
        self.notes: list[str] = []
        choices = region_choices()
        if instance is not None and instance.region not in dict(choices):
            # A sandbox space on a server that no longer runs the sandbox: keep it selectable so it can be moved.
            choices.append((instance.region, instance.get_region_display()))
        cast(forms.ChoiceField, self.fields["region"]).choices = choices
        key_field = self.fields["write_key"]
        key_field.widget.attrs["data-sandbox-prefix"] = (
            settings.SANDBOX_SEGMENT_WRITE_KEY_PREFIX if settings.SANDBOX else ""
        )
        if instance is not None:
            key_field.help_text = "Saved and hidden. Enter a new write key only to replace it."
            key_field.label = "New write key"
        else:
            key_field.label = "Write key (required)"
            # Validated in clean_write_key (a default sandbox space needs none), so the partial must not call it
            # optional either.
            key_field.required_here = True  # type: ignore[attr-defined]
            # Not the HTML `required` attribute: "Use the default sandbox space" needs no key.
            key_field.widget.attrs["aria-required"] = "true"
            key_field.help_text = WRITE_KEY_HELP
            if settings.SANDBOX:
                key_field.help_text += (
                    " Sandbox keys start with <code>sbx_seg_</code> and pick the sandbox region by themselves: see the"
                    ' <a href="/sandbox/segment/" target="_blank" rel="noopener">Segment sandbox page</a> for the'
                    " spaces and their keys."
                )

    def clean_write_key(self) -> str:
        key = self.cleaned_data.get("write_key") or ""
        if self.instance is None and not key and not self.wants_default_sandbox() and not self.space_left_out():
            raise forms.ValidationError("Enter the space's write key: it is required, hubsync sends with it.")
        if key and (len(key) < 8 or re.search(r"\s", key)):
            raise forms.ValidationError("This does not look like a write key (no spaces, at least 8 characters).")
        return key

    def wants_default_sandbox(self) -> bool:
        return False

    def space_left_out(self) -> bool:
        """Whether the form may be saved without a space (only Add destination allows it)."""
        return False

    def _saved_key(self) -> str:
        if self.instance is None:
            return ""
        try:
            return self.instance.write_key
        except DecryptionError:  # an undecryptable saved key: the form then judges only what was entered
            return ""

    def clean_space(self, cleaned: dict[str, Any]) -> None:
        """Region and endpoint, decided together with the key (called from clean()). An endpoint entered means
        "send there": the space gets the custom region whatever region was left selected."""
        if "write_key" not in cleaned:
            return
        endpoint = (cleaned.get("endpoint") or "").strip()
        region = cleaned.get("region") or ProfileSpace.Region.US
        if endpoint and region != ProfileSpace.Region.CUSTOM:
            self.notes.append("A custom endpoint was entered, so the space sends there instead of to the region.")
            region = ProfileSpace.Region.CUSTOM
        if region == ProfileSpace.Region.CUSTOM:
            try:
                cleaned["endpoint"] = clean_custom_endpoint(endpoint)
            except ValueError as exc:
                self.add_error("endpoint", str(exc))
        else:
            cleaned["endpoint"] = ""
            region = self._region_for_key(cleaned["write_key"] or self._saved_key(), region)
        cleaned["region"] = region

    def _region_for_key(self, key: str, region: str) -> str:
        """A sandbox key picks the sandbox region (while the sandbox runs); a real key cannot use it."""
        sandbox_key = is_sandbox_write_key(key)
        if sandbox_key and region in (ProfileSpace.Region.US, ProfileSpace.Region.EU):
            if settings.SANDBOX:
                self.notes.append(
                    "That is a sandbox write key, so the space sends to the sandbox on this server, not to Segment."
                )
                return ProfileSpace.Region.SANDBOX
            self.add_error(
                "write_key",
                "This is a write key of hubsync's Segment sandbox, which this server does not run: enter the "
                "write key of your Segment space.",
            )
        elif region == ProfileSpace.Region.SANDBOX and key and not sandbox_key:
            self.add_error(
                "region",
                f"Sandbox write keys start with {settings.SANDBOX_SEGMENT_WRITE_KEY_PREFIX}; this one looks like a "
                "real Segment key. Choose the region of its Segment workspace (US or EU).",
            )
        return region


class ProfileSpaceForm(SpaceFieldsMixin):
    """Add a space (write key required) or change one (an empty write key keeps the saved one). The saved key
    is never put back into the page: the input is a password field rendered empty."""

    name = forms.CharField(max_length=100, label="Profile Space name")
    use_default_sandbox = forms.BooleanField(required=False)
    field_order = ["name", "write_key", "region", "endpoint"]

    def __init__(self, *args: Any, instance: ProfileSpace | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setup_space_fields(instance)
        if self.wants_default_sandbox():
            self.fields["name"].required = False

    def wants_default_sandbox(self) -> bool:
        return bool(
            settings.SANDBOX and self.instance is None and self.is_bound and self.data.get("use_default_sandbox")
        )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name and not self.wants_default_sandbox():
            raise forms.ValidationError("Give the Profile Space a name.")
        return name

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.wants_default_sandbox():
            cleaned.update(default_sandbox_space(cleaned.get("name") or ""))
            return cleaned
        self.clean_space(cleaned)
        return cleaned


def default_sandbox_space(name: str = "") -> dict[str, Any]:
    return {
        "name": name or settings.SANDBOX_SEGMENT_DEFAULT_SPACE_NAME,
        "write_key": settings.SANDBOX_SEGMENT_DEFAULT_WRITE_KEY,
        "region": ProfileSpace.Region.SANDBOX,
        "endpoint": "",
    }


class DestinationForm(SpaceFieldsMixin):
    """Add destination: the destination and the Profile Space it sends to, so that the next step of the guide
    (create a model on the source's Models tab) can follow at once."""

    kind = forms.ChoiceField(
        choices=Destination.Kind.choices,
        initial=Destination.Kind.SEGMENT_PROFILES,
        widget=forms.RadioSelect,
        label="Destination type",
    )
    name = forms.CharField(
        max_length=100, label="Destination name", help_text="For example the Segment workspace it sends to."
    )
    use_default_sandbox = forms.BooleanField(
        required=False,
        label="Use the default sandbox space",
        help_text="The Profile Space this server's Segment sandbox has out of the box: nothing to copy.",
    )
    space_name = forms.CharField(max_length=100, required=False, label="Profile Space name")
    field_order = ["kind", "name", "use_default_sandbox", "space_name", "write_key", "region", "endpoint"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setup_space_fields(None)
        if not settings.SANDBOX:
            del self.fields["use_default_sandbox"]

    def wants_default_sandbox(self) -> bool:
        return bool(settings.SANDBOX and self.is_bound and self.data.get("use_default_sandbox"))

    def space_left_out(self) -> bool:
        """Every Profile Space field left empty: the destination is created alone and its space added on its
        Settings tab afterwards (the order this page had before it took the space too). The region's select always
        posts a value, so it does not count."""
        fields = ("space_name", "write_key", "endpoint", "use_default_sandbox")
        return self.is_bound and not any((self.data.get(f) or "").strip() for f in fields)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the destination a name.")
        return name

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        space: dict[str, Any] | None
        if self.space_left_out():
            space = None
        elif self.wants_default_sandbox():
            space = default_sandbox_space((cleaned.get("space_name") or "").strip())
        else:
            self.clean_space(cleaned)
            space = {
                # A space without a name of its own is called after the destination.
                "name": (cleaned.get("space_name") or "").strip() or cleaned.get("name") or "Profile Space",
                "write_key": cleaned.get("write_key", ""),
                "region": cleaned.get("region", ""),
                "endpoint": cleaned.get("endpoint", ""),
            }
        cleaned["space"] = space
        return cleaned


class RenameForm(forms.Form):
    name = forms.CharField(max_length=100)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("The name cannot be empty.")
        return name


# --- mappings ---------------------------------------------------------------------------------------------


def snake_case(text: str) -> str:
    """`First name` -> `first_name`, `hs_lead_status` stays, `NumEmployees` -> `num_employees`."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text.strip())
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    return text or "trait"


def column_schema(data_model: DataModel) -> dict[str, dict[str, Any]]:
    """{column: {"label", "type", "fieldType", ...}} for the model's columns, from the last discovered schema."""
    schema = (
        SourceCollection.objects.filter(source_id=data_model.source_id, collection=data_model.collection)
        .values_list("properties", flat=True)
        .first()
    ) or {}
    return {**schema, **SYSTEM_COLUMNS}


def suggest_trait(column: str, spec: dict[str, Any] | None) -> str:
    """The trait name offered for a column: the record id reads `hubspot_id` on a profile; other columns the
    snake_case of their HubSpot label (`First name` -> `first_name`), or of their name."""
    if column == "id":
        return "hubspot_id"
    if column in SYSTEM_COLUMNS:
        return column
    label = (spec or {}).get("label") or ""
    return snake_case(label) if label else snake_case(column)


@dataclass
class TraitRow:
    column: str = ""
    name: str = ""
    errors: list[str] = field(default_factory=list)


IDENTIFIER_HELP = {
    "user_id": "Your stable id of the person (for example their e-mail or a customer id). Segment needs a User ID "
    "or an Anonymous ID on every message.",
    "anonymous_id": "Used when there is no User ID. Segment needs a User ID or an Anonymous ID on every message.",
    "group_id": "The account's id (for example the company's domain or record id). Group calls need it.",
}


IDENTIFIER_FORMAT_CHOICES = {
    Mapping.IdentifierFormat.TRIM: "Trim spaces: “ ann@example.com ” is sent as “ann@example.com”.",
    Mapping.IdentifierFormat.LOWER: "Trim spaces and lower-case: “ Ann@Example.com ” is sent as “ann@example.com”, so "
    "a change of capitals in HubSpot keeps the same profile. Best for e-mail addresses.",
    Mapping.IdentifierFormat.AS_IS: "As in HubSpot: sent exactly as stored, spaces and capitals included.",
    Mapping.IdentifierFormat.TRIM_IDENTIFIERS: "Trim spaces in the identifiers only; traits keep HubSpot's value "
    "(how mappings made before this option work).",
}


class DataModelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: DataModel) -> str:
        return f"{obj.name} · {obj.source.name} {obj.collection}"


class MappingForm(forms.Form):
    # Bound: the posted QueryDict (copied); unbound: Django's empty MultiValueDict. Both have getlist().
    data: MultiValueDict[str, Any]

    name = forms.CharField(
        max_length=100,
        required=False,
        help_text="Shown in lists next to its Profile Space; empty: the data model's name.",
    )
    data_model = DataModelChoiceField(queryset=DataModel.objects.none(), label="Data model", empty_label="Choose…")
    profile_space = forms.ModelChoiceField(
        queryset=ProfileSpace.objects.none(), label="Profile Space", empty_label="Choose…"
    )
    action = forms.ChoiceField(
        choices=Mapping.Action.choices, widget=forms.RadioSelect, initial=Mapping.Action.IDENTIFY
    )
    user_id = forms.ChoiceField(required=False, label="User ID", help_text=IDENTIFIER_HELP["user_id"])
    anonymous_id = forms.ChoiceField(required=False, label="Anonymous ID", help_text=IDENTIFIER_HELP["anonymous_id"])
    group_id = forms.ChoiceField(required=False, label="Group ID", help_text=IDENTIFIER_HELP["group_id"])
    empty_values = forms.ChoiceField(
        label="Empty values",
        widget=forms.RadioSelect,
        initial=Mapping.EMPTY_NULL,
        choices=[
            (Mapping.EMPTY_NULL, "Send null: an empty HubSpot value clears the trait on the profile"),
            (Mapping.EMPTY_OMIT, "Leave out: the profile keeps the value it had"),
        ],
    )

    identifier_format = forms.ChoiceField(
        label="Identifier format",
        widget=forms.RadioSelect,
        initial=Mapping.IdentifierFormat.TRIM,
        choices=(),
        help_text="Applied to the User ID, Anonymous ID and Group ID, and to every trait that reads the same "
        "column (an e-mail trait then equals the User ID). Changing it changes the identifiers Segment receives: "
        "a record whose identifier is written differently reaches a new profile, the old one stays as it was.",
    )

    archived_behaviour = forms.ChoiceField(
        label="When a record is archived in HubSpot",
        widget=forms.RadioSelect,
        initial=Mapping.ArchivedBehaviour.NOTHING,
        choices=Mapping.ArchivedBehaviour.choices,
    )
    archived_trait = forms.CharField(
        required=False,
        label="Trait name",
        widget=forms.TextInput(attrs={"maxlength": 200, "autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(
        self,
        data: Any = None,
        *,
        workspace: Any,
        destination: Destination,
        instance: Mapping | None = None,
        initial: dict[str, Any] | None = None,
        validate: bool = True,
    ) -> None:
        if data is not None:
            # Sections the page had not rendered yet (before a data model was chosen) post nothing: their
            # defaults apply, as they would have been shown.
            data = data.copy()
            for key, default in (
                ("action", Mapping.Action.IDENTIFY),
                ("empty_values", Mapping.EMPTY_NULL),
                ("archived_behaviour", Mapping.ArchivedBehaviour.NOTHING),
                # Not posted: the mapping keeps the format it has (mappings made before the option: trim_ids).
                ("identifier_format", (instance or Mapping()).identifier_format),
            ):
                if not data.get(key):
                    data[key] = default
        super().__init__(data, initial=initial)
        # False when the editor posts back only to show another model's columns or one more row: what was
        # entered is shown again, without complaining about what is not filled in yet.
        self.validate = validate
        self.destination = destination
        self.instance = instance
        models_qs: QuerySet[DataModel] = DataModel.objects.filter(source__workspace=workspace).select_related("source")
        cast(forms.ModelChoiceField, self.fields["data_model"]).queryset = models_qs
        cast(forms.ModelChoiceField, self.fields["profile_space"]).queryset = destination.profile_spaces.all()
        # Not `self.data_model`: that name is the form field's.
        self.chosen_model = self._chosen_model(models_qs)
        self.schema = column_schema(self.chosen_model) if self.chosen_model else {}
        self.columns = self.chosen_model.all_columns if self.chosen_model else []
        choices = [("", "— not mapped —")] + [(c, self.column_label(c)) for c in self.columns]
        for key in Mapping.IDENTIFIER_KEYS:
            cast(forms.ChoiceField, self.fields[key]).choices = choices
        self.trait_rows = self._trait_rows()
        # The format of mappings made before the option is offered only to them, and to posts that leave it out.
        formats = [Mapping.IdentifierFormat.TRIM, Mapping.IdentifierFormat.LOWER, Mapping.IdentifierFormat.AS_IS]
        current = data.get("identifier_format") if data is not None else (initial or {}).get("identifier_format")
        if (instance is not None and instance.identifier_format not in formats) or current not in (None, *formats):
            formats.append(Mapping.IdentifierFormat.TRIM_IDENTIFIERS)
        format_field = cast(forms.ChoiceField, self.fields["identifier_format"])
        format_field.choices = [(f.value, IDENTIFIER_FORMAT_CHOICES[f]) for f in formats]

    # --- what the editor shows ---------------------------------------------------------------------------
    def _chosen_model(self, qs: QuerySet[DataModel]) -> DataModel | None:
        raw = self.data.get("data_model") if self.is_bound else (self.initial.get("data_model") or "")
        if isinstance(raw, DataModel):
            raw = raw.pk
        try:
            return qs.filter(pk=int(raw)).first() if raw else None
        except (TypeError, ValueError):
            return None

    def column_label(self, column: str) -> str:
        spec = self.schema.get(column) or {}
        label = spec.get("label")
        return f"{label} ({column})" if label and label != column else column

    def column_options(self) -> list[dict[str, str]]:
        """For the trait rows' selects: value, label, type and the suggested trait name."""
        return [
            {
                "value": c,
                "label": self.column_label(c),
                "type": (self.schema.get(c) or {}).get("type") or "",
                "suggest": suggest_trait(c, self.schema.get(c)),
            }
            for c in self.columns
        ]

    def _trait_rows(self) -> list[TraitRow]:
        if self.is_bound:
            columns = self.data.getlist("trait_column")
            names = self.data.getlist("trait_name")
            rows = [TraitRow(c.strip(), n.strip()) for c, n in zip(columns, names, strict=False)]
            # A row with neither a column nor a name is an unused blank row, not an error.
            return [r for r in rows if r.column or r.name]
        return [TraitRow(c, n) for c, n in self.initial.get("traits") or []]

    # --- validation ----------------------------------------------------------------------------------------
    def full_clean(self) -> None:
        if not self.validate:
            self._errors = ErrorDict()
            self.cleaned_data = {}
            return
        super().full_clean()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.chosen_model is None or "data_model" not in cleaned:
            return cleaned
        ids = {k: cleaned.get(k) or None for k in Mapping.IDENTIFIER_KEYS}
        action = cleaned.get("action")
        if not any(ids.values()):
            self.add_error(
                "user_id",
                "Map a User ID, an Anonymous ID or a Group ID: without an identifier Segment cannot tell which "
                "profile a row belongs to.",
            )
        elif not ids["user_id"] and not ids["anonymous_id"]:
            why = (
                "Segment's API drops every message without a User ID or an Anonymous ID, group calls included: "
                "map the user the account is attached to as well."
                if action == Mapping.Action.GROUP
                else "Segment's API drops every message without a User ID or an Anonymous ID."
            )
            self.add_error("user_id", why)
        if action == Mapping.Action.GROUP and not ids["group_id"]:
            self.add_error("group_id", "A Group mapping needs a Group ID column: it names the account profile.")
        if action == Mapping.Action.IDENTIFY and ids["group_id"]:
            self.add_error(
                "group_id",
                "Identify calls carry no Group ID. Choose the Group action to build account profiles, or leave "
                "this unmapped.",
            )
        seen: dict[str, int] = {}
        for row in self.trait_rows:
            if not row.column:
                row.errors.append("Choose the column this trait takes its value from.")
            elif row.column not in self.columns:
                row.errors.append(f"{row.column!r} is not a column of the data model {self.chosen_model.name!r}.")
            if not row.name:
                row.errors.append("Give the trait a name.")
            elif len(row.name) > 200:
                row.errors.append("Trait names are at most 200 characters.")
            else:
                key = row.name
                if key in seen:
                    row.errors.append(f"The trait name {row.name!r} is used twice; each trait needs its own name.")
                seen[key] = seen.get(key, 0) + 1
        if any(r.errors for r in self.trait_rows):
            self.add_error(None, "Some traits need attention (see below).")
        self._clean_archived_trait(cleaned)
        cleaned["traits"] = [[r.column, r.name] for r in self.trait_rows]
        cleaned["identifiers"] = ids
        return cleaned

    def _clean_archived_trait(self, cleaned: dict[str, Any]) -> None:
        """The archived trait follows the rules of the other traits, and must not be one of them: the same name
        twice in a message would leave one of the two values on the profile."""
        if cleaned.get("archived_behaviour") != Mapping.ArchivedBehaviour.TRAIT:
            return
        name = (cleaned.get("archived_trait") or "").strip()
        cleaned["archived_trait"] = name
        if not name:
            self.add_error("archived_trait", "Give the trait a name (for example hubspot_archived).")
        elif len(name) > 200:
            self.add_error("archived_trait", "Trait names are at most 200 characters.")
        else:
            column = next((r.column for r in self.trait_rows if r.name == name), None)
            if column is not None:
                self.add_error(
                    "archived_trait",
                    f"The trait name {name!r} is already mapped to the column {column!r} (Traits, above); the "
                    "archived trait needs a name of its own, or one value would overwrite the other.",
                )

    def has_trait_errors(self) -> bool:
        return any(r.errors for r in self.trait_rows)

"""Applying a resolved file: every change through the service the pages use, checked by the form the pages use
(same rules, same audit events), in one transaction. Any refusal rolls the whole apply back and is reported with
its place in the file. A plan runs the same steps and rolls them back, so it finds what an apply would refuse.

Order: settings, sources (settings only), destinations, profile spaces, data models, mappings, alert channels,
deletions (with allow_delete: mappings first, sources last), and last the sources' enabled switch (enabling needs
an enabled mapping, and starts the first sync after commit).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import ProtectedError
from django.http import QueryDict

from hubsync import audit, workspaces
from hubsync.forms import AlertChannelForm, WorkspaceSettingsForm
from hubsync.models import Workspace
from mappings import services as mapping_services
from mappings.forms import DestinationForm, MappingForm, ProfileSpaceForm, RenameForm
from mappings.models import Destination, Mapping, ProfileSpace
from models_app import preview
from models_app import services as model_services
from models_app.forms import DataModelForm
from models_app.models import SYSTEM_COLUMNS, DataModel
from monitoring import alerts
from monitoring import services as monitoring_services
from sources import oauth
from sources import services as source_services
from sources.forms import BasicSettingsForm, SelectiveSyncForm
from sources.models import SYNC_INTERVAL_CHOICES, Source

from .document import ConfigError, format_interval
from .plan import Plan, Resolved, resolve


class CommandLineActor:
    """The actor of `manage.py hubsync_apply`: not a user (the audit log shows "system"); the apply's own audit
    event names the command."""

    is_authenticated = False

    def __str__(self) -> str:
        return "hubsync_apply"


COMMAND_LINE = CommandLineActor()


def _post(values: dict[str, Any]) -> QueryDict:
    """Form data as a browser would post it: lists as repeated fields, False checkboxes absent, None empty."""
    data = QueryDict(mutable=True)
    for name, value in values.items():
        if isinstance(value, list):
            data.setlist(name, [str(v) for v in value])
        elif value is True:
            data[name] = "on"
        elif value is not None and value is not False:
            data[name] = str(value)
    return data


class _Rollback(Exception):
    pass


class Applier:
    def __init__(self, res: Resolved, *, workspace: Workspace, actor: Any, allow_delete: bool) -> None:
        self.res, self.workspace, self.actor, self.allow_delete = res, workspace, actor, allow_delete
        self.want = res.desired
        self.problems = res.plan.problems
        self.sources: dict[str, Source] = {}
        self.models: dict[str, DataModel] = {}
        self.destinations: dict[str, Destination] = {}
        self.spaces: dict[tuple[str, str], ProfileSpace] = {}
        self.mappings: dict[str, Mapping] = {}

    def run(self) -> None:
        self._settings()
        self._sources()
        self._destinations()
        self._spaces()
        self._models()
        self._mappings()
        self._channels()
        self._deletions()
        self._enable_sources()

    def _refused(self, path: str, form: forms.Form, fields: dict[str, str] | None = None, skip: tuple = ()) -> bool:
        """Report the form's errors at their place in the file; returns whether there were any."""
        found = False
        for name, errors in form.errors.items():
            if name in skip:
                continue
            where = path if name == "__all__" else f"{path}.{(fields or {}).get(name, name)}"
            self.problems.append(f"{where}: {' '.join(str(e) for e in errors)}")
            found = True
        return found

    # --- settings and sources -------------------------------------------------------------------------------

    def _settings(self) -> None:
        if not self.res.changed.get("settings"):
            return
        values = {**self.want["settings"], **self.want["alerts"]["rules"]}
        form = WorkspaceSettingsForm(_post(values))
        paths = {name: f"alerts.rules.{name}" for name in self.want["alerts"]["rules"]}
        paths["drift_pauses_mappings"] = "settings.drift_pauses_mappings"
        if not form.is_valid():
            for name, errors in form.errors.items():
                self.problems.append(f"{paths.get(name, name)}: {' '.join(str(e) for e in errors)}")
            return
        workspaces.update_monitoring_settings(workspace=self.workspace, actor=self.actor, **form.cleaned_data)

    def _sources(self) -> None:
        for key, want in sorted(self.want["sources"].items()):
            current_key = self.res.current_key("sources", key)
            if current_key is None:
                continue  # a problem of the plan already: sources are connected in the browser
            source = self.sources[key] = self.res.state.sources[current_key]
            changed = self.res.changed["sources"].get(key, {})
            if {"name", "label"} & set(changed) or current_key != key:
                self._basic(key, source, want)
            if {"start_date", "sync_interval", "collections"} & set(changed):
                self._selective_sync(key, source, want)

    def _basic(self, key: str, source: Source, want: dict[str, Any]) -> None:
        path = f"sources.{key}"
        form = BasicSettingsForm(
            _post({"name": want["name"], "label": want["label"], "schema_name": key}), source=source
        )
        if form.schema_locked and key != source.schema_name:
            self.problems.append(
                f"{path}: the source {source.schema_name!r} has synced already, so its schema name is fixed; use "
                f"{source.schema_name!r} as its key"
            )
            return
        if not self._refused(path, form, {"schema_name": "(key)"}):
            source_services.update_basic(source=source, actor=self.actor, **form.cleaned_data)

    def _selective_sync(self, key: str, source: Source, want: dict[str, Any]) -> None:
        path = f"sources.{key}"
        offered = {c.name for c in oauth.available_collections(source)}
        names = sorted(offered | {sc.collection for sc in source.collections.all()})
        from_file = next((v for v, _ in SYNC_INTERVAL_CHOICES if format_interval(v) == want["sync_interval"]), None)
        if from_file is None:
            allowed = ", ".join(format_interval(v) for v, _ in SYNC_INTERVAL_CHOICES)
            self.problems.append(f"{path}.sync_interval: {want['sync_interval']} is not offered; use one of {allowed}")
            return
        unknown = [c for c in want["collections"] if c not in names]
        if unknown:
            self.problems.append(
                f"{path}.collections: {', '.join(unknown)} cannot be synced from this HubSpot account (it offers: "
                f"{', '.join(names) or 'nothing the granted scopes allow'})"
            )
            return
        start = want["start_date"]
        data = {
            "start_date": start.isoformat() if start else None,
            "sync_interval": int(from_file.total_seconds()),
            "collections": want["collections"],
        }
        form = SelectiveSyncForm(_post(data), collection_choices=[(n, n) for n in names])
        if not self._refused(path, form):
            source_services.update_selective_sync(source=source, actor=self.actor, **form.cleaned_data)

    def _enable_sources(self) -> None:
        for key, source in sorted(self.sources.items()):
            wanted = self.want["sources"][key]["enabled"]
            source.refresh_from_db()
            if wanted == source.enabled:
                continue
            done, missing, _run = source_services.set_enabled(source=source, actor=self.actor, enabled=wanted)
            if not done:
                self.problems.append(f"sources.{key}.enabled: the source cannot be enabled yet: {'; '.join(missing)}")

    # --- destinations and profile spaces --------------------------------------------------------------------

    def _destinations(self) -> None:
        for key, want in sorted(self.want["destinations"].items()):
            path = f"destinations.{key}"
            current_key = self.res.current_key("destinations", key)
            if current_key is None:
                # Its Profile Spaces follow one by one (_spaces): the page's form is given none of the space fields.
                form: forms.Form = DestinationForm(
                    _post({"kind": want["kind"], "name": want["name"], "region": ProfileSpace.Region.US})
                )
                if not self._refused(path, form):
                    self.destinations[key] = mapping_services.create_destination(
                        workspace=self.workspace,
                        actor=self.actor,
                        name=form.cleaned_data["name"],
                        kind=form.cleaned_data["kind"],
                    )
                continue
            destination = self.destinations[key] = self.res.state.destinations[current_key]
            changed = self.res.changed["destinations"].get(key, {})
            if "kind" in changed:
                self.problems.append(f"{path}.kind: a destination's kind cannot change; give a new destination a key")
            if "name" in changed:
                form = RenameForm(_post({"name": want["name"]}))
                if not self._refused(path, form):
                    mapping_services.rename_destination(
                        destination=destination, name=form.cleaned_data["name"], actor=self.actor
                    )

    def _spaces(self) -> None:
        for dest_key, dest in sorted(self.want["destinations"].items()):
            destination = self.destinations.get(dest_key)
            if destination is None:
                continue
            for space_key, want in sorted(dest["profile_spaces"].items()):
                path = f"destinations.{dest_key}.profile_spaces.{space_key}"
                secret = self.res.secrets.get(("space", dest_key, space_key), "")
                data = _post(
                    {
                        "name": want["name"],
                        "region": want["region"],
                        "endpoint": want.get("endpoint") or "",
                        "write_key": secret,
                    }
                )
                pair = self.res.space_pairs.get((dest_key, space_key))
                if pair is None:
                    form = ProfileSpaceForm(data)
                    if not self._refused(path, form):
                        self.spaces[(dest_key, space_key)] = mapping_services.create_profile_space(
                            destination=destination, actor=self.actor, **_space_fields(form)
                        )
                    continue
                space = self.spaces[(dest_key, space_key)] = self.res.state.profile_spaces[pair]
                if (dest_key, space_key) in self.res.changed["profile_spaces"] or secret:
                    form = ProfileSpaceForm(data, instance=space)
                    if not self._refused(path, form, {"write_key": "write_key_env"}):
                        mapping_services.update_profile_space(space=space, actor=self.actor, **_space_fields(form))

    # --- data models and mappings ---------------------------------------------------------------------------

    def _schema(self, source: Source, collection: str, columns: list[str]) -> tuple[list[str] | None, str]:
        """The property names a model of this collection may use (HubSpot asked again when the stored schema
        lacks one of `columns`), and why HubSpot could not be asked; None when the source has no such
        collection."""
        sc = source.collections.filter(collection=collection).first()
        if sc is None:
            return None, ""
        schema = sc.properties or {}
        why = ""
        if any(c not in schema and c not in SYSTEM_COLUMNS for c in columns):
            schema, error = preview.load_schema(source, sc)
            why = f" ({error.title})" if error is not None else ""
        return list(schema), why

    def _models(self) -> None:
        for key, want in sorted(self.want["data_models"].items()):
            path = f"data_models.{key}"
            source = self.sources.get(want["source"])
            if source is None:
                continue
            current_key = self.res.current_key("data_models", key)
            model = self.res.state.data_models[current_key] if current_key else None
            if model is not None:
                self.models[key] = model
                changed = self.res.changed["data_models"].get(key, {})
                if {"source", "collection"} & set(changed):
                    self.problems.append(
                        f"{path}: a data model's source and collection are fixed once it exists; give the new "
                        "model a key of its own"
                    )
                    continue
                if not changed:
                    continue
            allowed, why = self._schema(source, want["collection"], want["columns"])
            if allowed is None:
                self.problems.append(
                    f"{path}.collection: the source {want['source']!r} has no collection {want['collection']!r} "
                    f"(add it to sources.{want['source']}.collections)"
                )
                continue
            allowed = list(dict.fromkeys([*allowed, *(model.columns if model else [])]))
            unknown = [c for c in want["columns"] if c not in allowed and c not in SYSTEM_COLUMNS]
            if unknown:
                self.problems.append(
                    f"{path}.columns: {', '.join(unknown)}: not properties of HubSpot's {want['collection']}{why}"
                )
                continue
            form = DataModelForm(
                _post({"name": want["name"], "columns": want["columns"]}),
                source=source,
                allowed=allowed,
                instance=model,
            )
            if self._refused(path, form):
                continue
            if model is None:
                self.models[key] = model_services.create_data_model(
                    workspace=self.workspace,
                    actor=self.actor,
                    source=source,
                    collection=want["collection"],
                    **form.cleaned_data,
                )
            else:
                model_services.update_data_model(
                    workspace=self.workspace, actor=self.actor, data_model=model, **form.cleaned_data
                )

    def _mappings(self) -> None:
        for key, want in sorted(self.want["mappings"].items()):
            model = self.models.get(want["model"])
            destination = self.destinations.get(want["destination"])
            space = self.spaces.get((want["destination"], want["profile_space"]))
            if model is None or destination is None or space is None:
                continue  # refused or missing above: already a problem
            current_key = self.res.current_key("mappings", key)
            mapping = self.res.state.mappings[current_key] if current_key else Mapping(destination=destination)
            if current_key and mapping.destination_id != destination.pk:
                self.problems.append(
                    f"mappings.{key}.destination: a mapping's destination is fixed once it exists; give the new "
                    "mapping a key of its own"
                )
                continue
            if current_key is None or set(self.res.changed["mappings"].get(key, {})) - {"enabled"}:
                saved = self._save_mapping(key, want, mapping, model, space)
                if saved is None:
                    continue
                mapping = saved
            self.mappings[key] = mapping
            self._mapping_switches(key, want, mapping)

    def _save_mapping(
        self, key: str, want: dict[str, Any], mapping: Mapping, model: DataModel, space: ProfileSpace
    ) -> Mapping | None:
        options = want["options"]
        data = {
            "name": want["name"],
            "data_model": model.pk,
            "profile_space": space.pk,
            "action": want["action"],
            **{k: want["identifiers"].get(k) for k in Mapping.IDENTIFIER_KEYS},
            "empty_values": options["empty_values"],
            "identifier_format": options["identifier_format"],
            "archived_behaviour": options["archived_behaviour"],
            "archived_trait": options.get("archived_trait"),
            "trait_column": list(want["traits"].values()),
            "trait_name": list(want["traits"]),
        }
        form = MappingForm(
            _post(data),
            workspace=self.workspace,
            destination=mapping.destination,
            instance=mapping if mapping.pk else None,
        )
        paths = {k: f"identifiers.{k}" for k in Mapping.IDENTIFIER_KEYS}
        paths.update(
            data_model="model",
            **{
                k: f"options.{k}" for k in ("empty_values", "identifier_format", "archived_behaviour", "archived_trait")
            },
        )
        path = f"mappings.{key}"
        form.is_valid()
        # The form's summary ("some traits need attention") is replaced by each trait's own error.
        refused = self._refused(path, form, paths, skip=("__all__",) if form.has_trait_errors() else ())
        for row in form.trait_rows:
            for error in row.errors:
                self.problems.append(f"{path}.traits.{row.name or '?'}: {error}")
                refused = True
        if refused:
            return None
        return mapping_services.save_mapping(mapping=mapping, data=form.cleaned_data, actor=self.actor)

    def _mapping_switches(self, key: str, want: dict[str, Any], mapping: Mapping) -> None:
        size = want["options"].get("sample_size")
        if size != mapping.sample_size:
            try:
                mapping_services.set_sample_size(mapping=mapping, sample_size=size, actor=self.actor)
            except mapping_services.MappingsError as exc:
                self.problems.append(f"mappings.{key}.options.sample_size: {exc} (null: all records)")
        if want["enabled"] != mapping.enabled:
            mapping_services.set_mapping_enabled(mapping=mapping, enabled=want["enabled"], actor=self.actor)

    # --- alert channels -------------------------------------------------------------------------------------

    def _channels(self) -> None:
        members: set[str] | None = None
        for key, want in sorted(self.want["alerts"]["channels"].items()):
            path = f"alerts.channels.{key}"
            current_key = self.res.current_key("channels", key)
            channel = self.res.state.channels[current_key] if current_key else None
            secret = self.res.secrets.get(("channel", key), "")
            if channel is not None and not (self.res.changed["channels"].get(key) or secret):
                continue
            if channel is not None and channel.kind != want["kind"]:
                self.problems.append(f"{path}.kind: a channel's kind cannot change; give a new channel a key")
                continue
            if getattr(self.actor, "is_authenticated", False) and not alerts.has_verified_email(self.actor):
                self.problems.append(f"{path}: verify your e-mail address before you add or change alert channels")
                continue
            if members is None:
                members = alerts.member_addresses(self.workspace.pk)
            data = {
                "kind": want["kind"],
                "name": want["name"],
                "emails": ", ".join(want.get("emails") or []),
                "webhook_url": secret,
            }
            form = AlertChannelForm(_post(data), member_emails=members)
            # An existing webhook channel keeps its saved URL when the file's variable is not set.
            skip = ("webhook_url",) if channel is not None and not secret else ()
            paths = {"webhook_url": "webhook_url_env"}
            if self._refused(path, form, paths, skip=skip):
                continue
            clean = form.cleaned_data
            if channel is None:
                channel = monitoring_services.create_channel(
                    workspace=self.workspace,
                    kind=clean["kind"],
                    name=clean["name"],
                    emails=clean["emails"],
                    webhook_url=clean.get("webhook_url") or "",
                    actor=self.actor,
                )
            else:
                monitoring_services.update_channel(
                    channel=channel,
                    name=clean["name"],
                    emails=clean["emails"],
                    webhook_url=clean.get("webhook_url") or "",
                    actor=self.actor,
                )
            if channel.enabled != want["enabled"]:
                monitoring_services.toggle_channel(channel=channel, actor=self.actor)

    # --- deletions ------------------------------------------------------------------------------------------

    def _deletions(self) -> None:
        order = ("mappings", "channels", "data_models", "profile_spaces", "destinations", "sources")
        for section in order:
            for key, change in self.res.deletions.get(section, []):
                change.applied = self.allow_delete
                if self.allow_delete:
                    self._delete(section, key, change.path)

    def _delete(self, section: str, key: Any, path: str) -> None:
        state, actor = self.res.state, self.actor
        try:
            if section == "mappings":
                mapping_services.delete_mapping(mapping=state.mappings[key], actor=actor)
            elif section == "channels":
                monitoring_services.delete_channel(channel=state.channels[key], actor=actor)
            elif section == "data_models":
                model_services.delete_data_model(
                    workspace=self.workspace, actor=actor, data_model=state.data_models[key]
                )
            elif section == "profile_spaces":
                mapping_services.delete_profile_space(space=state.profile_spaces[key], actor=actor)
            elif section == "destinations":
                mapping_services.delete_destination(destination=state.destinations[key], actor=actor)
            elif section == "sources":
                source_services.delete_source(source=state.sources[key], actor=actor)
        except (mapping_services.MappingsError, ProtectedError) as exc:
            reason = str(exc) if isinstance(exc, mapping_services.MappingsError) else "mappings still use it"
            self.problems.append(f"{path}: cannot be deleted: {reason}")


# --- the entry points -------------------------------------------------------------------------------------


def plan_yaml(*, workspace: Workspace, text: str) -> Plan:
    """What applying `text` would change. Raises ConfigError for an invalid file; refusals (a missing source,
    an unset variable, a value the workspace's rules refuse) are the plan's `problems`."""
    res = resolve(workspace=workspace, text=text)
    if res.plan.changes and not res.plan.problems:
        try:
            with transaction.atomic():
                Applier(res, workspace=workspace, actor=COMMAND_LINE, allow_delete=True).run()
                raise _Rollback
        except _Rollback:
            pass
        for change in res.plan.changes:
            change.applied = None
    return res.plan


def apply_yaml(*, workspace: Workspace, text: str, actor: Any, allow_delete: bool = False, via: str = "api") -> Plan:
    """Apply `text` to the workspace in one transaction and return the plan it carried out. Deletions only with
    `allow_delete` (otherwise listed as not applied). Raises ConfigError, with `.plan`, when the file is invalid or
    anything is refused: then nothing was changed."""
    with transaction.atomic():
        # Two applies to one workspace take turns: the second plans against what the first left.
        list(Workspace.objects.select_for_update().filter(pk=workspace.pk).values_list("pk", flat=True))
        res = resolve(workspace=workspace, text=text)
        plan = res.plan
        if plan.problems:
            raise ConfigError(plan.problems, plan=plan)
        if not plan.changes:
            return plan
        Applier(res, workspace=workspace, actor=actor, allow_delete=allow_delete).run()
        if plan.problems:
            raise ConfigError(plan.problems, plan=plan)
        counts = plan.counts()
        skipped = sum(1 for c in plan.changes if c.applied is False)
        audit.record(
            workspace=workspace,
            actor=actor,
            verb="config.apply",
            object_type="config",
            object_repr=f"hubsync_apply ({via})",
            changes={
                **counts,
                "deletions_not_applied": skipped,
                "file_sha256": hashlib.sha256(text.encode()).hexdigest(),
            },
        )
    plan.applied = True
    return plan


def _space_fields(form: forms.Form) -> dict[str, str]:
    """What the Profile Space services take from the page's form (which also carries its sandbox shortcut)."""
    return {name: form.cleaned_data[name] for name in ("name", "write_key", "region", "endpoint")}

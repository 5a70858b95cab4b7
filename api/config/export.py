"""A workspace's configuration as a document (see document.py): what `hubsync_export` writes and what the plan
compares a file with. Reads only; no secret leaves the database (write keys and webhook URLs are named by the
environment variable a file would take them from)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from hubsync.models import AlertChannel, Workspace, WorkspaceSettings
from mappings.models import Destination, ProfileSpace
from mappings.models import Mapping as MappingModel
from models_app.models import DataModel
from sources.models import Source

from .document import VERSION, ConfigError, dump, env_name, format_interval, unique_keys

WRITE_KEY_PREFIX = "SEGMENT_WRITE_KEY"
WEBHOOK_PREFIX = "ALERT_WEBHOOK_URL"


@dataclass
class State:
    """A workspace's document and, for each key in it, the object it came from."""

    doc: dict[str, Any]
    sources: dict[str, Source] = field(default_factory=dict)
    data_models: dict[str, DataModel] = field(default_factory=dict)
    destinations: dict[str, Destination] = field(default_factory=dict)
    profile_spaces: dict[tuple[str, str], ProfileSpace] = field(default_factory=dict)
    mappings: dict[str, MappingModel] = field(default_factory=dict)
    channels: dict[str, AlertChannel] = field(default_factory=dict)
    # {index: {id: key}}, built on first use (see _key_of)
    inverse: dict[str, dict[int, Any]] = field(default_factory=dict)


def _keyed(objects: list[Any], fallback: str) -> dict[str, Any]:
    return dict(zip(unique_keys([o.name for o in objects], fallback), objects, strict=True))


def _sorted(items: dict[str, Any]) -> dict[str, Any]:
    return {k: items[k] for k in sorted(items)}


def read_state(workspace: Workspace) -> State:
    state = State(doc={})
    state.sources = {
        s.schema_name: s
        for s in Source.objects.filter(workspace=workspace).prefetch_related("collections").order_by("pk")
    }
    state.data_models = _keyed(list(DataModel.objects.filter(source__workspace=workspace).order_by("pk")), "model")
    state.destinations = _keyed(list(Destination.objects.filter(workspace=workspace).order_by("pk")), "destination")
    spaces_by_dest: dict[int, list[ProfileSpace]] = {}
    for space in ProfileSpace.objects.filter(destination__workspace=workspace).order_by("pk"):
        spaces_by_dest.setdefault(space.destination_id, []).append(space)
    for dest_key, dest in state.destinations.items():
        for space_key, space in _keyed(spaces_by_dest.get(dest.pk, []), "space").items():
            state.profile_spaces[(dest_key, space_key)] = space
    state.mappings = _keyed(
        list(
            # Only the mappings' own columns: the document names related objects by key (and a joined space
            # would decrypt its write key once per mapping).
            MappingModel.objects.filter(destination__workspace=workspace).order_by("pk")
        ),
        "mapping",
    )
    state.channels = _keyed(list(AlertChannel.objects.filter(workspace=workspace).order_by("pk")), "channel")
    state.doc = _document(workspace, state)
    return state


def _key_of(state: State, index: str, obj_id: int) -> Any:
    """The key of the object of `index` ("sources", "data_models", ...) with this id."""
    inverse = state.inverse.get(index)
    if inverse is None:
        objects: Mapping[Any, models.Model] = getattr(state, index)
        inverse = state.inverse[index] = {o.pk: k for k, o in objects.items()}
    return inverse[obj_id]


def _document(workspace: Workspace, state: State) -> dict[str, Any]:
    conf = WorkspaceSettings.for_workspace(workspace.pk)
    return {
        "version": VERSION,
        "workspace": workspace.name,
        "settings": {"drift_pauses_mappings": conf.drift_pauses_mappings},
        "alerts": {
            "rules": {
                "freshness_alert_minutes": conf.freshness_alert_minutes,
                "rejected_alert_threshold": conf.rejected_alert_threshold,
            },
            "channels": _sorted({k: channel_doc(k, c) for k, c in state.channels.items()}),
        },
        "sources": _sorted({k: source_doc(s) for k, s in state.sources.items()}),
        "data_models": _sorted(
            {k: model_doc(m, _key_of(state, "sources", m.source_id)) for k, m in state.data_models.items()}
        ),
        "destinations": _sorted({k: destination_doc(k, d, state) for k, d in state.destinations.items()}),
        "mappings": _sorted({k: mapping_doc(m, state) for k, m in state.mappings.items()}),
    }


def channel_doc(key: str, channel: AlertChannel) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": channel.name, "kind": channel.kind}
    if channel.kind == AlertChannel.Kind.EMAIL:
        doc["emails"] = channel.recipients
    else:
        doc["webhook_url_env"] = env_name(WEBHOOK_PREFIX, key)
    doc["enabled"] = channel.enabled
    return doc


def source_doc(source: Source) -> dict[str, Any]:
    return {
        "hub_id": source.hub_id,
        "hub_domain": source.hub_domain or None,
        "name": source.name,
        "label": source.label,
        "start_date": source.start_date,
        "sync_interval": format_interval(source.sync_interval),
        "collections": sorted(sc.collection for sc in source.collections.all() if sc.selected),
        "enabled": source.enabled,
    }


def model_doc(model: DataModel, source_key: str) -> dict[str, Any]:
    return {"name": model.name, "source": source_key, "collection": model.collection, "columns": list(model.columns)}


def space_env(state: State, dest_key: str, space_key: str) -> str:
    """SEGMENT_WRITE_KEY_<SPACE>, or ..._<DESTINATION>_<SPACE> when two destinations have a space of that key."""
    shared = sum(1 for d, s in state.profile_spaces if s == space_key) > 1
    return env_name(WRITE_KEY_PREFIX, dest_key, space_key) if shared else env_name(WRITE_KEY_PREFIX, space_key)


def destination_doc(key: str, destination: Destination, state: State) -> dict[str, Any]:
    spaces = {
        space_key: {
            "name": space.name,
            "region": space.region,
            **({"endpoint": space.endpoint} if space.endpoint else {}),
            "write_key_env": space_env(state, key, space_key),
        }
        for (dest_key, space_key), space in state.profile_spaces.items()
        if dest_key == key
    }
    return {"name": destination.name, "kind": destination.kind, "profile_spaces": _sorted(spaces)}


def mapping_doc(mapping: MappingModel, state: State) -> dict[str, Any]:
    dest_key = _key_of(state, "destinations", mapping.destination_id)
    space_key = _key_of(state, "profile_spaces", mapping.profile_space_id)[1]
    options: dict[str, Any] = {
        "empty_values": mapping.empty_values,
        "identifier_format": mapping.identifier_format,
        "archived_behaviour": mapping.archived_behaviour,
    }
    if mapping.archived_behaviour == MappingModel.ArchivedBehaviour.TRAIT:
        options["archived_trait"] = mapping.archived_trait
    options["sample_size"] = mapping.sample_size
    return {
        "name": mapping.name,
        "model": _key_of(state, "data_models", mapping.data_model_id),
        "destination": dest_key,
        "profile_space": space_key,
        "action": mapping.action,
        "identifiers": {k: mapping.identifier(k) for k in MappingModel.IDENTIFIER_KEYS if mapping.identifier(k)},
        "traits": {name: column for column, name in mapping.traits or []},
        "options": options,
        "enabled": mapping.enabled,
    }


HEADER = [
    "hubsync configuration as code (manage.py hubsync_export).",
    "Review changes with `manage.py hubsync_apply FILE --plan`; apply them with `manage.py hubsync_apply FILE`.",
    "Secrets are not in this file: each write_key_env / webhook_url_env names the environment variable that holds",
    "the value. Sources are connected in the browser (HubSpot OAuth) and referenced here by schema name and hub id.",
]


def export_yaml(*, workspace: Workspace) -> str:
    """The workspace's configuration as YAML: the same text for the same configuration (keys sorted, no ids, no
    timestamps), so two exports are byte-equal and a diff in Git shows only real changes."""
    return dump(read_state(workspace).doc, HEADER)


def find_workspace(value: str) -> Workspace:
    """The workspace a command names: by id, or by name when one workspace has it. Raises ConfigError."""
    value = value.strip()
    if value.isdigit():
        found = Workspace.objects.filter(pk=int(value)).first()
        if found is not None:
            return found
    named = list(Workspace.objects.filter(name=value).order_by("pk")[:2])
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(str(pk) for pk in Workspace.objects.filter(name=value).values_list("pk", flat=True))
        raise ConfigError(f"--workspace: several workspaces are called {value!r} (ids {ids}): give the id")
    raise ConfigError(f"--workspace: no workspace with the id or name {value!r}")

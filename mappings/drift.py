"""Schema drift: HubSpot properties that a mapping uses were deleted, renamed or changed type.

The extraction engine calls `schema_discovered` after every property discovery with the schema it had and the
one it just read. For every mapping on that collection whose data model or mapping uses a changed property, an
open `MappingIssue` records the exact change. A mapping that *sends* the property (identifier or trait) is
paused when the workspace setting `drift_pauses_mappings` is on (the default), so no wrong data reaches
Segment; with the setting off, or when only the model lists the column, the mapping is flagged and keeps going.

What counts as what (comparing the previous discovery with this one):
- **type change**: the property exists in both with a different `type` (string → number, ...). A `fieldType`
  change alone (text → textarea) does not change the values and is not drift.
- **rename**: HubSpot has no rename event, names are fixed. We call it a rename when, in the same discovery, a
  property disappeared and exactly one new property appeared with the same label (case and surrounding spaces
  ignored); same type preferred when several share the label. Anything else is a delete (plus a new property).
- **delete**: the property disappeared and no rename matched.
A property that comes back under its old name with its old type resolves its open issues ("restored").

Fixes (one click each, `fix_issue`): remove the property from the data model and every mapping of that model,
re-point model and mappings to the renamed property, keep the column with its new type, or resume as is. When a
mapping has no open pausing issue left, it resumes and a delivery is enqueued.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from hubsync import audit
from hubsync.models import WorkspaceSettings
from models_app.models import SYSTEM_COLUMNS

from .models import Mapping, MappingIssue
from .services import request_delivery

logger = logging.getLogger(__name__)

KEPT_KEYS = ("label", "type", "fieldType")


def _spec(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {k: entry.get(k) for k in KEPT_KEYS}


def _label(entry: dict[str, Any]) -> str:
    return str(entry.get("label") or "").strip().casefold()


def detect_changes(old: dict[str, dict], new: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """{old property name: {"kind", "new_property", "old", "new"}} for every deleted, renamed or retyped
    property (see the module doc for the rename heuristic)."""
    removed = [name for name in old if name not in new]
    added = [name for name in new if name not in old]
    changes: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    for name in removed:
        label = _label(old[name])
        candidates = [a for a in added if a not in claimed and label and _label(new[a]) == label]
        if len(candidates) > 1:
            same_type = [a for a in candidates if new[a].get("type") == old[name].get("type")]
            candidates = same_type
        if len(candidates) == 1:
            target = candidates[0]
            claimed.add(target)
            changes[name] = {
                "kind": MappingIssue.Kind.RENAMED,
                "new_property": target,
                "old": _spec(old[name]),
                "new": _spec(new[target]),
            }
        else:
            changes[name] = {
                "kind": MappingIssue.Kind.DELETED,
                "new_property": "",
                "old": _spec(old[name]),
                "new": None,
            }
    for name in old:
        if name in new and old[name].get("type") != new[name].get("type"):
            changes[name] = {
                "kind": MappingIssue.Kind.TYPE_CHANGED,
                "new_property": "",
                "old": _spec(old[name]),
                "new": _spec(new[name]),
            }
    return changes


def _uses(mapping: Mapping, prop: str) -> list[str]:
    """Where a mapping (and its model) uses `prop`, in words."""
    uses = []
    for key in Mapping.IDENTIFIER_KEYS:
        if mapping.identifier(key) == prop:
            uses.append(f"identifier {key}")
    uses += [f"trait {trait}" for column, trait in mapping.traits or [] if column == prop]
    if prop in (mapping.data_model.columns or []):
        uses.append("data model column")
    return uses


def schema_discovered(*, source_collection: Any, old: dict[str, dict], new: dict[str, dict]) -> list[MappingIssue]:
    """Compare two discoveries of one collection's schema; open issues on (and maybe pause) the affected
    mappings, resolve issues whose property came back. Returns the issues opened."""
    if not old:
        return []  # first discovery: nothing to compare with
    sc = source_collection
    mappings = list(
        Mapping.objects.select_related("data_model", "destination").filter(
            data_model__source_id=sc.source_id, data_model__collection=sc.collection
        )
    )
    if not mappings:
        return []
    changes = detect_changes(old, new)
    opened: list[MappingIssue] = []
    with transaction.atomic():
        _resolve_restored(mappings, new)
        if not changes:
            return []
        pause = WorkspaceSettings.for_workspace(mappings[0].destination.workspace_id).drift_pauses_mappings
        now = timezone.now()
        for mapping in mappings:
            to_pause = False
            for prop, change in changes.items():
                uses = _uses(mapping, prop)
                if not uses:
                    continue
                sends = prop in mapping.used_columns()
                issue, created = MappingIssue.objects.get_or_create(
                    mapping=mapping,
                    property_name=prop,
                    resolved_at__isnull=True,
                    defaults={
                        "kind": change["kind"],
                        "new_property": change["new_property"],
                        "details": {
                            "collection": sc.collection,
                            "old": change["old"],
                            "new": change["new"],
                            "uses": uses,
                        },
                        # A disabled mapping is paused too: switching it on must not send wrong data.
                        "paused": pause and sends,
                        "detected_at": now,
                    },
                )
                if created:
                    opened.append(issue)
                    to_pause = to_pause or issue.paused
            if to_pause and not mapping.paused_reason:
                Mapping.objects.filter(pk=mapping.pk).update(paused_reason=Mapping.PAUSED_DRIFT, paused_at=now)
                logger.warning("mapping %s paused: schema drift in %s", mapping.pk, sc.collection)
    return opened


def _resolve_restored(mappings: list[Mapping], new: dict[str, dict]) -> None:
    for issue in MappingIssue.objects.filter(mapping__in=mappings, resolved_at__isnull=True):
        old = issue.details.get("old") or {}
        current = new.get(issue.property_name)
        if current is not None and current.get("type") == old.get("type"):
            _resolve([issue], "restored")


def _resolve(issues: list[MappingIssue], resolution: str) -> None:
    now = timezone.now()
    ids = [i.pk for i in issues]
    MappingIssue.objects.filter(pk__in=ids, resolved_at__isnull=True).update(resolved_at=now, resolution=resolution)
    for mapping_id in {i.mapping_id for i in issues}:
        _maybe_resume(mapping_id)


def _maybe_resume(mapping_id: int) -> None:
    """Resume a drift-paused mapping once no open issue pauses it, and deliver what waited meanwhile."""
    if MappingIssue.objects.filter(mapping_id=mapping_id, resolved_at__isnull=True, paused=True).exists():
        return
    if Mapping.objects.filter(pk=mapping_id, paused_reason=Mapping.PAUSED_DRIFT).update(
        paused_reason="", paused_at=None
    ):
        request_delivery(mapping_id=mapping_id)


class DriftFixError(Exception):
    """A fix that cannot be applied (message for the user); nothing was changed."""


FIXES = ("remove", "repoint", "accept", "resume")


def fix_choices(issue: MappingIssue) -> list[tuple[str, str]]:
    """The one-click fixes that make sense for this issue, (action, button label)."""
    choices: list[tuple[str, str]] = []
    if issue.kind == MappingIssue.Kind.RENAMED:
        choices.append(("repoint", f"Use {issue.new_property} instead"))
    if issue.kind == MappingIssue.Kind.TYPE_CHANGED:
        choices.append(("accept", "Keep it with the new type"))
    if not _is_identifier(issue.mapping, issue.property_name):
        choices.append(("remove", "Remove it from the model and mappings"))
    choices.append(("resume", "Resume without changes"))
    return choices


def _is_identifier(mapping: Mapping, prop: str) -> bool:
    return any(mapping.identifier(k) == prop for k in Mapping.IDENTIFIER_KEYS)


@transaction.atomic
def fix_issue(*, issue: MappingIssue, action: str, actor: Any) -> MappingIssue:
    """Apply one fix. `remove` and `repoint` change the data model and every mapping of it that uses the
    property, and resolve all their open issues on it; `accept` and `resume` resolve this issue only."""
    if action not in dict(fix_choices(issue)):
        raise DriftFixError("This fix does not apply to this change.")
    issue = (
        MappingIssue.objects.select_for_update()
        .select_related("mapping__data_model", "mapping__destination")
        .get(pk=issue.pk)
    )
    if issue.resolved_at is not None:
        raise DriftFixError("This change was already dealt with.")
    mapping = issue.mapping
    model = mapping.data_model
    workspace = mapping.destination.workspace
    prop = issue.property_name
    if action in ("accept", "resume"):
        _resolve([issue], "accepted" if action == "accept" else "dismissed")
        audit.record(workspace=workspace, actor=actor, verb=f"drift.{action}", obj=mapping, changes={"property": prop})
        return issue
    target = issue.new_property if action == "repoint" else None
    before_columns = list(model.columns or [])
    if target:
        model.columns = list(dict.fromkeys(target if c == prop else c for c in before_columns))
    else:
        model.columns = [c for c in before_columns if c != prop]
    model.save(update_fields=["columns", "updated_at"])
    siblings = list(Mapping.objects.select_for_update().filter(data_model=model))
    for other in siblings:
        identifiers = dict(other.identifiers or {})
        for key, value in identifiers.items():
            if value == prop:
                if target is None:
                    raise DriftFixError(f"{prop} is the {key} of “{other}”: re-point it or change the mapping.")
                identifiers[key] = target
        traits = []
        for column, trait in other.traits or []:
            if column == prop:
                if target is None:
                    continue
                column = target
            traits.append([column, trait])
        if identifiers != (other.identifiers or {}) or traits != list(other.traits or []):
            audit.record(
                workspace=workspace,
                actor=actor,
                verb=f"drift.{action}",
                obj=other,
                changes={"identifiers": [other.identifiers, identifiers], "traits": [other.traits, traits]},
            )
            other.identifiers, other.traits = identifiers, traits
            other.save(update_fields=["identifiers", "traits", "updated_at"])
    audit.record(
        workspace=workspace,
        actor=actor,
        verb=f"drift.{action}",
        obj=model,
        changes={"columns": [before_columns, model.columns]},
    )
    related = list(MappingIssue.objects.filter(mapping__data_model=model, property_name=prop, resolved_at__isnull=True))
    _resolve(related, "repointed" if target else "removed")
    issue.refresh_from_db()
    return issue


def new_properties(source_collection: Any, *, limit: int = 50) -> list[dict[str, Any]]:
    """Properties that appeared in the recent discoveries (SourceCollection.schema_changes) and still exist,
    newest first: candidates to add to data models."""
    schema = source_collection.properties or {}
    seen: dict[str, dict[str, Any]] = {}
    for entry in reversed(source_collection.schema_changes or []):
        for name in entry.get("added") or []:
            if name in schema and name not in seen:
                seen[name] = {"name": name, "at": entry.get("at"), **(_spec(schema[name]) or {})}
    return list(seen.values())[:limit]


def missing_columns(model: Any, schema: dict[str, dict]) -> list[str]:
    """Columns of a data model that the collection's current schema no longer has."""

    if not schema:
        return []
    return [c for c in model.columns or [] if c not in schema and c not in SYSTEM_COLUMNS]

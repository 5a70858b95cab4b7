"""Writes to data models: keyword-only, atomic, audited. The views (and the API) call these."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from hubsync import audit
from hubsync.models import Workspace
from sources.models import Source

from .models import DataModel


def create_data_model(
    *, workspace: Workspace, actor: Any, source: Source, collection: str, name: str, columns: list[str]
) -> DataModel:
    with transaction.atomic():
        data_model = DataModel.objects.create(source=source, collection=collection, name=name, columns=columns)
        audit.record(
            workspace=workspace,
            actor=actor,
            verb="create",
            obj=data_model,
            changes={"source": source.name, "collection": collection, "columns": columns},
        )
    return data_model


def update_data_model(
    *, workspace: Workspace, actor: Any, data_model: DataModel, name: str, columns: list[str]
) -> dict[str, Any]:
    """Rename and re-column the model. Returns the audited changes ({} when nothing changed: nothing written)."""
    before = {"name": data_model.name, "columns": list(data_model.columns)}
    data_model.name = name
    data_model.columns = columns
    changes: dict[str, Any] = audit.diff(data_model, before, ["name", "columns"])
    if not changes:
        return changes
    if "columns" in changes:
        changes["columns"] = {
            "added": [c for c in columns if c not in before["columns"]],
            "removed": [c for c in before["columns"] if c not in columns],
        }
    with transaction.atomic():
        data_model.save(update_fields=["name", "columns", "updated_at"])
        audit.record(workspace=workspace, actor=actor, verb="update", obj=data_model, changes=changes)
    return changes


def delete_data_model(*, workspace: Workspace, actor: Any, data_model: DataModel) -> None:
    """Delete the model; raises ProtectedError while a mapping uses it (the database decides)."""
    snapshot = {"collection": data_model.collection, "columns": list(data_model.columns)}
    with transaction.atomic():
        audit.record(workspace=workspace, actor=actor, verb="delete", obj=data_model, changes=snapshot)
        data_model.delete()

"""The audit log: one call for every configuration change. Secret values never enter it."""

from __future__ import annotations

from typing import Any

from django.db import models

from .fields import EncryptedTextField
from .models import AuditEvent, Workspace

REDACTED = "•••"


def _is_secret_field(model: type[models.Model], name: str) -> bool:

    try:
        field = model._meta.get_field(name)
    except Exception:
        return False
    return isinstance(field, EncryptedTextField)


def record(
    *,
    workspace: Workspace,
    actor: Any,
    verb: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_repr: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one AuditEvent. `changes` is {field: [old, new]} or any JSON; secret fields are redacted."""
    clean: dict[str, Any] = {}
    for key, value in (changes or {}).items():
        if obj is not None and _is_secret_field(type(obj), key):
            clean[key] = REDACTED
        else:
            clean[key] = value
    return AuditEvent.objects.create(
        workspace=workspace,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        verb=verb,
        object_type=object_type or (obj._meta.label if obj is not None else ""),
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=(object_repr or (str(obj) if obj is not None else ""))[:200],
        changes=clean,
    )


def diff(instance: models.Model, before: dict[str, Any], fields: list[str]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields that changed since `before` (a dict of old values)."""
    out: dict[str, list[Any]] = {}
    for name in fields:
        new = getattr(instance, name)
        if before.get(name) != new:
            out[name] = [before.get(name), new]
    return out

"""The changes a source goes through (the wizard's last step, settings, enable, sync now, full sync, reconnect,
delete): keyword-only, atomic, audited; views and commands call these."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from hubsync import audit
from hubsync.models import Workspace

from . import selectors
from .models import LiveEvent, Source, SourceCollection, SyncRun
from .oauth import Connection
from .tasks import enqueue_sync


def create_source(
    *,
    workspace: Workspace,
    actor: Any,
    name: str,
    label: str,
    connection: Connection,
    schema_name: str,
    start_date: date | None,
    sync_interval: timedelta,
    collections: list[str],
    schemas: dict[str, dict[str, dict]] | None = None,
    schema_read_at: datetime | None = None,
) -> Source:
    """The wizard's last step: the source, created disabled, with its selected collections and the property
    schemas the wizard read for them (`schemas`, read at `schema_read_at`), so the model builder's collection
    picker shows them as read then instead of asking HubSpot again."""
    schemas = schemas or {}
    read_at = schema_read_at or timezone.now()
    with transaction.atomic():
        source = Source.objects.create(
            workspace=workspace,
            name=name,
            label=label,
            hub_id=connection.hub_id,
            hub_domain=connection.hub_domain,
            installing_user=connection.user,
            scopes=connection.scopes,
            token=connection.refresh_token,
            access_token=connection.access_token,
            access_token_expires_at=connection.expires_at,
            schema_name=schema_name,
            start_date=start_date,
            sync_interval=sync_interval,
            enabled=False,
        )
        SourceCollection.objects.bulk_create(
            [
                SourceCollection(
                    source=source,
                    collection=c,
                    selected=True,
                    properties=schemas.get(c) or {},
                    schema_discovered_at=read_at if schemas.get(c) else None,
                )
                for c in collections
            ]
        )
        audit.record(
            workspace=workspace,
            actor=actor,
            verb="create",
            obj=source,
            changes={
                "name": name,
                "label": label,
                "hub_id": connection.hub_id,
                "hub_domain": connection.hub_domain,
                "schema_name": schema_name,
                "start_date": start_date.isoformat() if start_date else None,
                "sync_interval": str(sync_interval),
                "collections": sorted(collections),
                "enabled": False,
            },
        )
    return source


def update_basic(*, source: Source, actor: Any, name: str, label: str, schema_name: str) -> dict[str, Any]:
    before = {"name": source.name, "label": source.label, "schema_name": source.schema_name}
    source.name, source.label = name, label
    if source.first_synced_at is None:
        source.schema_name = schema_name
    changes = audit.diff(source, before, list(before))
    if changes:
        source.save(update_fields=[*changes, "updated_at"])
        audit.record(workspace=source.workspace, actor=actor, verb="update", obj=source, changes=changes)
    return changes


def update_selective_sync(
    *, source: Source, actor: Any, start_date: date | None, sync_interval: timedelta, collections: list[str]
) -> dict[str, Any]:
    """Applies to future syncs only: a removed collection is no longer read, its mirror rows stay; a new start
    date is used by the next full sync (incremental syncs carry on from their cursors)."""
    with transaction.atomic():
        source = Source.objects.select_for_update().get(pk=source.pk)
        before = {"start_date": source.start_date, "sync_interval": source.sync_interval}
        source.start_date, source.sync_interval = start_date, sync_interval
        changes: dict[str, Any] = {
            k: [str(v[0]) if v[0] is not None else None, str(v[1]) if v[1] is not None else None]
            for k, v in audit.diff(source, before, list(before)).items()
        }
        fields = [k for k in before if k in changes]
        if "sync_interval" in changes and source.enabled and source.next_sync_at is not None:
            # A shorter interval should not wait out the old, longer one.
            source.next_sync_at = min(source.next_sync_at, timezone.now() + sync_interval)
            fields.append("next_sync_at")
        if fields:
            source.save(update_fields=[*fields, "updated_at"])

        existing = {sc.collection: sc for sc in source.collections.all()}
        wanted = set(collections)
        added = sorted(c for c in wanted if c not in existing or not existing[c].selected)
        removed = sorted(c for c, sc in existing.items() if sc.selected and c not in wanted)
        for name in added:
            if name in existing:
                existing[name].selected = True
                existing[name].save(update_fields=["selected"])
            else:
                SourceCollection.objects.create(source=source, collection=name, selected=True)
        if removed:
            SourceCollection.objects.filter(source=source, collection__in=removed).update(selected=False)
        if added:
            changes["collections_added"] = added
        if removed:
            changes["collections_removed"] = removed
        if changes:
            audit.record(workspace=source.workspace, actor=actor, verb="update", obj=source, changes=changes)
    return changes


def set_enabled(*, source: Source, actor: Any, enabled: bool) -> tuple[bool, list[str], SyncRun | None]:
    """Enable (when `can_enable` allows it; the first sync starts at once) or disable a source.
    Returns (done, what is missing, the run started)."""
    if enabled == source.enabled:
        return True, [], None
    run = None
    if enabled:
        allowed, missing = selectors.can_enable(source)
        if not allowed:
            return False, missing, None
        with transaction.atomic():
            source.enabled = True
            source.next_sync_at = timezone.now() + source.sync_interval
            source.save(update_fields=["enabled", "next_sync_at", "updated_at"])
            audit.record(
                workspace=source.workspace, actor=actor, verb="enable", obj=source, changes={"enabled": [False, True]}
            )
            trigger = SyncRun.Trigger.FIRST if source.first_synced_at is None else SyncRun.Trigger.MANUAL
            run = enqueue_sync(source=source, trigger=trigger)
    else:
        with transaction.atomic():
            source.enabled = False
            source.next_sync_at = None
            source.save(update_fields=["enabled", "next_sync_at", "updated_at"])
            audit.record(
                workspace=source.workspace, actor=actor, verb="disable", obj=source, changes={"enabled": [True, False]}
            )
    return True, [], run


def set_live(*, source: Source, actor: Any, enabled: bool) -> bool:
    """Turn live updates (HubSpot's webhooks, sources.live) on or off for a source. Off: its events are ignored
    from now on and the ones still pending are dropped (the scheduled syncs carry on). Returns whether it
    changed."""
    with transaction.atomic():
        source = Source.objects.select_for_update().get(pk=source.pk)
        if source.live_enabled == enabled:
            return False
        source.live_enabled = enabled
        source.save(update_fields=["live_enabled", "updated_at"])
        if not enabled:
            LiveEvent.objects.filter(source=source, state=LiveEvent.State.PENDING).delete()
        audit.record(
            workspace=source.workspace,
            actor=actor,
            verb="live.on" if enabled else "live.off",
            obj=source,
            changes={"live_enabled": [not enabled, enabled]},
        )
    return True


def start_sync(*, source: Source, actor: Any, full: bool) -> SyncRun | None:
    """ "Sync now" / "Full sync". None when a run is already queued or running."""
    trigger = SyncRun.Trigger.FULL if full else SyncRun.Trigger.MANUAL
    with transaction.atomic():
        run = enqueue_sync(source=source, trigger=trigger)
        if run is not None:
            audit.record(
                workspace=source.workspace, actor=actor, verb=f"sync.{trigger}", obj=source, changes={"run": run.pk}
            )
    return run


def apply_connection(*, source: Source, actor: Any, connection: Connection) -> None:
    """Reconnect: new tokens for the same HubSpot account (the caller checked the hub id)."""
    before_scopes = list(source.scopes)
    source.token = connection.refresh_token
    source.access_token = connection.access_token
    source.access_token_expires_at = connection.expires_at
    source.scopes = connection.scopes
    source.hub_domain = connection.hub_domain or source.hub_domain
    source.installing_user = connection.user or source.installing_user
    source.status = Source.Status.OK
    source.status_detail = ""
    with transaction.atomic():
        source.save(
            update_fields=[
                "token",
                "access_token",
                "access_token_expires_at",
                "scopes",
                "hub_domain",
                "installing_user",
                "status",
                "status_detail",
                "updated_at",
            ]
        )
        changes: dict[str, Any] = {"token": "replaced", "status": Source.Status.OK}
        if before_scopes != connection.scopes:
            changes["scopes"] = [before_scopes, connection.scopes]
        audit.record(workspace=source.workspace, actor=actor, verb="reconnect", obj=source, changes=changes)


def delete_source(*, source: Source, actor: Any) -> None:
    """Deletes the source with its collections, mirror rows and runs; only the audit event remains."""
    with transaction.atomic():
        audit.record(
            workspace=source.workspace,
            actor=actor,
            verb="delete",
            obj=source,
            changes={"name": source.name, "schema_name": source.schema_name, "hub_id": source.hub_id},
        )
        source.delete()

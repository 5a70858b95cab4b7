"""Workspaces (read), sources (create from an existing connection, read, update, enable/disable, sync now, full
sync), their collections and schemas, and sync runs: the same services and forms as the source pages."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from hubsync.models import Workspace
from monitoring import dashboard
from sources import oauth, selectors, services
from sources.forms import BasicSettingsForm, NameForm, SchemaNameForm, SelectiveSyncForm, unique_schema_name
from sources.models import Source, SourceCollection, SyncRun

from .. import serializers as s
from ..problems import Conflict
from .base import ApiView, ListView, actor, check, get, invalid, parse, progress_dict, redacted, workspace


class WorkspaceList(ListView):
    """The workspaces the token may use: its own."""

    serializer_class = s.WorkspaceSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        return Workspace.objects.filter(pk=workspace(self.request).pk)


class WorkspaceDetail(ApiView):
    @extend_schema(responses=s.WorkspaceSerializer, tags=["workspaces"], operation_id="workspaces_retrieve")
    def get(self, request: Request, workspace_id: int) -> Response:
        """The workspace of the token, and the token's role."""
        return Response(s.WorkspaceSerializer(workspace(request), context={"request": request}).data)


# --- sources ----------------------------------------------------------------------------------------------


def _sources(request: Request) -> Any:
    return (
        Source.objects.filter(workspace=workspace(request)).select_related("last_run").prefetch_related("collections")
    )


def _connection(request: Request, data: dict[str, Any]) -> oauth.Connection:
    """The HubSpot login a new source reads with: an existing source's of this workspace, or a refresh token of
    this hubsync's HubSpot app (a login done by the script, outside this server's pages)."""
    try:
        if "source" in data:
            existing = Source.objects.filter(workspace=workspace(request), pk=data["source"]).first()
            if existing is None:
                raise invalid("connection", f"This workspace has no source {data['source']}.")
            return oauth.connection_of(existing)
        return oauth.connection_from_refresh_token(data["refresh_token"])
    except oauth.ConnectError as exc:
        raise invalid("connection", str(exc)) from None


def _interval(value: Any) -> str:
    return str(value) if value is not None else ""


class SourceList(ListView):
    serializer_class = s.SourceSerializer

    def get_queryset(self) -> Any:
        return _sources(self.request)

    @extend_schema(request=s.SourceCreateSerializer, responses={201: s.SourceSerializer})
    def post(self, request: Request, workspace_id: int) -> Response:
        """Add a source, disabled (as the wizard's last step does): name and label, a HubSpot connection, the
        schema name, and the selective sync (start date, frequency, collections)."""
        data = parse(s.SourceCreateSerializer, request)
        named = check(NameForm({"name": data["name"], "label": data["label"]}))
        schema_name = data.get("schema_name") or unique_schema_name(workspace(request), named["name"])
        schema = check(SchemaNameForm({"schema_name": schema_name}, workspace=workspace(request)))
        connection = _connection(request, data["connection"])
        discovered = oauth.discover_collections(connection)
        sync = check(
            SelectiveSyncForm(
                {
                    "start_date": data["start_date"] or "",
                    "sync_interval": _interval(data["sync_interval"]),
                    "collections": data["collections"],
                },
                collection_choices=[(d.name, d.label) for d in discovered],
            )
        )
        try:
            source = services.create_source(
                workspace=workspace(request),
                actor=actor(request),
                name=named["name"],
                label=named["label"],
                connection=connection,
                schema_name=schema["schema_name"],
                **sync,
            )
        except IntegrityError:
            raise invalid("schema_name", "That schema name was taken in the meantime. Choose another one.") from None
        oauth.remember_available(source, discovered)
        return Response(s.SourceSerializer(_sources(request).get(pk=source.pk)).data, status=status.HTTP_201_CREATED)


class SourceDetail(ApiView):
    @extend_schema(responses=s.SourceSerializer)
    def get(self, request: Request, workspace_id: int, source_id: int) -> Response:
        return Response(s.SourceSerializer(get(request, _sources(request), pk=source_id)).data)

    @extend_schema(request=s.SourceUpdateSerializer, responses=s.SourceSerializer)
    def patch(self, request: Request, workspace_id: int, source_id: int) -> Response:
        """Change the name, label and schema name (fixed after the first sync), and the selective sync: start
        date, frequency and collections (for future syncs only; a removed collection's mirror rows stay)."""
        source = get(request, Source, pk=source_id)
        data = parse(s.SourceUpdateSerializer, request)
        basic_keys, sync_keys = {"name", "label", "schema_name"}, {"start_date", "sync_interval", "collections"}
        basic = sync = None
        if basic_keys & set(data):
            basic = check(
                BasicSettingsForm(
                    {
                        "name": data.get("name", source.name),
                        "label": data.get("label", source.label),
                        "schema_name": data.get("schema_name", source.schema_name),
                    },
                    source=source,
                )
            )
        if sync_keys & set(data):
            current = [sc.collection for sc in source.collections.all() if sc.selected]
            start = data.get("start_date", source.start_date)
            sync = check(
                SelectiveSyncForm(
                    {
                        "start_date": start.isoformat() if start else "",
                        "sync_interval": _interval(
                            data.get("sync_interval", int(source.sync_interval.total_seconds()))
                        ),
                        "collections": data.get("collections", current),
                    },
                    collection_choices=selectors.collection_choices(source)[0],
                )
            )
        if basic is not None:
            services.update_basic(source=source, actor=actor(request), **basic)
        if sync is not None:
            services.update_selective_sync(source=source, actor=actor(request), **sync)
        return Response(s.SourceSerializer(_sources(request).get(pk=source.pk)).data)


class SourceEnable(ApiView):
    enabled = True

    @extend_schema(request=None, responses={200: s.SourceSerializer, 409: None})
    def post(self, request: Request, workspace_id: int, source_id: int) -> Response:
        """Enabling starts the first sync at once; it is refused (409, with what is missing) until an enabled
        mapping uses one of the source's models. Disabling pauses the schedule."""
        source = get(request, Source, pk=source_id)
        done, missing, _run = services.set_enabled(source=source, actor=actor(request), enabled=self.enabled)
        if not done:
            raise Conflict(
                "This source cannot be enabled yet: it syncs only once an enabled mapping uses one of its data "
                f"models. Still to do: {', '.join(missing)}.",
                missing=missing,
            )
        return Response(s.SourceSerializer(_sources(request).get(pk=source.pk)).data)


class SourceDisable(SourceEnable):
    enabled = False


class SourceSync(ApiView):
    full = False

    @extend_schema(request=None, responses={202: s.StartedSerializer, 409: None})
    def post(self, request: Request, workspace_id: int, source_id: int) -> Response:
        """Sync now (or, at /full-sync/, a full sync that re-reads the history from the start date). 409 while a
        run is queued or running."""
        source = get(request, Source, pk=source_id)
        run = services.start_sync(source=source, actor=actor(request), full=self.full)
        if run is None:
            raise Conflict("A sync of this source is already queued or running.")
        kind = "A full sync" if self.full else "A sync"
        return Response({"run": run.pk, "detail": f"{kind} was queued."}, status=status.HTTP_202_ACCEPTED)


class SourceFullSync(SourceSync):
    full = True


class CollectionList(ListView):
    serializer_class = s.SourceCollectionSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        source = get(self.request, Source, pk=self.kwargs["source_id"])
        return SourceCollection.objects.filter(source=source).order_by("collection")


class CollectionSchema(ApiView):
    @extend_schema(responses=s.CollectionSchemaSerializer)
    def get(self, request: Request, workspace_id: int, source_id: int, collection: str) -> Response:
        """The collection's property schema as last discovered from HubSpot."""
        sc = get(request, SourceCollection, source_id=source_id, collection=collection)
        properties = [
            {
                "name": name,
                "label": str(spec.get("label") or ""),
                "type": str(spec.get("type") or ""),
                "field_type": str(spec.get("fieldType") or ""),
                "group": str(spec.get("groupName") or ""),
                "description": str(spec.get("description") or ""),
                "options": list(spec.get("options") or []),
            }
            for name, spec in sorted((sc.properties or {}).items())
        ]
        return Response(
            {
                "collection": sc.collection,
                "selected": sc.selected,
                "schema_discovered_at": sc.schema_discovered_at,
                "schema_changes": list(sc.schema_changes or []),
                "properties": properties,
            }
        )


# --- sync runs --------------------------------------------------------------------------------------------


def _run_context() -> dict[str, Any]:
    return {
        "progress": lambda run: progress_dict(dashboard.sync_progress(run)),
        "redact": lambda run: redacted(run.error, [run.source]),
    }


class SyncRunList(ListView):
    serializer_class = s.SyncRunSerializer

    @extend_schema(parameters=[OpenApiParameter("source", int, description="Only this source's runs.")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), **_run_context()}

    def get_queryset(self) -> Any:
        qs = SyncRun.objects.filter(source__workspace=workspace(self.request)).select_related("source")
        source = self.request.query_params.get("source", "")
        if source:
            if not source.isdigit():
                raise invalid("source", "A source id is a number.")
            qs = qs.filter(source_id=int(source))
        return qs.order_by("-created_at", "-id")


class SyncRunDetail(ApiView):
    @extend_schema(responses=s.SyncRunSerializer)
    def get(self, request: Request, workspace_id: int, sync_run_id: int) -> Response:
        run = get(request, SyncRun.objects.select_related("source"), pk=sync_run_id)
        return Response(s.SyncRunSerializer(run, context=_run_context()).data)

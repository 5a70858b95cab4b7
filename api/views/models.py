"""Data models: list, create, read, update, delete, and the live preview (of a saved model, or of a collection
and columns before saving), with the builder's form and services."""

from __future__ import annotations

from typing import Any

from django.db.models import ProtectedError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from models_app import preview as hs
from models_app import services
from models_app.forms import DataModelForm
from models_app.models import SYSTEM_COLUMNS, DataModel
from sources.models import Source, SourceCollection

from .. import serializers as s
from ..problems import Conflict
from .base import ApiView, ListView, actor, check, get, invalid, parse, workspace


def _models(request: Request) -> Any:
    return DataModel.objects.filter(source__workspace=workspace(request)).select_related("source")


def _schema(source: Source, sc: SourceCollection) -> dict[str, dict]:
    """The schema a model's columns are checked against: as stored, or read from HubSpot once when none was
    discovered yet (the builder page reads it when it opens)."""
    if sc.properties:
        return sc.properties
    schema, _error = hs.load_schema(source, sc)
    return schema


class DataModelList(ListView):
    serializer_class = s.DataModelSerializer

    def get_queryset(self) -> Any:
        qs = _models(self.request)
        source = self.request.query_params.get("source", "")
        if source.isdigit():
            qs = qs.filter(source_id=int(source))
        return qs

    @extend_schema(
        parameters=[OpenApiParameter("source", int, description="Only this source's models.")],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=s.DataModelCreateSerializer, responses={201: s.DataModelSerializer})
    def post(self, request: Request, workspace_id: int) -> Response:
        """Create a model on one collection of a source: its name and columns (HubSpot property names; the record
        id and timestamps are always included)."""
        data = parse(s.DataModelCreateSerializer, request)
        source = Source.objects.filter(workspace=workspace(request), pk=data["source"]).first()
        if source is None:
            raise invalid("source", f"This workspace has no source {data['source']}.")
        sc = SourceCollection.objects.filter(source=source, collection=data["collection"]).first()
        if sc is None:
            raise invalid("collection", f"This source has no collection “{data['collection']}”.")
        schema = _schema(source, sc)
        form = check(
            DataModelForm({"name": data["name"], "columns": data["columns"]}, source=source, allowed=list(schema))
        )
        data_model = services.create_data_model(
            workspace=workspace(request),
            actor=actor(request),
            source=source,
            collection=sc.collection,
            name=form["name"],
            columns=hs.ordered_columns(schema, form["columns"]),
        )
        return Response(s.DataModelSerializer(data_model).data, status=status.HTTP_201_CREATED)


class DataModelDetail(ApiView):
    @extend_schema(responses=s.DataModelSerializer)
    def get(self, request: Request, workspace_id: int, data_model_id: int) -> Response:
        return Response(s.DataModelSerializer(get(request, _models(request), pk=data_model_id)).data)

    @extend_schema(request=s.DataModelUpdateSerializer, responses=s.DataModelSerializer)
    def patch(self, request: Request, workspace_id: int, data_model_id: int) -> Response:
        """Rename the model or change its columns (the collection is fixed)."""
        data_model = get(request, _models(request), pk=data_model_id)
        data = parse(s.DataModelUpdateSerializer, request)
        sc = SourceCollection.objects.filter(source=data_model.source, collection=data_model.collection).first()
        schema = (sc.properties or {}) if sc is not None else {}
        kept = [c for c in data_model.columns if c not in SYSTEM_COLUMNS]
        form = check(
            DataModelForm(
                {"name": data.get("name", data_model.name), "columns": data.get("columns", kept)},
                source=data_model.source,
                allowed=list(dict.fromkeys([*schema, *kept])),
                instance=data_model,
            )
        )
        services.update_data_model(
            workspace=workspace(request),
            actor=actor(request),
            data_model=data_model,
            name=form["name"],
            columns=hs.ordered_columns(schema, form["columns"], list(data_model.columns)),
        )
        return Response(s.DataModelSerializer(data_model).data)

    @extend_schema(responses={204: None, 409: None})
    def delete(self, request: Request, workspace_id: int, data_model_id: int) -> Response:
        """Refused (409) while a mapping uses the model."""
        data_model = get(request, _models(request), pk=data_model_id)
        try:
            services.delete_data_model(workspace=workspace(request), actor=actor(request), data_model=data_model)
        except ProtectedError:
            names = [str(m) for m in data_model.mappings.all()]
            raise Conflict(f"Mappings use this model: {', '.join(names)}. Delete them first.", mappings=names) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


def _preview(source: Source, collection: str, columns: list[str]) -> dict[str, Any]:
    sc = SourceCollection.objects.filter(source=source, collection=collection).first()
    if sc is None:
        raise invalid("collection", f"This source has no collection “{collection}”.")
    preview = hs.read_preview(source=source, sc=sc, columns=columns)
    return {
        "collection": preview.collection,
        "columns": preview.display_columns,
        "labels": preview.labels,
        "types": preview.types,
        "rows": preview.rows,
        "has_more": preview.has_more,
        "flags": [{"kind": f.kind, "message": f.message, "columns": list(f.columns)} for f in preview.flags],
        "error": (
            {"kind": preview.error.kind, "title": preview.error.title, "detail": preview.error.detail}
            if preview.error
            else None
        ),
        "api_calls": preview.api_calls,
        "elapsed_ms": preview.elapsed_ms,
    }


class DataModelPreview(ApiView):
    @extend_schema(responses=s.PreviewSerializer)
    def get(self, request: Request, workspace_id: int, data_model_id: int) -> Response:
        """The first records of the model read from HubSpot now, and what the schema validation finds."""
        data_model = get(request, _models(request), pk=data_model_id)
        return Response(_preview(data_model.source, data_model.collection, list(data_model.columns)))


class SourcePreview(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("collection", str, required=True),
            OpenApiParameter("columns", str, many=True, description="Repeat for each column."),
        ],
        responses=s.PreviewSerializer,
    )
    def get(self, request: Request, workspace_id: int, source_id: int) -> Response:
        """The live preview of a model before it is saved: a collection of the source and columns."""
        source = get(request, Source, pk=source_id)
        collection = (request.query_params.get("collection") or "").strip()
        if not collection:
            raise invalid("collection", "Pick a collection to see a preview.")
        columns = [c for value in request.query_params.getlist("columns") for c in value.split(",") if c.strip()]
        return Response(_preview(source, collection, [c.strip() for c in columns]))

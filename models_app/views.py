"""Data models: Create Model (collection → columns with a live preview → name), edit, delete.

Every view is a workspace view: viewers see the models and their previews, admins change them. The builder page
reads the collection's schema from HubSpot when it opens; the preview fragment reads the first records on each
refresh (one HubSpot request, see preview.py).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import ProtectedError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.models import Role
from sources import selectors
from sources.models import Source, SourceCollection
from sources.oauth import COLLECTION_LABELS

from . import preview as hs
from . import services
from .forms import DataModelForm
from .models import SYSTEM_COLUMNS, DataModel, column_count


def _collection_label(name: str) -> str:
    return COLLECTION_LABELS.get(name, name.replace("_", " ").title())


def _mappings_using(data_model: DataModel) -> list[Any]:
    return list(data_model.mappings.select_related("destination").order_by("name", "id"))


def _builder(
    request: WorkspaceRequest,
    *,
    source: Source,
    sc: SourceCollection,
    form: DataModelForm,
    schema: dict[str, dict],
    schema_error: hs.PreviewError | None,
    chosen: list[str],
    data_model: DataModel | None = None,
    status: int = 200,
) -> HttpResponse:
    can_change = request.membership.allows(Role.ADMIN)
    groups = hs.column_groups(schema, chosen)
    ctx = {
        "source": source,
        "sc": sc,
        "collection_label": _collection_label(sc.collection),
        "form": form,
        "groups": groups,
        "property_count": sum(len(g.columns) for g in groups if g.key != "_missing"),
        "selected_count": len([c for c in chosen if c not in SYSTEM_COLUMNS]),
        "chosen": chosen,
        "system_columns": SYSTEM_COLUMNS,
        "schema_error": schema_error,
        "data_model": data_model,
        "mappings": _mappings_using(data_model) if data_model is not None else [],
        "can_change": can_change,
        "preview_url": reverse("models_app:preview", args=[source.pk]),
        "mapping_new_url": reverse("mappings:mapping_new"),
    }
    return render(request, "models_app/builder.html", ctx, status=status)


@workspace_view(role=Role.ADMIN)
def model_new(request: WorkspaceRequest, source_id: int) -> HttpResponse:
    """Step 1 without ?collection=: pick one of the source's collections. Step 2 with it: columns, preview, name."""
    source = get_for_workspace(request, Source, pk=source_id)
    name = (request.POST.get("collection") or request.GET.get("collection") or "").strip()
    collections = list(source.collections.all())
    sc = next((c for c in collections if c.collection == name), None)
    if sc is None:
        if name:
            messages.error(request, f"This source has no collection “{name}”. Pick one of these.")
        counts: dict[str, int] = {}
        for m in source.data_models.all():
            counts[m.collection] = counts.get(m.collection, 0) + 1
        synced = selectors.collections_last_synced(source)
        options: list[dict[str, Any]] = [
            {
                "sc": c,
                "label": _collection_label(c.collection),
                "property_count": len(c.properties or {}),
                "schema_read_at": c.schema_discovered_at if c.properties else None,
                "synced_at": synced.get(c.collection),
                "model_count": counts.get(c.collection, 0),
            }
            for c in collections
        ]
        options.sort(key=lambda o: (not o["sc"].selected, o["label"]))
        unselected = any(not o["sc"].selected for o in options)
        context = {"source": source, "options": options, "unselected": unselected}
        return render(request, "models_app/pick_collection.html", context)

    if request.method == "POST":
        # No HubSpot call on a save: validate against the schema read when the page opened.
        schema, schema_error = sc.properties or {}, None
        form = DataModelForm(request.POST, source=source, allowed=list(schema))
        if form.is_valid():
            columns = hs.ordered_columns(schema, form.cleaned_data["columns"])
            data_model = services.create_data_model(
                workspace=request.workspace,
                actor=request.user,
                source=source,
                collection=sc.collection,
                name=form.cleaned_data["name"],
                columns=columns,
            )
            messages.success(
                request, f"Data model “{data_model.name}” was created with {column_count(columns)} columns."
            )
            return redirect("models_app:detail", data_model.pk)
        chosen = request.POST.getlist("columns")
        return _builder(
            request,
            source=source,
            sc=sc,
            form=form,
            schema=schema,
            schema_error=schema_error,
            chosen=chosen,
            status=400,
        )

    schema, schema_error = hs.load_schema(source, sc)
    default_name = _collection_label(sc.collection)
    taken = set(source.data_models.values_list("name", flat=True))
    n = 2
    while default_name in taken:
        default_name = f"{_collection_label(sc.collection)} {n}"
        n += 1
    form = DataModelForm(initial={"name": default_name}, source=source, allowed=list(schema))
    return _builder(request, source=source, sc=sc, form=form, schema=schema, schema_error=schema_error, chosen=[])


@workspace_view()
def model_detail(request: WorkspaceRequest, data_model_id: int) -> HttpResponse:
    """The model's builder: viewers see its columns and preview, admins change its name and columns."""
    data_model = get_for_workspace(request, DataModel.objects.select_related("source"), pk=data_model_id)
    source = data_model.source
    sc = SourceCollection.objects.filter(source=source, collection=data_model.collection).first()
    if sc is None:
        # The collection row is gone (it always exists for collections chosen in the wizard): keep the page up.
        sc = SourceCollection(source=source, collection=data_model.collection, selected=False)
    allowed_extra = [c for c in data_model.columns if c not in SYSTEM_COLUMNS]

    if request.method == "POST":
        schema = sc.properties or {}
        allowed = list(dict.fromkeys([*schema, *allowed_extra]))
        form = DataModelForm(request.POST, source=source, allowed=allowed, instance=data_model)
        if form.is_valid():
            changes = services.update_data_model(
                workspace=request.workspace,
                actor=request.user,
                data_model=data_model,
                name=form.cleaned_data["name"],
                columns=hs.ordered_columns(schema, form.cleaned_data["columns"], list(data_model.columns)),
            )
            if changes:
                messages.success(request, f"Data model “{data_model.name}” was saved.")
            else:
                messages.info(request, "Nothing changed.")
            return redirect("models_app:detail", data_model.pk)
        return _builder(
            request,
            source=source,
            sc=sc,
            form=form,
            schema=schema,
            schema_error=None,
            chosen=request.POST.getlist("columns"),
            data_model=data_model,
            status=400,
        )

    if sc.pk is not None:
        schema, schema_error = hs.load_schema(source, sc)
    else:
        schema, schema_error = {}, None
    allowed = list(dict.fromkeys([*schema, *allowed_extra]))
    form = DataModelForm(
        initial={"name": data_model.name, "columns": allowed_extra},
        source=source,
        allowed=allowed,
        instance=data_model,
    )
    return _builder(
        request,
        source=source,
        sc=sc,
        form=form,
        schema=schema,
        schema_error=schema_error,
        chosen=allowed_extra,
        data_model=data_model,
    )


@workspace_view(role=Role.ADMIN)
def model_delete(request: WorkspaceRequest, data_model_id: int) -> HttpResponse:
    """Confirm, then delete; refused (with the mappings named) while a mapping uses the model."""
    data_model = get_for_workspace(request, DataModel.objects.select_related("source"), pk=data_model_id)
    mappings = _mappings_using(data_model)
    if request.method == "POST" and not mappings:
        source = data_model.source
        try:
            services.delete_data_model(workspace=request.workspace, actor=request.user, data_model=data_model)
        except ProtectedError:
            # A mapping was added between the page and the click: the database refused, say why.
            mappings = _mappings_using(data_model)
        else:
            messages.success(request, f"Data model “{data_model.name}” was deleted.")
            return redirect("sources:models", source.pk)
    ctx = {
        "data_model": data_model,
        "source": data_model.source,
        "mappings": mappings,
        "collection_label": _collection_label(data_model.collection),
    }
    status = 409 if (request.method == "POST" and mappings) else 200
    return render(request, "models_app/confirm_delete.html", ctx, status=status)


@workspace_view()
def model_preview(request: WorkspaceRequest, source_id: int) -> HttpResponse:
    """The live preview fragment (htmx), for the valid and the invalid states alike: the first records read
    from HubSpot now with the chosen columns, and what the schema validation found."""
    source = get_for_workspace(request, Source, pk=source_id)
    collection = (request.GET.get("collection") or "").strip()
    columns = [c for c in request.GET.getlist("columns") if c]
    ctx: dict[str, Any] = {"source": source, "collection": collection, "preview": None, "problem": ""}
    if not collection:
        ctx["problem"] = "Pick a collection to see a preview."
    else:
        sc = SourceCollection.objects.filter(source=source, collection=collection).first()
        if sc is None:
            ctx["problem"] = f"This source has no collection “{collection}”."
        else:
            ctx["preview"] = hs.read_preview(source=source, sc=sc, columns=columns)
            ctx["collection_label"] = _collection_label(collection)
    return render(request, "models_app/_preview.html", ctx)

"""Mappings: the editor, the mapping page with "Test the mapping with real HubSpot data", the Mapping Status
toggle, "Resync all" and delete (the destination and Profile Space pages are mappings.views_destinations).

Every change is audited; write keys go into the database encrypted and never come back into a page (the forms
render the key input empty, the audit log redacts it).
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.http import safe_next
from models_app.models import SYSTEM_COLUMNS, DataModel

from . import services, tester
from .forms import MappingForm, column_schema
from .models import DeliveryState, DeliveryStateCount, Destination, Mapping
from .selectors import rejected_summary
from .views_destinations import _can_change, _mapping_rows
from .views_sample import sample_context

logger = logging.getLogger(__name__)


def _back(request: WorkspaceRequest, default: str) -> str:
    """Where a form posted from several pages returns to: its `next` when it is a path of ours."""
    return safe_next(request, default)


# --- mappings ---------------------------------------------------------------------------------------------


@workspace_view()
def mapping_list(request: WorkspaceRequest) -> HttpResponse:
    mappings = _mapping_rows(Mapping.objects.filter(destination__workspace=request.workspace))
    return render(
        request,
        "mappings/mapping_list.html",
        {"mappings": mappings, "can_change": _can_change(request), "nav_section": "destinations"},
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _editor(request: WorkspaceRequest, form: MappingForm, mapping: Mapping | None, status: int = 200) -> HttpResponse:
    return render(
        request,
        "mappings/mapping_editor.html",
        {
            "form": form,
            "mapping": mapping,
            "destination": form.destination,
            "can_change": _can_change(request),
            "nav_section": "destinations",
            "column_options": form.column_options(),
            # One blank row is always offered (it is ignored when left empty): adding traits works without JS.
            "blank_rows": 1 + (request.POST.get("op") == "add_row"),
        },
        status=status,
    )


def _reloading(request: WorkspaceRequest) -> bool:
    """The editor posted back to show another model's columns or one more trait row, not to save."""
    return request.POST.get("op") in {"reload", "add_row"}


@workspace_view()
def mapping_new(request: WorkspaceRequest) -> HttpResponse:
    params = request.POST if request.method == "POST" else request.GET
    destinations = list(Destination.objects.filter(workspace=request.workspace))
    destination_id = _int(params.get("destination"))
    if destination_id is None and len(destinations) == 1:
        destination_id = destinations[0].pk
    if destination_id is None:
        if not destinations:
            messages.info(request, "A mapping sends to a Segment Profiles destination: add one first.")
            return redirect("mappings:destination_new")
        return render(
            request,
            "mappings/choose_destination.html",
            {"destinations": destinations, "data_model": params.get("data_model", ""), "nav_section": "destinations"},
        )
    destination = get_for_workspace(request, Destination, pk=destination_id)
    if request.method == "POST":
        form = MappingForm(
            request.POST, workspace=request.workspace, destination=destination, validate=not _reloading(request)
        )
        if _reloading(request):
            return _editor(request, form, None)
        if form.is_valid():
            mapping = services.save_mapping(
                mapping=Mapping(destination=destination), data=form.cleaned_data, actor=request.user
            )
            messages.success(
                request,
                "Mapping saved. It is disabled: test it with a real record below, then switch it on.",
            )
            return redirect("mappings:mapping_detail", mapping.pk)
        return _editor(request, form, None, status=400)
    initial: dict[str, Any] = {
        "action": Mapping.Action.IDENTIFY,
        "empty_values": Mapping.EMPTY_NULL,
        "identifier_format": Mapping.IdentifierFormat.TRIM,
        "archived_behaviour": Mapping.ArchivedBehaviour.NOTHING,
        "archived_trait": Mapping.DEFAULT_ARCHIVED_TRAIT,
    }
    model_id = _int(params.get("data_model"))
    if model_id is not None:
        model = get_for_workspace(request, DataModel, pk=model_id)
        initial["data_model"] = model.pk
        initial.update(_suggested_mapping(model))
    spaces = list(destination.profile_spaces.all())
    if len(spaces) == 1:
        initial["profile_space"] = spaces[0].pk
    form = MappingForm(workspace=request.workspace, destination=destination, initial=initial)
    return _editor(request, form, None)


def _suggested_mapping(model: DataModel) -> dict[str, Any]:
    """A starting point for a new mapping: e-mail (contacts) as User ID, the domain (companies) as Group ID."""
    columns = model.all_columns
    out: dict[str, Any] = {}
    if model.collection == "contacts" and "email" in columns:
        out["user_id"] = "email"
    elif model.collection == "companies":
        out["action"] = Mapping.Action.GROUP
        out["group_id"] = "domain" if "domain" in columns else "id"
    return out


def _saved_message(mapping: Mapping, before_hash: str, before_trait: bool) -> str:
    """What saving did to deliveries, in words (switching the archived trait on or off has its own cost)."""
    if mapping.config_hash() == before_hash or not mapping.enabled:
        return "Mapping saved."
    trait = mapping.archived_trait
    if mapping.sets_archived_trait and not before_trait:
        return (
            f"Mapping saved. Every message now carries {trait}, so the next delivery sends every record once more "
            f"({trait} = false for live records, true for archived ones this mapping delivered)."
        )
    if before_trait and not mapping.sets_archived_trait:
        return (
            f"Mapping saved. Archived records are no longer sent. Profiles keep {trait} as it was last sent: a "
            "record is resent only if something else in its message changed, not just to leave the trait out."
        )
    return "Mapping saved. The next delivery resends the records whose message changed."


@workspace_view()
def mapping_edit(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(request, Mapping.objects.select_related("destination", "data_model"), pk=mapping_id)
    if request.method == "POST":
        form = MappingForm(
            request.POST,
            workspace=request.workspace,
            destination=mapping.destination,
            instance=mapping,
            validate=not _reloading(request),
        )
        if _reloading(request):
            return _editor(request, form, mapping)
        if form.is_valid():
            before_hash, before_trait = mapping.config_hash(), mapping.sets_archived_trait
            services.save_mapping(mapping=mapping, data=form.cleaned_data, actor=request.user)
            messages.success(request, _saved_message(mapping, before_hash, before_trait))
            return redirect("mappings:mapping_detail", mapping.pk)
        return _editor(request, form, mapping, status=400)
    initial = {
        "name": mapping.name,
        "data_model": mapping.data_model_id,
        "profile_space": mapping.profile_space_id,
        "action": mapping.action,
        "empty_values": mapping.empty_values,
        "identifier_format": mapping.identifier_format,
        "archived_behaviour": mapping.archived_behaviour,
        "archived_trait": mapping.archived_trait or Mapping.DEFAULT_ARCHIVED_TRAIT,
        "traits": mapping.traits,
        **{k: mapping.identifier(k) or "" for k in Mapping.IDENTIFIER_KEYS},
    }
    form = MappingForm(workspace=request.workspace, destination=mapping.destination, instance=mapping, initial=initial)
    return _editor(request, form, mapping)


def _mapping_context(request: WorkspaceRequest, mapping: Mapping) -> dict[str, Any]:
    states = DeliveryStateCount.for_mappings([mapping.pk])[mapping.pk]
    schema = column_schema(mapping.data_model)
    labels = {c: (schema.get(c) or {}).get("label") or c for c in mapping.data_model.all_columns}
    return {
        "mapping": mapping,
        "destination": mapping.destination,
        "can_change": _can_change(request),
        "nav_section": "destinations",
        "runs": list(mapping.runs.all()[:10]),
        "state_counts": {s: states.get(s, 0) for s in DeliveryState.Status.values},
        "rejected": list(
            DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.REJECTED).order_by("object_id")[
                :10
            ]
        ),
        "rejected_summary": rejected_summary(mapping) if states.get(DeliveryState.Status.REJECTED) else None,
        "identifier_rows": [
            (label, mapping.identifier(key), labels.get(mapping.identifier(key) or "", ""))
            for key, label in (("user_id", "User ID"), ("anonymous_id", "Anonymous ID"), ("group_id", "Group ID"))
        ],
        "trait_rows": [(column, labels.get(column, column), trait) for column, trait in mapping.traits or []],
        "missing_columns": [c for c in mapping.used_columns() if c not in mapping.data_model.all_columns],
        # Columns HubSpot no longer has (deleted or renamed there): marked in the configuration table, next to
        # the drift panel that offers the fix. Only once a schema was discovered (else every column would be).
        "gone_columns": (
            {c for c in mapping.used_columns() if c not in schema} if len(schema) > len(SYSTEM_COLUMNS) else set()
        ),
        "sample": sample_context(request, mapping),
    }


@workspace_view()
def mapping_detail(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(
        request,
        Mapping.objects.select_related("destination", "data_model", "data_model__source", "profile_space", "last_run"),
        pk=mapping_id,
    )
    test = _test_panel(request, mapping)
    if request.htmx and request.htmx.target == "test-panel":
        return render(request, "mappings/_test_panel.html", {"mapping": mapping, "test": test, **_perm(request)})
    return render(request, "mappings/mapping_detail.html", {**_mapping_context(request, mapping), "test": test})


def _perm(request: WorkspaceRequest) -> dict[str, Any]:
    return {"can_change": _can_change(request)}


# --- "Test the mapping with real HubSpot data" ------------------------------------------------------------


def _test_panel(request: WorkspaceRequest, mapping: Mapping) -> dict[str, Any]:
    """The test panel for this request: nothing is asked from HubSpot until the user searches (`q`, also empty:
    "list the first records") or picks a record (`record`)."""
    return tester.mapping_test(
        mapping,
        object_id=_int(request.GET.get("record")),
        query=request.GET.get("q"),
        archived=request.GET.get("archived") == "1",
    )


@workspace_view()
@require_POST
def mapping_test_send(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    """Send the previewed message of one record to the Profile Space. The message is rebuilt from HubSpot (never
    taken from the browser), so what is sent is exactly what the engine would send."""
    mapping = get_for_workspace(
        request, Mapping.objects.select_related("destination", "data_model__source", "profile_space"), pk=mapping_id
    )
    object_id = _int(request.POST.get("record"))
    test: dict[str, Any] = (
        tester.send_mapping_test(mapping=mapping, object_id=object_id, actor=request.user)
        if object_id is not None
        else {"error": "Pick a record first."}
    )
    if object_id is not None:
        test.update(query=request.GET.get("q", "").strip(), archived=request.GET.get("archived") == "1")
    if request.htmx:
        return render(request, "mappings/_test_panel.html", {"mapping": mapping, "test": test, **_perm(request)})
    return render(request, "mappings/mapping_detail.html", {**_mapping_context(request, mapping), "test": test})


# --- status, resync, delete -------------------------------------------------------------------------------


@workspace_view()
@require_POST
def mapping_toggle(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(
        request, Mapping.objects.select_related("destination", "data_model__source", "last_run"), pk=mapping_id
    )
    wanted = request.POST.get("enabled") in {"1", "true", "on"}
    services.set_mapping_enabled(mapping=mapping, enabled=wanted, actor=request.user)
    if request.htmx:
        return render(request, "mappings/_toggle.html", {"m": mapping, "can_change": True})
    messages.success(request, f"{mapping}: {'enabled' if wanted else 'disabled'}.")
    return redirect(_back(request, reverse("mappings:mapping_detail", args=[mapping.pk])))


@workspace_view()
def mapping_resync(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(
        request, Mapping.objects.select_related("destination", "data_model__source", "profile_space"), pk=mapping_id
    )
    if request.method == "POST":
        services.resync_mapping(mapping=mapping, actor=request.user)
        if mapping.enabled:
            messages.success(request, "Resync started: every record is sent again.")
        else:
            messages.success(request, "Every record will be sent again once the mapping is enabled.")
        return redirect("mappings:mapping_detail", mapping.pk)
    records = mapping.data_model.source.records.filter(collection=mapping.data_model.collection, archived=False)
    return render(
        request, "mappings/mapping_resync.html", {**_mapping_context(request, mapping), "record_count": records.count()}
    )


@workspace_view()
def mapping_delete(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(request, Mapping.objects.select_related("destination", "data_model"), pk=mapping_id)
    if request.method == "POST":
        destination = mapping.destination
        services.delete_mapping(mapping=mapping, actor=request.user)
        messages.success(request, f"Mapping {mapping} was deleted. The profiles in Segment keep their traits.")
        return redirect("mappings:destination", destination.pk)
    return render(request, "mappings/mapping_delete.html", _mapping_context(request, mapping))

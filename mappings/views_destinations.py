"""Destinations and their Profile Spaces: the Segment Profiles destination pages (overview, settings, delete) and
the spaces' editor, connection check and delete."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.fields import DecryptionError
from hubsync.models import Role
from models_app.models import DataModel
from sources.models import Source

from . import services
from .forms import DestinationForm, ProfileSpaceForm, RenameForm
from .models import Destination, Mapping, ProfileSpace
from .segment import check_connection

logger = logging.getLogger(__name__)


def _can_change(request: WorkspaceRequest) -> bool:
    return request.membership.allows(Role.ADMIN)


# --- destinations -----------------------------------------------------------------------------------------


@workspace_view()
def destination_list(request: WorkspaceRequest) -> HttpResponse:
    destinations = Destination.objects.filter(workspace=request.workspace).annotate(
        space_count=Count("profile_spaces", distinct=True),
        mapping_count=Count("mappings", distinct=True),
        enabled_count=Count("mappings", filter=Q(mappings__enabled=True), distinct=True),
    )
    return render(
        request,
        "mappings/destination_list.html",
        {"destinations": destinations, "can_change": _can_change(request), "nav_section": "destinations"},
    )


def _source_for(request: WorkspaceRequest) -> Source | None:
    """The source the destination is added for: `?source=` (the source's checklist and Models tab send it), or
    the workspace's only source."""
    raw = request.POST.get("source") or request.GET.get("source") or ""
    sources = Source.objects.filter(workspace=request.workspace)
    if raw.isdigit():
        return sources.filter(pk=int(raw)).first()
    only = list(sources[:2])
    return only[0] if len(only) == 1 else None


@workspace_view()
def destination_new(request: WorkspaceRequest) -> HttpResponse:
    source = _source_for(request)
    status = 200
    if request.method == "POST":
        form = DestinationForm(request.POST)
        if form.is_valid():
            destination = services.create_destination(
                workspace=request.workspace,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                space=form.cleaned_data["space"],
                actor=request.user,
            )
            for note in form.notes:
                messages.info(request, note)
            if form.cleaned_data["space"] is None:
                messages.success(request, f"{destination.name} was created. Add the Profile Space it sends to.")
                return redirect(reverse("mappings:destination_settings", args=[destination.pk]) + "#spaces")
            space = form.cleaned_data["space"]["name"]
            if source is None:
                messages.success(request, f"{destination.name} was created, sending to the Profile Space {space}.")
                return redirect("mappings:destination", destination.pk)
            # Where the guide goes next: the source's Models tab, to create the model the mapping will read.
            messages.success(
                request,
                f"{destination.name} was created, sending to the Profile Space {space}. Next: create a data model "
                f"of {source.name}.",
            )
            return redirect(reverse("sources:models", args=[source.pk]) + "#create-model")
        status = 400
    else:
        form = DestinationForm()
    return render(
        request,
        "mappings/destination_new.html",
        {
            "form": form,
            "source": source,
            "can_change": _can_change(request),
            "nav_section": "destinations",
        },
        status=status,
    )


def _mapping_rows(mappings: Any) -> list[Mapping]:
    return list(mappings.select_related("data_model", "data_model__source", "profile_space", "destination", "last_run"))


def _destination_page(
    request: WorkspaceRequest, destination: Destination, tab: str, template: str, status: int = 200, **extra: Any
) -> HttpResponse:
    ctx = {
        "destination": destination,
        "tab": tab,
        "can_change": _can_change(request),
        "nav_section": "destinations",
        "spaces": list(destination.profile_spaces.annotate(mapping_count=Count("mappings"))),
        **extra,
    }
    return render(request, template, ctx, status=status)


@workspace_view()
def destination_detail(request: WorkspaceRequest, destination_id: int) -> HttpResponse:
    destination = get_for_workspace(request, Destination, pk=destination_id)
    mappings = _mapping_rows(destination.mappings.all())
    has_models = DataModel.objects.filter(source__workspace=request.workspace).exists()
    return _destination_page(
        request, destination, "overview", "mappings/destination_overview.html", mappings=mappings, has_models=has_models
    )


@workspace_view()
def destination_settings(request: WorkspaceRequest, destination_id: int) -> HttpResponse:
    destination = get_for_workspace(request, Destination, pk=destination_id)
    rename = RenameForm(initial={"name": destination.name})
    if request.method == "POST":
        rename = RenameForm(request.POST)
        if rename.is_valid():
            if services.rename_destination(
                destination=destination, name=rename.cleaned_data["name"], actor=request.user
            ):
                messages.success(request, "Destination renamed.")
            else:
                messages.info(request, "Nothing changed.")
            return redirect("mappings:destination_settings", destination.pk)
    return _destination_page(
        request,
        destination,
        "settings",
        "mappings/destination_settings.html",
        rename_form=rename,
        space_form=ProfileSpaceForm(),
    )


@workspace_view()
def destination_delete(request: WorkspaceRequest, destination_id: int) -> HttpResponse:
    destination = get_for_workspace(request, Destination, pk=destination_id)
    mappings = _mapping_rows(destination.mappings.all())
    if request.method == "POST":
        name = destination.name
        try:
            services.delete_destination(destination=destination, actor=request.user)
        except services.MappingsError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{name} was deleted.")
            return redirect("mappings:destinations")
    return _destination_page(request, destination, "settings", "mappings/destination_delete.html", mappings=mappings)


# --- profile spaces ---------------------------------------------------------------------------------------


@workspace_view()
@require_POST
def profile_space_new(request: WorkspaceRequest, destination_id: int) -> HttpResponse:
    destination = get_for_workspace(request, Destination, pk=destination_id)
    form = ProfileSpaceForm(request.POST)
    if not form.is_valid():
        return _destination_page(
            request,
            destination,
            "settings",
            "mappings/destination_settings.html",
            rename_form=RenameForm(initial={"name": destination.name}),
            space_form=form,
            space_form_open=True,
            status=400,
        )
    data = form.cleaned_data
    space = services.create_profile_space(
        destination=destination,
        name=data["name"],
        write_key=data["write_key"],
        region=data["region"],
        endpoint=data["endpoint"],
        actor=request.user,
    )
    for note in form.notes:
        messages.info(request, note)
    messages.success(request, f"Profile Space {space.name} was added. Check its connection below.")
    return redirect(reverse("mappings:destination_settings", args=[destination.pk]) + f"#space-{space.pk}")


@workspace_view()
def profile_space_edit(request: WorkspaceRequest, profile_space_id: int) -> HttpResponse:
    space = get_for_workspace(request, ProfileSpace.objects.select_related("destination"), pk=profile_space_id)
    destination = space.destination
    if request.method == "POST":
        form = ProfileSpaceForm(request.POST, instance=space)
        if form.is_valid():
            data = form.cleaned_data
            for note in form.notes:
                messages.info(request, note)
            if services.update_profile_space(
                space=space,
                name=data["name"],
                region=data["region"],
                write_key=data["write_key"],
                endpoint=data["endpoint"],
                actor=request.user,
            ):
                messages.success(request, f"Profile Space {space.name} saved.")
            else:
                messages.info(request, "Nothing changed.")
            return redirect(reverse("mappings:destination_settings", args=[destination.pk]) + f"#space-{space.pk}")
    else:
        form = ProfileSpaceForm(
            initial={"name": space.name, "region": space.region, "endpoint": space.endpoint}, instance=space
        )
    return _destination_page(
        request, destination, "settings", "mappings/profile_space_edit.html", space=space, form=form
    )


@workspace_view()
@require_POST
def profile_space_check(request: WorkspaceRequest, profile_space_id: int) -> HttpResponse:
    space = get_for_workspace(request, ProfileSpace.objects.select_related("destination"), pk=profile_space_id)
    try:
        result = check_connection(space.region, space.write_key, base_url=space.endpoint)
        ok, detail = result.ok, result.detail
    except DecryptionError:
        ok, detail = (
            False,
            "The saved write key could not be decrypted (check HUBSYNC_ENCRYPTION_KEYS); enter it again.",
        )
    except ValueError as exc:
        ok, detail = False, str(exc)
    checked = (
        "Checked: the sandbox endpoint and whether it knows this write key."
        if space.region == ProfileSpace.Region.SANDBOX
        else "Checked: the custom endpoint answers and accepts an empty batch with this key; whether the key is "
        "right shows when the first messages reach the space."
        if space.region == ProfileSpace.Region.CUSTOM
        else "Checked: the region's endpoint answers and accepts a request with this key. Segment does not tell "
        "whether a write key is right; that shows when the first messages reach the space."
    )
    ctx = {"space": space, "check": {"ok": ok, "detail": detail, "checked": checked}}
    if request.htmx:
        return render(request, "mappings/_check_result.html", ctx)
    (messages.success if ok else messages.error)(request, f"{space.name}: {detail}")
    return redirect(reverse("mappings:destination_settings", args=[space.destination_id]) + f"#space-{space.pk}")


@workspace_view()
def profile_space_delete(request: WorkspaceRequest, profile_space_id: int) -> HttpResponse:
    space = get_for_workspace(request, ProfileSpace.objects.select_related("destination"), pk=profile_space_id)
    used_by = _mapping_rows(space.mappings.all())
    if request.method == "POST":
        try:
            services.delete_profile_space(space=space, actor=request.user)
        except services.MappingsError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Profile Space {space.name} was deleted.")
            return redirect(reverse("mappings:destination_settings", args=[space.destination_id]) + "#spaces")
    return _destination_page(
        request, space.destination, "settings", "mappings/profile_space_delete.html", space=space, used_by=used_by
    )

"""Start small: a mapping's sample mode. The fragment templates/mappings/_sample_mode.html shows it and its
buttons; it is meant to be included in the mapping page (`{% include "mappings/_sample_mode.html" %}` with
`sample` = `sample_context(request, mapping)` in its context) and is also served on its own by `sample_mode`
(GET: the fragment for htmx, a small page otherwise; POST: start a sample or switch to all records)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.http import safe_next
from hubsync.models import Role

from . import services
from .models import DeliveryState, Mapping
from .selectors import sample_cutoff


def sample_context(request: WorkspaceRequest, mapping: Mapping) -> dict[str, Any]:
    """What the fragment shows: the sample's size, how much of it was delivered or rejected. Three small
    queries (an index scan of N ids, two counts on the mapping's states up to the cutoff)."""
    ctx: dict[str, Any] = {
        "mapping": mapping,
        "sample_size": mapping.sample_size,
        "default_size": Mapping.DEFAULT_SAMPLE_SIZE,
        "max_size": services.MAX_SAMPLE_SIZE,
        "can_change": request.membership.allows(Role.ADMIN),
        "url": reverse("mappings:sample_mode", args=[mapping.pk]),
    }
    if mapping.sample_size:
        cutoff = sample_cutoff(mapping)
        states = DeliveryState.objects.filter(mapping=mapping)
        if cutoff is not None:
            states = states.filter(object_id__lte=cutoff)
        ctx["cutoff"] = cutoff
        ctx["delivered"] = states.filter(status=DeliveryState.Status.DELIVERED).count()
        ctx["rejected"] = states.filter(status=DeliveryState.Status.REJECTED).count()
    return ctx


@workspace_view()
def sample_mode(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = get_for_workspace(request, Mapping.objects.select_related("data_model"), pk=mapping_id)
    if request.method == "POST":
        _change(request, mapping)
        if request.htmx:
            return render(request, "mappings/_sample_mode.html", {"sample": sample_context(request, mapping)})
        return HttpResponseRedirect(safe_next(request, reverse("mappings:sample_mode", args=[mapping.pk])))
    template = "mappings/_sample_mode.html" if request.htmx else "mappings/sample_mode.html"
    return render(request, template, {"sample": sample_context(request, mapping)})


def _change(request: WorkspaceRequest, mapping: Mapping) -> None:
    if not request.membership.allows(Role.ADMIN):  # the decorator already refuses; kept for includes' safety
        return
    action = request.POST.get("action")
    if action == "start":
        raw = (request.POST.get("sample_size") or str(Mapping.DEFAULT_SAMPLE_SIZE)).strip()
        if not raw.isdigit():
            messages.error(request, services.SAMPLE_SIZE_RULE)
            return
        new: int | None = int(raw)
        note = (
            f"Sample mode: only the first {new} records are delivered. Check them in the Profile Space, then "
            "switch to all records."
        )
    elif action == "all":
        new = None
        note = "Switched to all records: the next delivery sends every record the sample left out."
    else:
        messages.error(request, "Choose sample mode or all records.")
        return
    try:
        changed = services.set_sample_size(mapping=mapping, sample_size=new, actor=request.user)
    except services.MappingsError as exc:  # the size is out of range
        messages.error(request, str(exc))
        return
    if changed:
        messages.success(request, note)
